#!/usr/bin/env bash
# All tests: TypeScript (vitest), the Python client end to end (pytest) and the JupyterLab UI
# (galata/Playwright in Debian's chromium, against the real stack), after bootstrapping.
# Prints one closing line "N passed, N failed" over the three suites.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1

out=$(mktemp -d)
# (a pytest still running beside the rest when this script is stopped is stopped with it)
trap 'if [ -n "${beside_pid:-}" ]; then kill "$beside_pid" 2>/dev/null; fi; rm -rf "$out"' EXIT
status=0

echo "== Rucio test server venv (built once per machine, cached outside the repository)"
bash scripts/rucio-server.sh ensure || status=1

echo "== PostgreSQL server binaries (Debian's packages; the state store's tests start throw-away servers)"
bash scripts/postgres.sh ensure || status=1

echo "== Kubernetes control plane from source, helm, kubectl (built once per machine, cached outside the repository)"
bash scripts/kube-cluster.sh ensure || status=1

echo "== Test accounts (the gateway's and one per test user: multi-user gateways run users' processes as them)"
bash scripts/test-accounts.sh ensure >/dev/null || status=1

echo "== XRootD storage with SciTokens and a test CA (Debian's packages, installed once per machine; the CA cached outside the repository)"
bash scripts/xrootd-storage.sh ensure || status=1

echo "== lint (ESLint and Prettier over every TypeScript, JavaScript, JSON and CSS file; tsc over the tests and UI specs, which vitest and Playwright run without checking types)"
npm run -s lint || { echo "lint failed: npm run format rewrites the formatting; ESLint's findings need a hand" >&2; status=1; }
npm run -s typecheck || { echo "type-check failed: npm run typecheck lists each error (tsc over the tsconfig.json of gateway-server/test, lab-extension/test, schemas/test and ui-tests)" >&2; status=1; }

echo "== vitest (gateway-server, schemas, lab-extension; Rucio module against a real Rucio server)"
npx vitest run --reporter=default --reporter=json --outputFile.json="$out/vitest.json" || status=1

echo "== HTCondor test pool (chroot built once per machine, cached outside the repository)"
bash scripts/htcondor-pool.sh ensure || status=1

echo "== Slurm test cluster (Debian's slurm-wlm and munge, installed once per machine; each test run starts its own cluster)"
bash scripts/slurm-cluster.sh ensure || status=1

echo "== yadage and its test specs (venv and yadage's results on them built once per machine, cached outside the repository)"
bash scripts/yadage-specs.sh ensure >/dev/null || status=1

echo "== dask-labextension, pinned (installed once per machine outside the repository; only its interop test loads it)"
bash scripts/dask-labextension.sh ensure >/dev/null || status=1

echo "== pytest (dask_gateway client end to end, HTCondor backend on a real pool, Kubernetes backend on a real API server, token-protected storage)"
# The analysis modules mostly wait (on 60 s tokens expiring, on reads paced through their passes) and use
# nothing the others use (their own pools, gateways, storage and free ports): they run beside the rest,
# their output shown once they end.
e2e=gateway-server/test/e2e
beside=("$e2e/test_analysis_htcondor.py" "$e2e/test_analysis_example.py")
.venv/bin/python -m pytest "${beside[@]}" -q -p no:cacheprovider --tb=native --junitxml="$out/pytest-beside.xml" >"$out/pytest-beside.log" 2>&1 &
beside_pid=$!
.venv/bin/python -m pytest "$e2e" "${beside[@]/#/--ignore=}" -q -p no:cacheprovider --tb=native --junitxml="$out/pytest.xml" || status=1
wait "$beside_pid" || status=1
echo "-- pytest, the modules run beside: ${beside[*]##*/}"
cat "$out/pytest-beside.log"

echo "== playwright (JupyterLab UI with galata, against the real stack)"
PLAYWRIGHT_JUNIT_OUTPUT_FILE="$out/ui.xml" bash scripts/ui-tests.sh
ui_status=$?
[ "$ui_status" -eq 0 ] || status=1

UI_EXIT_CODE=$ui_status node scripts/test-summary.mjs "$out/vitest.json" "$out/pytest.xml,$out/pytest-beside.xml" "$out/ui.xml" || status=1
exit $status
