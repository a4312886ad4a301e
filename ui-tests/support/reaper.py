"""Run one service of the UI-test stack (or the Playwright run itself) so that nothing it starts can
outlive the test run.

    python reaper.py NAME -- CMD ARGS...

The service runs in its own session and process group. This process makes itself a child
subreaper (what the service leaves behind, e.g. a Dask scheduler or a kernel whose parent died,
is re-parented here and reaped: PID 1 on these machines does not reap orphans) and asks the
kernel for SIGTERM when its own parent (the Playwright runner) dies, so a runner killed with
SIGKILL still takes the stack down.

On SIGTERM/SIGINT (or the parent's death) it sends SIGTERM to the service's process group, gives
it AF_UI_GRACE seconds (default 15) to stop what it started, then SIGKILLs the group and every
remaining descendant. When the service exits on its own, the leftovers go the same way and this
process exits with the service's status. The service's stdin is a pipe held open until then
(the test OpenID provider stops when its stdin closes).
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = float(os.environ.get("AF_UI_GRACE", "15"))


def log(name, msg):
    print(f"[reaper {name}] {msg}", file=sys.stderr, flush=True)


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children_of(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def reap_nohang():
    """Reaps every exited child; returns {pid: exit status}."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = os.waitstatus_to_exitcode(status)


def main():
    name = sys.argv[1]
    assert sys.argv[2] == "--", sys.argv
    cmd = sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    parent = os.getppid()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    stopping = {"at": None}

    def on_signal(signum, _frame):
        if stopping["at"] is None:
            stopping["at"] = time.monotonic()
            log(name, f"signal {signum}: stopping the service's process group")
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except OSError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True)
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        on_signal(signal.SIGTERM, None)

    code = None
    while True:
        exited = reap_nohang()
        if child.pid in exited:
            code = exited[child.pid]
            child.returncode = code
            if stopping["at"] is None:
                log(name, f"the service exited by itself with {code}")
                stopping["at"] = time.monotonic()
        left = descendants(os.getpid())
        if code is not None and not left:
            break
        if stopping["at"] is not None:
            if code is not None and left and not stopping.get("asked"):
                stopping["asked"] = True
                for pid in left:  # the service is gone: ask what it left to stop, once
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except OSError:
                        pass
            if time.monotonic() - stopping["at"] > GRACE:
                log(name, f"killing what is left after {GRACE:.0f}s: {left}")
                for pid in [child.pid, *left]:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        time.sleep(0.1)
    try:
        child.stdin.close()
    except OSError:
        pass
    if code is None:
        return 1
    return code if code >= 0 else 128 - code  # killed by a signal: 128 + its number, as shells say


if __name__ == "__main__":
    sys.exit(main())
