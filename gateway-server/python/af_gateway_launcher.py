"""Process launcher of AF Gateway's local backend.

Two modes:

  af_gateway_launcher.py exec SPEC_JSON
      Become one Dask scheduler or worker described by SPEC_JSON.

  af_gateway_launcher.py serve
      Import Dask once, then read one request per line on stdin and answer each with one line
      {"id": ..., ...} on stdout. Forking a warm interpreter saves the seconds a fresh Python spends
      importing distributed and bokeh. Exits when stdin closes (the gateway went away, or closed an
      idle launcher); the forked processes live on in their own sessions.

In a multi-user gateway one launcher runs per user account, started by the gateway through sudo as
that account (sudo resets the environment), so everything it does — processes, files, signals —
happens with the user's rights and none of the gateway's. Requests ("op"):

  fork     {"role": "scheduler"|"worker", "title", "args", "env", "cwd", "log", "pidfile",
            "dashboard_tls": bool (the dashboard takes only clients with the cluster's certificate),
            "session_nice": 0-19 (see below)}
           -> {"pid", "start_ticks"}: a Dask process in a session of its own
  step     {"command": [...], "env", "cwd", "title", "session_nice"} -> {"pid", "start_ticks"}: a workflow step;
           when it ends the launcher says so unasked: {"exited": pid}
  prepare  {"dir", "files": {name: text}} -> {}: make dir (0700, parents too) and write the files
           (0600) in it, replacing whatever (even a symbolic link) had the name
  write    {"path", "text"} -> {}: replace one file atomically (0600), making its directory if needed
  kill     {"pid", "start_ticks", "signal"} -> {"sent": bool}: signal the process group of pid if
           pid is still the process that started at start_ticks
  tail     {"path", "max_bytes"} -> {"text"} or {"missing": true}: the end of a log file
  remove   {"dir", "keep": [suffixes]} -> {}: delete dir, or only its files not ending in a kept suffix
"fork" is the default op. A failed request answers {"id", "error": message}.

Every process gets its own session (so its whole process group can be signalled) and a process
title "af-gateway: <role> <cluster> ..." so that `ps` shows what it belongs to. The umask is 077.

With "session_nice" N > 0 the new session's autogroup gets nice N (/proc/self/autogroup, written by
the child right after setsid): with sched_autogroup_enabled=1 the kernel shares CPU between sessions,
not processes, so every Dask session would otherwise weigh as much as the gateway's. The process
itself gets nice N too (setpriority; its children inherit it), which is what counts where autogroup
is off. Raising a nice needs no
privilege; a failure is written to the process's log (stderr) and is never fatal.
"""

import json
import os
import select
import signal
import sys
import threading
import time
import traceback


def _autogroup_on():
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            on = f.read().strip() == "1"
    except OSError:
        return False
    return on and os.path.exists("/proc/self/autogroup")


def _session_nice(nice):
    """Gives this (new) session's autogroup nice `nice`, or this process when autogroup is off.
    Returns None, or why it could not (for the caller to log)."""
    if not isinstance(nice, int) or isinstance(nice, bool) or nice <= 0:
        return None
    nice = min(nice, 19)
    try:
        # The process's own nice too: it is what counts where autogroup is off, and where the
        # gateway runs in a cgroup of its own with the cpu controller (autogroups then do nothing).
        os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
        if not _autogroup_on():
            return None
        # Unprivileged writers are limited to one autogroup change per 100 ms machine-wide (EAGAIN).
        for _ in range(40):
            try:
                with open("/proc/self/autogroup", "w") as f:
                    f.write(str(nice))
                return None
            except BlockingIOError:
                time.sleep(0.05)
        return "the kernel kept answering EAGAIN for 2 s"
    except OSError as exc:
        return str(exc)


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
    _set_dumpable(True)  # nothing of the launcher's is left in this process: the user may debug it
    # (only now: /proc/self of a non-dumpable process belongs to root, and its autogroup file with it)
    nice_error = _session_nice(spec.get("session_nice"))
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if nice_error:
        print(f"af-gateway launcher: could not lower this session's CPU priority: {nice_error}", file=sys.stderr, flush=True)
    os.chdir(spec["cwd"])
    os.environ.update(spec["env"])
    import dask

    dask.config.refresh()  # pick up DASK_* variables set after dask was imported
    if spec.get("dashboard_tls"):
        _require_dashboard_client_certs()
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


def _require_dashboard_client_certs():
    """The dashboard speaks TLS (distributed.scheduler.dashboard.tls.*, set in the environment) and
    takes only clients with a certificate of the cluster's CA: the gateway's proxy has one, other
    accounts on the machine that find the port do not. distributed builds the server context with
    ssl.create_default_context(purpose=CLIENT_AUTH), which asks for no client certificate."""
    import ssl

    import distributed.node

    class _ClientCertsRequired:
        def __getattr__(self, name):
            return getattr(ssl, name)

        @staticmethod
        def create_default_context(*args, **kwargs):
            ctx = ssl.create_default_context(*args, **kwargs)
            if kwargs.get("purpose") == ssl.Purpose.CLIENT_AUTH:
                ctx.verify_mode = ssl.CERT_REQUIRED
            return ctx

    distributed.node.ssl = _ClientCertsRequired()


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


def _start_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return ""
    return text[text.rindex(")") + 2 :].split(" ")[19]


def _replace_file(path, text):
    """Writes text to path via a fresh temporary file: a link planted at path is replaced, never followed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fork_step(req):
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            os.setsid()
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            null_fd = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null_fd, fd)
            # The launcher's pipe and log are gone from this process; exec makes it dumpable anyway,
            # and /proc/self/autogroup is writable by the account only in a dumpable process.
            _set_dumpable(True)
            _session_nice(req.get("session_nice"))  # (a step's output goes to its own log; nothing to tell)
            os.chdir(req["cwd"])
            os.execve(req["command"][0], req["command"], req["env"])
        except BaseException:
            pass
        os._exit(code)
    return pid


def _kill(req):
    pid = int(req["pid"])
    # Only the group whose leader is the process we started, or whose leader is gone (its group id
    # cannot have been reused while any member lives).
    if pid <= 1 or _start_ticks(pid) not in ("", req["start_ticks"]):
        return {"sent": False}
    try:
        os.killpg(pid, int(req["signal"]))
    except ProcessLookupError:
        return {"sent": False}
    return {"sent": True}


def _tail(req):
    try:
        fd = os.open(req["path"], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {"missing": True}
    try:
        st = os.fstat(fd)
        import stat as _stat

        if not _stat.S_ISREG(st.st_mode):
            return {"missing": True}
        size = st.st_size
        want = int(req.get("max_bytes", 65536))
        os.lseek(fd, max(0, size - want), os.SEEK_SET)
        data = os.read(fd, want)
    finally:
        os.close(fd)
    return {"text": data.decode("utf-8", "replace")}


def _remove(req):
    import shutil

    d = req["dir"]
    keep = tuple(req.get("keep") or ())
    if not keep:
        shutil.rmtree(d, ignore_errors=True)
        return {}
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    for name in names:
        if not name.endswith(keep):
            try:
                os.unlink(os.path.join(d, name))
            except IsADirectoryError:
                shutil.rmtree(os.path.join(d, name), ignore_errors=True)
            except OSError:
                pass
    return {}


def _prepare(req):
    os.makedirs(req["dir"], mode=0o700, exist_ok=True)
    os.chmod(req["dir"], 0o700)
    for name, text in req["files"].items():
        if "/" in name or name in (".", ".."):
            raise ValueError(f"bad file name {name!r}")
        _replace_file(os.path.join(req["dir"], name), text)
    return {}


_emit_lock = threading.Lock()


def _emit(message):
    """One line on stdout (the gateway's pipe); answers and exit notices come from several threads."""
    with _emit_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def _tell_exit(pid):
    """Says {"exited": pid} when the step ends, so the gateway need not wait for its next poll. A
    pidfd becomes readable when its process exits, reaped or not (children are reaped by the kernel)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        _emit({"exited": pid})  # already gone
        return

    def wait():
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        _emit({"exited": pid})

    threading.Thread(target=wait, daemon=True).start()


def _handle(req):
    op = req.get("op", "fork")
    if op == "fork":
        pid = os.fork()
        if pid == 0:
            _child(req)
        return {"pid": pid, "start_ticks": _start_ticks(pid)}
    if op == "step":
        pid = _fork_step(req)
        _tell_exit(pid)
        return {"pid": pid, "start_ticks": _start_ticks(pid)}
    if op == "prepare":
        return _prepare(req)
    if op == "write":
        os.makedirs(os.path.dirname(req["path"]), mode=0o700, exist_ok=True)
        _replace_file(req["path"], req["text"])
        return {}
    if op == "kill":
        return _kill(req)
    if op == "tail":
        return _tail(req)
    if op == "remove":
        return _remove(req)
    raise ValueError(f"unknown op {op!r}")


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


def _set_dumpable(flag):
    """PR_SET_DUMPABLE: a non-dumpable process cannot be traced, nor its descriptors taken
    (pidfd_getfd), by other processes of its account. The launcher holds the gateway's pipe and log:
    the user's own code, running as the same account, must not reach them."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 1 if flag else 0, 0, 0, 0) != 0:  # 4 = PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def serve():
    _set_dumpable(False)
    os.umask(0o077)
    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    _emit({"ready": True, "uid": os.getuid()})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        try:
            answer = _handle(req)
        except Exception as exc:  # one bad request must not end the launcher
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        _emit({"id": req.get("id"), **answer})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "exec":
        os.umask(0o077)
        _child(json.loads(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "serve":
        serve()
    else:
        sys.exit("usage: af_gateway_launcher.py exec SPEC_JSON | serve")
