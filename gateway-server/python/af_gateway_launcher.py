"""Process launcher of AF Gateway's local backend.

Two modes:

  af_gateway_launcher.py exec SPEC_JSON
      Become one Dask scheduler or worker described by SPEC_JSON.

  af_gateway_launcher.py serve
      Import Dask once, then read one SPEC_JSON per line on stdin and fork a scheduler or worker
      for each, answering {"id": ..., "pid": ...} per line on stdout. Forking a warm interpreter
      saves the seconds a fresh Python spends importing distributed and bokeh. Exits when stdin
      closes (the gateway went away); the forked processes live on in their own sessions.

A spec: {"id", "role": "scheduler"|"worker", "title", "args", "env", "cwd", "log", "pidfile"}.
Every process gets its own session (so the gateway can signal its whole process group) and a
process title "af-gateway: <role> <cluster> ..." so that `ps` shows what it belongs to.
"""

import json
import os
import signal
import sys
import traceback


def _become(spec):
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader (exec mode starts detached)
    # Undo the launcher's SIGCHLD=ignore; keep Python's SIGPIPE=ignore (a peer closing a socket
    # must raise BrokenPipeError in the scheduler, not kill it).
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null_fd)
    os.close(log_fd)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.chdir(spec["cwd"])
    os.environ.update(spec["env"])
    import dask

    dask.config.refresh()  # pick up DASK_* variables set after dask was imported
    try:
        import setproctitle
    except ImportError:
        setproctitle = None
    if setproctitle is not None:
        setproctitle.setproctitle(spec["title"])
        # distributed retitles its processes ("dask worker [tls://...]"): keep ours in front.
        import distributed.proctitle

        class _KeepPrefix:
            @staticmethod
            def setproctitle(text):
                setproctitle.setproctitle(f"{spec['title']} [{text}]")

        distributed.proctitle.setproctitle_mod = _KeepPrefix
    with open(spec["pidfile"], "w") as f:
        f.write(str(os.getpid()))


def _run(spec):
    if spec["role"] == "scheduler":
        from distributed.cli.dask_scheduler import main
    else:
        from distributed.cli.dask_worker import main
    main(args=spec["args"], prog_name="dask " + spec["role"], standalone_mode=True)


def _child(spec):
    code = 1
    try:
        _become(spec)
        _run(spec)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _preload():
    # What a scheduler and a worker import on start; done once, before any fork.
    import distributed  # noqa: F401
    import distributed.cli.dask_scheduler  # noqa: F401
    import distributed.cli.dask_worker  # noqa: F401
    import distributed.dashboard.scheduler  # noqa: F401  (bokeh)
    import dask_gateway.scheduler_preload  # noqa: F401

    try:
        import setproctitle

        setproctitle.setproctitle("af-gateway: launcher")
    except ImportError:
        pass


def serve():
    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        spec = json.loads(line)
        try:
            pid = os.fork()
        except OSError as exc:
            print(json.dumps({"id": spec.get("id"), "error": str(exc)}), flush=True)
            continue
        if pid == 0:
            _child(spec)
        print(json.dumps({"id": spec.get("id"), "pid": pid}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "exec":
        _child(json.loads(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "serve":
        serve()
    else:
        sys.exit("usage: af_gateway_launcher.py exec SPEC_JSON | serve")
