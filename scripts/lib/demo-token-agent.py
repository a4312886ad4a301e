"""The demo's token agent: keeps one user's access token fresh in a file, as JupyterHub and IAM do for
a notebook on a facility, and shows each new token to the gateway, whose token broker hands it on to
that user's Dask workers (they read the storage with it).

The demo's identity provider is the test OpenID provider that scripts/xrootd-storage.sh starts over
HTTPS; this agent asks it to sign each token through its local signing FIFO (only a process on this
machine that can open that FIFO can), because the token must name two audiences at once: the gateway's
(af-gateway) and the storage's (WLCG "any"), as a facility's IAM token for a notebook does.

    python demo-token-agent.py STORAGE_JSON USER TOKEN_FILE GATEWAY_URL [--lifetime S] [--every S] [--once]

The token file is replaced whole (never half-written), mode 0600 (xrootd's client ignores a token file
others may read). The token is never printed or logged. With --once it writes one token, shows it to
the gateway and exits (the demo waits for this before it registers the example's samples).
"""
import argparse
import json
import os
import stat
import sys
import time
import uuid

import requests

SCOPES = "openid offline_access compute.create compute.read storage.read:/ storage.create:/"
AUDIENCES = ["af-gateway", "https://wlcg.cern.ch/jwt/v1/any"]


def sign(storage, user, lifetime):
    now = int(time.time())
    claims = {"iss": storage["issuer"], "sub": user, "aud": AUDIENCES, "scope": SCOPES, "wlcg.ver": "1.0", "wlcg.groups": ["/af/users"],
              "iat": now - 5, "nbf": now - 5, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    with open(storage["issuer_out"]) as out:
        seen = len(out.read().splitlines())
    with open(storage["issuer_sign"], "w") as fifo:
        fifo.write(json.dumps({"sign": claims}) + "\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(storage["issuer_out"]) as out:
            answered = out.read().splitlines()[seen:]
        if answered:
            answer = json.loads(answered[0])
            if "token" not in answer:
                raise RuntimeError(f"the demo's identity provider refused to sign: {answer.get('error')}")
            return answer["token"]
        time.sleep(0.05)
    raise RuntimeError("the demo's identity provider did not answer within 10 s")


def private_dir(path):
    """The token's directory, made 0700 if new; an existing one must be ours and closed to others (a
    directory another user made or may write in, e.g. under /tmp, lets them swap the token file)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SystemExit(f"refusing the token directory {path}: not a directory of uid {os.geteuid()} closed to others "
                         f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})")


def write(path, token):
    tmp = f"{path}.{os.getpid()}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)


def show(gateway, token):
    r = requests.get(gateway.rstrip("/") + "/api/af/token", headers={"Authorization": "Bearer " + token}, timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"the gateway did not take the token: HTTP {r.status_code} {r.text[:300]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("storage_json")
    p.add_argument("user")
    p.add_argument("token_file")
    p.add_argument("gateway")
    p.add_argument("--lifetime", type=int, default=1200, help="seconds each token lives (default 20 min)")
    p.add_argument("--every", type=int, default=300, help="seconds between new tokens (default 5 min)")
    p.add_argument("--once", action="store_true")
    a = p.parse_args()
    with open(a.storage_json) as f:
        storage = json.load(f)
    private_dir(os.path.dirname(os.path.abspath(a.token_file)))
    while True:
        try:
            token = sign(storage, a.user, a.lifetime)
            write(a.token_file, token)
            show(a.gateway, token)
            print(f"{time.strftime('%H:%M:%S')} a new token for {a.user}, valid {a.lifetime} s, in {a.token_file}", flush=True)
        except Exception as exc:  # noqa: BLE001 - the agent keeps trying; the demo shows its log
            print(f"{time.strftime('%H:%M:%S')} could not renew the token: {exc}", file=sys.stderr, flush=True)
            if a.once:
                return 1
            time.sleep(10)
            continue
        if a.once:
            return 0
        time.sleep(a.every)


if __name__ == "__main__":
    sys.exit(main())
