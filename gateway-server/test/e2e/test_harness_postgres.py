"""The throw-away PostgreSQL servers of scripts/postgres.sh, as the state-store tests rely on them:
password authentication that refuses a wrong password, UTF8, the Unix socket, a second `start` that
changes nothing, and a `stop` that leaves no process of the server behind.

Was `scripts/postgres.sh selftest` (which now runs this file). A few seconds.
"""
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from af_e2e_support import PG_SCRIPT, psql


def pg(*args, timeout=90):
    return subprocess.run(["bash", str(PG_SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def started_server(prefix):
    """A server in a run dir of its own, stopped and removed at the end however the test went."""
    assert pg("ensure").returncode == 0
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        started = pg("start", str(run_dir))
        assert started.returncode == 0, started.stderr
        yield {"run_dir": run_dir, "json_path": started.stdout.strip(), **json.loads(Path(started.stdout.strip()).read_text())}
    finally:
        pg("stop", str(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    with started_server("af-pg-harness-") as info:
        yield info


def test_start_prints_only_the_path_of_its_description(server):
    assert server["json_path"] == str(server["run_dir"] / "postgres.json")


def test_a_utf8_database_of_the_user_af_that_keeps_what_it_is_given(server):
    url = server["url"]
    assert psql(server, url, "select 1") == "1"
    assert psql(server, url, "select current_user || ' ' || current_database() || ' ' || pg_encoding_to_char(encoding) "
                             "from pg_database where datname = current_database()") == "af af_gateway UTF8"
    psql(server, url, "create table harness (id int primary key, name text not null)")
    psql(server, url, "insert into harness values (1, 'één'), (2, 'two')")
    assert psql(server, url, "select string_agg(id || ':' || name, ',' order by id) from harness") == "1:één,2:two"


def test_a_wrong_password_is_refused(server):
    wrong = server["url"].replace(f":{server['password']}@", ":wrong@")
    assert wrong != server["url"]
    out = subprocess.run([server["bin_dir"] + "/psql", wrong, "-Atc", "select 1"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    assert out.returncode != 0
    assert "password authentication failed" in out.stderr


def test_the_unix_socket_takes_the_same_password(server):
    if not server.get("socket_dir"):
        pytest.skip("no Unix socket: the run dir's path is too long for one")
    out = subprocess.run([server["bin_dir"] + "/psql", "-X", "-At", "-h", server["socket_dir"], "-p", str(server["port"]),
                          "-U", "af", "-d", "af_gateway", "-c", "select 1"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PGPASSWORD": server["password"], "PGCONNECT_TIMEOUT": "5"})
    assert (out.returncode, out.stdout.strip()) == (0, "1"), out.stderr


def test_a_second_start_changes_nothing(server):
    again = pg("start", str(server["run_dir"]))
    assert (again.returncode, again.stdout.strip()) == (0, server["json_path"]), again.stderr
    assert json.loads(Path(server["json_path"]).read_text())["pid"] == server["pid"]


def test_stop_leaves_no_process_of_the_server_and_may_be_repeated():
    with started_server("af-pg-harness-stop-") as info:
        pid, run_dir = info["pid"], info["run_dir"]
        backends = [p.pid for p in psutil.Process(pid).children(recursive=True)]
        assert backends, "a postmaster has its background processes"
        stopped = pg("stop", str(run_dir))
        assert stopped.returncode == 0, stopped.stderr
        left = [p for p in [pid, *backends] if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert left == []
        assert not (run_dir / "postgres.pid").exists()
        assert pg("stop", str(run_dir)).returncode == 0
