"""The test accounts of scripts/test-accounts.sh and their sudo rule: the gateway's account may start
the launcher as a test user and create accounts in af-users within the range, and nothing else; the
users' homes are their own.

Was `scripts/test-accounts.sh selftest` (which now runs this file). Needs root. A few seconds.
"""
import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from af_e2e_support import REPO

GATEWAY = "af-gateway"
PYTHON = str(REPO / ".venv" / "bin" / "python")
LAUNCHER = str(REPO / "gateway-server" / "python" / "af_gateway_launcher.py")
ACCOUNTS = str(REPO / "gateway-server" / "python" / "af_gateway_accounts.py")
CREATE_RANGE = ["1000", "59999"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates accounts and a sudo rule: needs root")


@pytest.fixture(scope="module", autouse=True)
def accounts():
    out = subprocess.run(["bash", str(REPO / "scripts" / "test-accounts.sh"), "ensure"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(Path(out.stdout.strip()).read_text())


def as_gateway(*cmd, stdin=""):
    """The command run by the gateway's account through sudo -n (no password, no prompt)."""
    return subprocess.run(["runuser", "-u", GATEWAY, "--", "sudo", "-n", *cmd], input=stdin, capture_output=True, text=True, timeout=60)


def test_accounts_json_names_the_gateway_the_users_and_the_rule(accounts):
    assert accounts["gateway"]["name"] == GATEWAY
    assert {"alice", "bob", "mallory"} <= set(accounts["users"])
    assert accounts["users"]["alice"] == {"name": "af-alice", "uid": pwd.getpwnam("af-alice").pw_uid,
                                          "gid": pwd.getpwnam("af-alice").pw_gid, "home": pwd.getpwnam("af-alice").pw_dir}
    assert Path(accounts["sudo_rule"]).is_file()


def test_the_gateway_starts_the_launcher_as_a_user():
    out = as_gateway("-u", "af-alice", PYTHON, LAUNCHER, "serve", stdin="\n")
    assert "ready" in out.stdout, out.stderr


@pytest.mark.parametrize("what,cmd", [
    ("a shell as af-alice", ["-u", "af-alice", "/bin/sh", "-c", "true"]),
    ("the launcher as root", ["-u", "root", PYTHON, LAUNCHER, "serve"]),
    ("the launcher with other arguments", ["-u", "af-alice", PYTHON, LAUNCHER, "exec", "{}"]),
    ("the account helper outside the group and range", [PYTHON, ACCOUNTS, "create", "af-x", "root", *CREATE_RANGE]),
    ("the account helper with arguments smuggled in", [PYTHON, ACCOUNTS, "create", "af-x", "wheel", "1", "2", "af-users", *CREATE_RANGE]),
])
def test_the_gateway_may_not_run(what, cmd):
    out = as_gateway(*cmd, stdin="\n")
    assert out.returncode != 0, f"af-gateway may run {what}: {out.stdout} {out.stderr}"
    assert "ready" not in out.stdout


def test_a_user_cannot_read_another_users_home():
    out = subprocess.run(["runuser", "-u", "af-alice", "--", "ls", pwd.getpwnam("af-bob").pw_dir], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "Permission denied" in out.stderr
