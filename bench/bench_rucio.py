"""Listing a 20,000-file Rucio dataset through AF Gateway against asking Rucio directly.

The peer is what an analyst does by hand in a notebook today: the same REST call straight to the
Rucio server with an exchanged token. Both are measured in this run against one real Rucio server
(scripts/rucio-server.sh) with the same token, alternating, and printed as ratios (gateway / direct):
time to the first file row and to the last, for the file list and for the replicas with PFNs.
Not a test: run by `npm run bench` after the gateway benchmark.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ROUNDS = int(os.environ.get("AF_BENCH_RUCIO_ROUNDS", "5"))


sys.path.insert(0, str(REPO / "gateway-server" / "test" / "e2e"))
from af_e2e_support import free_port, stop  # noqa: E402  (the tests' port picker and process stopper)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stream(method: str, url: str, headers: dict, body: dict | None) -> tuple[float, float, int]:
    """Seconds to the first row, to the last, and the number of rows of an NDJSON answer."""
    t0 = time.perf_counter()
    first = None
    rows = 0
    with requests.request(method, url, headers=headers, json=body, stream=True, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line:
                continue
            if first is None:
                first = time.perf_counter() - t0
            rows += 1
    return first or 0.0, time.perf_counter() - t0, rows


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="af-bench-rucio-"))
    procs: list[subprocess.Popen] = []
    rucio_dir = work / "rucio"
    rucio_dir.mkdir()
    try:
        op = subprocess.Popen(["node", str(REPO / "gateway-server/test/support/oidc-provider.mjs")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                              env=dict(os.environ, OIDC_TTL="3600"))
        procs.append(op)
        provider = json.loads(op.stdout.readline())
        issuer = provider["issuer"]
        subprocess.run(["bash", str(REPO / "scripts/rucio-server.sh"), "start", str(rucio_dir)], check=True,
                       env=dict(os.environ, RUCIO_OIDC_ISSUER=issuer), stdout=subprocess.DEVNULL, timeout=300)
        rucio = json.loads((rucio_dir / "rucio.json").read_text())
        port = free_port()
        config = {
            "listen": f"127.0.0.1:{port}", "data_dir": str(work / "gateway"), "log_level": "warn",
            "auth": {"type": "oidc", "oidc": {"issuer": issuer, "audience": ["af-gateway"], "client_id": "af-gateway",
                                               "client_secret": "af-gateway-secret"}},
            "tokens": {"exchange_audiences": ["rucio"]},
            "rucio": {"instances": [{"name": "bench", "url": rucio["url"], "auth": "exchange", "audience": "rucio"}]},
        }
        (work / "gateway.json").write_text(json.dumps(config))
        gw = subprocess.Popen(["node", str(REPO / "gateway-server/dist/cli.js"), "serve", "--config", str(work / "gateway.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(gw)
        gw_url = f"http://127.0.0.1:{port}"
        wait_http(gw_url + "/api/health")

        r = requests.post(f"{issuer}/token", auth=("alice", provider["clients"]["alice"]),
                          data={"grant_type": "client_credentials", "scope": "openid compute.create compute.read storage.read:/",
                                "resource": "urn:af-gateway"})
        r.raise_for_status()
        user_token = r.json()["access_token"]
        r = requests.post(f"{issuer}/token", auth=("af-gateway", "af-gateway-secret"),
                          data={"grant_type": EXCHANGE, "subject_token": user_token, "subject_token_type": ACCESS, "audience": "rucio"})
        r.raise_for_status()
        rucio_token = r.json()["access_token"]

        did = {"scope": "data26", "name": "ds.big"}
        cases = {
            "file list (20,000 files)": (
                ("GET", f"{gw_url}/api/af/rucio/bench/dids/data26/ds.big/files", {"Authorization": f"Bearer {user_token}"}, None),
                ("GET", f"{rucio['url']}/dids/data26/ds.big/files", {"X-Rucio-Auth-Token": rucio_token}, None),
            ),
            "replicas with davs PFNs (20,000 files)": (
                ("POST", f"{gw_url}/api/af/rucio/bench/replicas", {"Authorization": f"Bearer {user_token}"},
                 {"dids": [did], "schemes": ["davs"], "sort": "random"}),
                ("POST", f"{rucio['url']}/replicas/list", {"X-Rucio-Auth-Token": rucio_token, "Accept": "application/x-json-stream"},
                 {"dids": [did], "schemes": ["davs"], "sort": "random"}),
            ),
        }
        print(f"\nRucio listing through AF Gateway vs straight to Rucio (same server, token and body; {ROUNDS} rounds each, alternating)")
        print("ratio = gateway / direct; below 1 the gateway is faster, 1.00 = the same\n")
        for name, (ours, direct) in cases.items():
            stream(*ours)  # warm both paths (connection, token exchange cache)
            stream(*direct)
            o_first, o_total, d_first, d_total = [], [], [], []
            for _ in range(ROUNDS):
                f, t, n = stream(*ours)
                assert n == 20_000, f"gateway gave {n} rows"
                o_first.append(f)
                o_total.append(t)
                f, t, n = stream(*direct)
                assert n == 20_000, f"Rucio gave {n} rows"
                d_first.append(f)
                d_total.append(t)
            med = statistics.median
            print(f"  {name}:")
            print(f"    first row  {med(o_first) / med(d_first):5.2f}x")
            print(f"    all rows   {med(o_total) / med(d_total):5.2f}x")
        return 0
    finally:
        subprocess.run(["bash", str(REPO / "scripts/rucio-server.sh"), "stop", str(rucio_dir)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        for p in reversed(procs):
            stop(p)
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
