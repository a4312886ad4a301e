#!/usr/bin/env bash
# The JupyterLab UI tests (galata, Playwright) against the real stack: the test OpenID provider,
# the gateway with Dask on its local backend, JupyterLab and configurable-http-proxy, plus a real
# JupyterHub (spawning users' JupyterLab) with a second gateway as its service af-gateway, started and
# stopped by ui-tests/global-setup.ts and global-teardown.ts. The browser is Debian's chromium
# (installed here when missing; Playwright never downloads one). Arguments go to `playwright test`.
# Needs what scripts/bootstrap.sh installs (node_modules, .venv, the gateway's build).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -q || exit 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium || exit 1
fi
for need in .venv/bin/jupyter gateway-server/dist/cli.js node_modules/.bin/configurable-http-proxy node_modules/@jupyterlab/galata; do
  [ -e "$need" ] || { echo "ui-tests: $need is missing; run scripts/bootstrap.sh first" >&2; exit 1; }
done

# the gateways run users' Dask processes and steps as the users' accounts (af-alice, …)
if [ "$(id -u)" -eq 0 ]; then bash scripts/test-accounts.sh ensure >/dev/null || exit 1; fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stack=ui-tests/test-results/stack.json

# Safety net: if the runner itself died (so its global teardown never ran), stop what the stack
# file still lists. Each entry is a reaper (ui-tests/support/reaper.py) in its own process group,
# which stops its service's group and what that left behind.
cleanup() {
  [ -f "$stack" ] || return 0
  node -e '
    const fs = require("fs");
    const s = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    if (s.stoppedAt) process.exit(0);
    const ours = (p) => { try { return fs.readFileSync(`/proc/${p.pid}/cmdline`, "utf8").includes("reaper.py"); } catch { return false; } };
    const live = s.processes.filter(ours);
    for (const p of live.reverse()) { try { process.kill(p.pid, "SIGTERM"); } catch {} }
    const deadline = Date.now() + 30000;
    const wait = () => { const left = live.filter(ours); if (!left.length || Date.now() > deadline) {
      for (const p of left) { try { process.kill(-p.pid, "SIGKILL"); } catch {} }
      if (live.length) console.error(`ui-tests: stopped ${live.length} stack processes the runner left`);
      if (s.rucio?.runDir) require("child_process").spawnSync("bash", ["scripts/rucio-server.sh", "stop", s.rucio.runDir], { stdio: "ignore" });
      fs.rmSync(s.tmpDir, { recursive: true, force: true }); process.exit(0); } setTimeout(wait, 200); };
    wait();' "$stack"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The runner itself runs under the same reaper: Chromium's helper processes (crashpad, zygote)
# that outlive the browser are re-parented to it and reaped, not left to PID 1.
py=.venv/bin/python
start=$(date +%s)
AF_UI_GRACE=60 "$py" ui-tests/support/reaper.py playwright -- npx playwright test -c ui-tests/playwright.config.ts "$@"
status=$?
echo "ui-tests: playwright exited with $status after $(( $(date +%s) - start )) s"
exit $status
