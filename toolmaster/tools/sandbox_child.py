"""The sandbox's template process. It never runs tool code: for each request (a JSON line on stdin) it forks a
fresh child that runs the tool once and exits, so nothing a call does — threads, patched modules, files,
descriptors — reaches the next call. The child writes its reply to a pipe made for that call alone; the
template checks it (size, deadline, shape) and answers on its private copy of stdout.

Layers, each reported at start (``SandboxPool.layers``):
- OS (toolmaster.tools.isolation): user + mount + PID + network namespaces with a read-only root holding only
  the system libraries and Python's standard library, and a tmpfs scratch; seccomp; no capabilities.
- per call: a forked child with address-space, CPU-time, file-size, open-file and output limits, a wall-clock
  deadline enforced by the template with SIGKILL (a tool that catches or ignores its alarm still stops).
- Python: an audit hook (cannot be removed from Python) that refuses process creation, sockets, ctypes, and
  reads or writes outside the paths above — the only file guard where the kernel refuses namespaces.

Started by ``SandboxPool`` as ``python -I -c "...; run()" SETTINGS_JSON`` (settings in ``sys.argv[1]``).
"""
import io
import json
import marshal
import os
import resource
import select
import shutil
import signal
import stat
import sys
import time
import traceback

_BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn", "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
    "socket.gethostbyname", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
    "os.setuid", "os.chroot", "resource.setrlimit", "resource.prlimit", "signal.pthread_kill", "sys.setprofile",
    "sys.settrace", "os.mkfifo", "os.mknod",
}
_PATH_EVENTS = {  # event -> indices of path arguments that must stay inside scratch
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
    "os.chown": (0,), "os.symlink": (0, 1), "os.link": (0, 1), "os.truncate": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copyfile": (1,), "os.chdir": (0,),
}
_READ_EVENTS = {"os.listdir": 0, "os.scandir": 0, "glob.glob": 0}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_REPLY_FD = 3
_GRACE_S = 1.0
_MAX_FDS = 256  # the template keeps its descriptors below this, so a child closes them all cheaply


class SandboxViolation(PermissionError):
    pass


def _guard_roots(scratch: str, readable: list[str]) -> tuple[str, list[str]]:
    """Resolved once in the template (each realpath is a walk of system calls)."""
    scratch = os.path.realpath(scratch)
    return scratch, [os.path.realpath(p) for p in readable] + [scratch, "/dev/null", "/dev/urandom"]


def _install_guard(scratch: str, readable: list[str]) -> None:

    def under(path, roots) -> bool:
        if isinstance(path, int):  # an fd: the open that made it was checked
            return True
        try:
            real = os.path.realpath(os.fsdecode(path))
        except Exception:
            return False
        return any(real == r or real.startswith(r.rstrip("/") + os.sep) for r in roots)

    def hook(event, args):
        if event in _BLOCKED_EVENTS:
            raise SandboxViolation(f"sandbox: {event} is not allowed in tools")
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            if path is None:
                return
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes and not under(path, [scratch]):
                raise SandboxViolation(f"sandbox: writing {path!r} outside the scratch directory is not allowed")
            if not under(path, readable):
                raise SandboxViolation(f"sandbox: reading {path!r} is not allowed (outside scratch and the stdlib)")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and args[i] is not None and not under(args[i], [scratch]):
                    raise SandboxViolation(f"sandbox: {event} on {args[i]!r} outside scratch is not allowed")
        elif event in _READ_EVENTS:
            i = _READ_EVENTS[event]
            if i < len(args) and args[i] is not None and not under(args[i], readable):
                raise SandboxViolation(f"sandbox: {event} on {args[i]!r} is not allowed")

    sys.addaudithook(hook)


class _Timeout(BaseException):  # BaseException: tool code's `except Exception` cannot swallow it
    pass


def _alarm(signum, frame):
    raise _Timeout()


class _CappedIO(io.StringIO):
    def __init__(self, cap: int):
        super().__init__()
        self.cap = cap

    def write(self, s):
        if self.tell() < self.cap:
            super().write(s[: self.cap - self.tell()])
        return len(s)


def _to_text(value) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _failed(value) -> bool:
    # Tools in the wild (ToolHop among them) report failure by returning {"error": ...}.
    return isinstance(value, dict) and bool(value.get("error"))


def _run_tool(code, function: str, arguments: dict, timeout_s: float) -> dict:
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        namespace = {"__name__": "__tool__"}
        exec(code, namespace)
        fn = namespace.get(function)
        if not callable(fn):
            return {"ok": False, "content": f"error: tool source defines no function {function!r}"}
        value = fn(**arguments)
        return {"ok": not _failed(value), "content": _to_text(value)}
    except _Timeout:
        return {"ok": False, "content": f"error: tool call timed out after {timeout_s:g}s"}
    except MemoryError:
        return {"ok": False, "content": "error: tool exceeded its memory limit"}
    except RecursionError:
        return {"ok": False, "content": "error: tool exceeded the recursion limit"}
    except BaseException as err:  # the tool's own exception is the observation
        msg = str(err) or type(err).__name__
        if isinstance(err, TypeError) and "argument" in msg:
            return {"ok": False, "content": f"error: {msg}"}
        return {"ok": False, "content": f"error: {type(err).__name__}: {msg}"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _spare(settings: dict, layers: dict) -> tuple[int, int, int]:
    """Fork the child that will run the next call, set up and waiting for it (the fork and the limits, filter
    and hook are paid while the template waits for a request). Returns (pid, request fd, reply fd)."""
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(request_w)
            os.close(reply_r)
            _child(request_r, reply_w, settings, layers)
        finally:
            os._exit(70)
    os.close(request_r)
    os.close(reply_w)
    return pid, request_w, reply_r


def _child(request_fd: int, reply_fd: int, settings: dict, layers: dict) -> None:
    """Runs in the forked child: isolate, wait for one call, run it, reply, exit. Never returns."""
    os.dup2(reply_fd, _REPLY_FD)
    os.dup2(request_fd, _REPLY_FD + 1)
    os.closerange(_REPLY_FD + 2, _MAX_FDS)  # the template's protocol pipes included
    limit = settings["memory_mb"] * 1024 * 1024
    cpu = int(settings["timeout_s"] + _GRACE_S) + 1  # a backstop: the template's wall-clock deadline comes first
    for res, value in ((resource.RLIMIT_AS, limit), (resource.RLIMIT_FSIZE, settings["scratch_mb"] << 20),
                       (resource.RLIMIT_CORE, 0), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_NOFILE, 64)):
        resource.setrlimit(res, (value, value + 1 if res == resource.RLIMIT_CPU else value))
    if layers.get("seccomp"):
        from toolmaster.tools import isolation
        isolation.install_seccomp()
    signal.signal(signal.SIGALRM, _alarm)
    _install_guard(*settings["guard_roots"])
    chunks = []
    while chunk := os.read(_REPLY_FD + 1, 1 << 16):
        chunks.append(chunk)
    if not chunks:  # the template is gone or closing: nothing to run
        os._exit(0)
    os.close(_REPLY_FD + 1)
    code, function, arguments = marshal.loads(b"".join(chunks))
    sys.stdout = sys.stderr = _CappedIO(settings["output_chars"])
    reply = _run_tool(code, function, json.loads(arguments), settings["timeout_s"])
    cap = settings["output_chars"]
    if len(reply["content"]) > cap:
        reply["content"] = reply["content"][:cap] + f"...[truncated {len(reply['content']) - cap} chars]"
    data = json.dumps(reply, ensure_ascii=False).encode("utf-8", errors="replace")
    _write_all_fd(_REPLY_FD, len(data).to_bytes(8, "little") + data)
    os._exit(0)


def _call(spare: tuple[int, int, int], code, request: dict, settings: dict, max_bytes: int) -> tuple[dict, int | None]:
    """The call's reply, and the child's pid while it still has to be killed and reaped."""
    pid, request_w, reply_r = spare
    try:
        _write_all_fd(request_w, marshal.dumps((code, request["function"],
                                                json.dumps(request.get("arguments") or {}, default=str))))
    except BrokenPipeError:
        pass  # it died before reading (e.g. killed): its wait status says so
    finally:
        os.close(request_w)
    data, status, killed = _collect(reply_r, pid, settings["timeout_s"] + _GRACE_S, max_bytes)
    if status is None:
        os.kill(pid, signal.SIGKILL)  # done (a thread may still run) or past its deadline
    return _verdict(data, status, killed, settings), pid if status is None else None


def _write_all_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(read_fd: int, pid: int, deadline_s: float, max_bytes: int) -> tuple[bytes, int | None, str | None]:
    """The child's reply frame (8-byte length, then JSON), its wait status (None: not waited for, because a
    whole frame came first — the caller kills it), and why the template stopped it (deadline, or a length
    no frame of the child's can have: malformed)."""
    pidfd = os.pidfd_open(pid)
    data, killed, reading, exited = bytearray(), None, True, False
    deadline = time.monotonic() + deadline_s
    try:
        while reading or not exited:
            if len(data) >= 8:
                need = int.from_bytes(data[:8], "little")
                if need > max_bytes:  # the child frames at most output_chars: these bytes are not its frame
                    killed = "malformed"
                    break
                if len(data) >= 8 + need:
                    break
            watch = ([read_fd] if reading else []) + ([] if exited else [pidfd])
            remaining = deadline - time.monotonic()
            ready = select.select(watch, [], [], remaining)[0] if remaining > 0 else []
            if not ready:
                killed = "deadline"
                break
            exited = exited or pidfd in ready
            if read_fd in ready:
                chunk = os.read(read_fd, 1 << 16)
                reading = bool(chunk)
                data += chunk  # the length check above bounds it before the next read
        status = os.waitpid(pid, 0)[1] if exited else None
    finally:
        os.close(pidfd)
        os.close(read_fd)
    return bytes(data), status, killed


def _verdict(data: bytes, status: int | None, killed: str | None, settings: dict) -> dict:
    need = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if killed is None and len(data) == 8 + need:
        try:
            reply = json.loads(data[8:])
            if isinstance(reply, dict) and isinstance(reply.get("ok"), bool) and isinstance(reply.get("content"), str):
                return {"ok": reply["ok"], "content": reply["content"]}
        except ValueError:
            pass
    if killed == "deadline":
        return {"ok": False, "content": f"error: tool call timed out after {settings['timeout_s']:g}s"}
    if killed == "malformed":
        return {"ok": False, "content": "error: tool process returned a malformed reply"}
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return {"ok": False, "content": "error: tool exceeded its CPU time limit"}
        return {"ok": False, "content": f"error: tool process crashed ({signal.Signals(sig).name})"}
    if not data and status is not None:
        return {"ok": False, "content": f"error: tool process crashed (exit code {os.WEXITSTATUS(status)})"}
    return {"ok": False, "content": "error: tool process returned a malformed reply"}


def _clear(scratch: str) -> None:
    """Calls are stateless: nothing in scratch survives into the next one, whatever its permissions (the
    template holds no capability, so unreadable directories are made readable first). Never raises."""
    for root, dirs, _ in os.walk(scratch):  # top-down: a directory is opened after its mode was fixed here
        for name in dirs:
            path = os.path.join(root, name)
            try:
                if not os.path.islink(path):
                    os.chmod(path, stat.S_IRWXU)
            except OSError:
                pass
    for name in os.listdir(scratch):
        path = os.path.join(scratch, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def _reap() -> None:
    """As a PID namespace's init the template inherits any orphan; none should exist (fork is refused)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _enter_isolation(settings: dict) -> dict:
    """Try every OS layer; returns which are active. May fork: the caller continues as the template."""
    from toolmaster.tools import isolation

    layers = {"user_namespace": False, "mount_namespace": False, "pid_namespace": False, "network_namespace": False,
              "seccomp": False, "capabilities_dropped": False}
    if settings["isolate"]:
        try:
            isolation.unshare_namespaces()
        except OSError:
            try:  # root without user namespaces can still cut the network
                isolation._check(isolation._libc.unshare(isolation.CLONE_NEWNET), "unshare(net)")
                layers["network_namespace"] = True
            except OSError:
                pass
        else:
            _become_pid_namespace_init()
            layers.update(user_namespace=True, pid_namespace=True, network_namespace=True)
            try:
                settings["scratch"] = isolation.build_root(settings["scratch"], settings["scratch_mb"])
                settings["readable"] = isolation.python_read_paths()
                layers["mount_namespace"] = True
            except OSError as err:
                layers["mount_namespace_error"] = str(err)
        try:  # after the root is built: the template needs no privilege to fork, wait and clear scratch
            isolation.drop_capabilities()
            layers["capabilities_dropped"] = True
        except OSError:
            pass
        layers["seccomp"] = isolation.seccomp_supported() and _probe_seccomp()
    return layers


def _become_pid_namespace_init() -> None:
    """After unshare(CLONE_NEWPID) only children enter the new namespace: fork; the parent stays as a shim
    that exits with the template's status (the pool kills both as one process group)."""
    pid = os.fork()
    if pid == 0:
        # init of a PID namespace: unhandled signals from inside are dropped
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        return
    for fd in range(0, 16):
        try:
            os.close(fd)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _probe_seccomp() -> bool:
    from toolmaster.tools import isolation

    pid = os.fork()
    if pid == 0:
        try:
            isolation.install_seccomp()
            os.fork()
            os._exit(1)  # fork was allowed: the filter is not working
        except OSError:
            os._exit(0)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def main() -> None:
    settings = json.loads(sys.argv[1])
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # children inherit /dev/null, never a protocol pipe
        os.dup2(devnull, fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (_MAX_FDS, min(_MAX_FDS, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    import calendar, collections, csv, datetime, decimal, functools, itertools, math, random, re, string, unicodedata  # noqa: F401,E401,E501,I001  warm what tools import
    from toolmaster.tools import isolation  # noqa: F401  (children use it after the filesystem is gone)

    settings.setdefault("readable", isolation.python_read_paths())
    layers = _enter_isolation(settings)
    os.chdir(settings["scratch"])
    settings["guard_roots"] = _guard_roots(settings["scratch"], settings["readable"])
    os.environ.update(HOME=settings["scratch"], TMPDIR=settings["scratch"])
    import gc
    gc.freeze()  # fewer copy-on-write page faults in each forked child
    ready = {"ready": True, "layers": layers, "scratch": settings["scratch"]}
    _write_all_fd(replies.fileno(), json.dumps(ready).encode() + b"\n")
    compiled: dict = {}
    spare = None
    max_bytes = settings["output_chars"] * 8 + 4096
    for line in io.BufferedReader(requests):
        unreaped = None
        try:
            request = json.loads(line)
            source = request["source"]
            code = compiled.get(source)
            if code is None:
                code = compiled[source] = compile(source, f"<tool {request['function']}>", "exec")
                if len(compiled) > 256:
                    compiled.clear()
        except (ValueError, KeyError, TypeError):
            reply = {"ok": False, "content": "error: sandbox received a malformed request"}
        except (SyntaxError, RecursionError, MemoryError) as err:
            reply = {"ok": False, "content": f"error: tool source does not compile: {type(err).__name__}: {err}"}
        else:
            spare = spare or _spare(settings, layers)
            reply, unreaped = _call(spare, code, request, settings, max_bytes)
            spare = None
        _write_all_fd(replies.fileno(), json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        if unreaped is not None:  # killed before the reply went out; its exit is waited for only now
            os.waitpid(unreaped, 0)
        if spare is None:  # after a call: nothing it wrote survives, and the next child is ready early
            _clear(settings["scratch"])
            _reap()
            spare = _spare(settings, layers)


def run() -> None:
    try:
        main()
    except Exception:
        traceback.print_exc(file=sys.__stderr__)
        raise


if __name__ == "__main__":
    run()
