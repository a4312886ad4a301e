"""Run a gateway command as the child of a small child-subreaper.

    python gateway_supervisor.py PIDFILE -- CMD ARGS...

The gateway's cluster processes outlive it when it is SIGKILLed (the restart
tests do exactly that).  On this machine PID 1 does not reap orphans, so
they would linger as zombies, and a restarted gateway checking ``kill(pid,
0)`` would take a dead scheduler for a live one.  This supervisor makes
itself a child subreaper: orphans of the gateway are re-parented to it, it
reaps every child that exits, and it lets the test suite find every process
left behind (its descendants).

It writes the gateway's pid to PIDFILE, forwards SIGTERM/SIGINT to the
gateway while it runs, writes the gateway's exit status to PIDFILE.exit, and
exits once it has no child left.
"""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    pidfile = sys.argv[1]
    assert sys.argv[2] == "--", sys.argv
    cmd = sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("gateway_supervisor: prctl(PR_SET_CHILD_SUBREAPER) failed", file=sys.stderr)

    # own process group, so the suite can signal the gateway's group alone
    child = subprocess.Popen(cmd, start_new_session=True)
    gateway_alive = True

    def forward(signum, _frame):
        if gateway_alive:
            try:
                os.kill(child.pid, signum)
            except OSError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    tmp = pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(child.pid))
    os.replace(tmp, pidfile)

    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == child.pid:
            gateway_alive = False
            with open(pidfile + ".exit", "w") as f:
                f.write(str(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    sys.exit(main())
