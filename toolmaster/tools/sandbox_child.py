"""One sandbox process: reads JSON requests on stdin, runs tool source, answers on the original stdout.

Started by ``SandboxPool`` with ``python -I -S -m``-like isolation. Limits applied here, before any tool
code runs: an address-space cap (memory), a file-size cap, a private network namespace when the kernel
allows it, and a Python audit hook that refuses process creation, sockets, ctypes, and any file write or
filesystem change outside the scratch directory. The audit hook cannot be removed from Python code.
The wall-clock timeout is enforced twice: a SIGALRM inside (cheap, keeps the process) and a hard kill by
the parent (for code stuck in C).
"""
import io
import json
import os
import resource
import signal
import sys
import traceback

_BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.kill", "os.killpg",
    "subprocess.Popen", "pty.spawn", "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
    "socket.gethostbyname", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
    "os.setuid", "os.chroot", "resource.setrlimit", "signal.pthread_kill", "sys.setprofile", "sys.settrace",
}
_PATH_EVENTS = {  # event -> indices of path arguments that must stay inside scratch
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
    "os.chown": (0,), "os.symlink": (0, 1), "os.link": (0, 1), "os.truncate": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copyfile": (1,), "os.chdir": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class SandboxViolation(PermissionError):
    pass


def _unshare_network() -> bool:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(0x40000000) == 0  # CLONE_NEWNET: a namespace with only a down loopback
    except Exception:
        return False


def _install_guard(scratch: str) -> None:
    scratch = os.path.realpath(scratch)

    def inside(path) -> bool:
        if isinstance(path, int):  # an fd: opened earlier, so it was checked then
            return True
        try:
            real = os.path.realpath(os.fsdecode(path))
        except Exception:
            return False
        return real == scratch or real.startswith(scratch + os.sep)

    def hook(event, args):
        if event in _BLOCKED_EVENTS:
            raise SandboxViolation(f"sandbox: {event} is not allowed in tools")
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes and path is not None and not inside(path):
                raise SandboxViolation(f"sandbox: writing {path!r} outside the scratch directory is not allowed")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and args[i] is not None and not inside(args[i]):
                    raise SandboxViolation(f"sandbox: {event} on {args[i]!r} outside scratch is not allowed")

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


def _run(request: dict, timeout_s: float, output_chars: int, compiled: dict) -> dict:
    source, function, arguments = request["source"], request["function"], request.get("arguments") or {}
    stdout = _CappedIO(output_chars)
    sys.stdout = sys.stderr = stdout
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        code = compiled.get(source)
        if code is None:
            code = compiled[source] = compile(source, f"<tool {function}>", "exec")
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
        if isinstance(err, KeyboardInterrupt):
            raise
        msg = str(err) or type(err).__name__
        if isinstance(err, TypeError) and "argument" in msg:
            return {"ok": False, "content": f"error: {msg}"}
        return {"ok": False, "content": f"error: {type(err).__name__}: {msg}"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def main() -> None:
    scratch, memory_mb, timeout_s, output_chars = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    requests = os.fdopen(os.dup(0), "r")
    replies = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # tool code must not reach the protocol pipes through the standard fds
        os.dup2(devnull, fd)
    os.chdir(scratch)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    network_namespace = _unshare_network()
    signal.signal(signal.SIGALRM, _alarm)
    import datetime, math, re, random, string, collections, itertools, functools  # noqa: F401,E401  warm common imports
    _install_guard(scratch)
    replies.write(json.dumps({"ready": True, "network_namespace": network_namespace}) + "\n")
    replies.flush()
    compiled: dict = {}
    for line in requests:
        try:
            request = json.loads(line)
        except ValueError:
            reply = {"ok": False, "content": "error: sandbox received a malformed request"}
        else:
            reply = _run(request, timeout_s, output_chars, compiled)
            if len(compiled) > 256:
                compiled.clear()
        content = reply["content"]
        if len(content) > output_chars:
            reply["content"] = content[:output_chars] + f"...[truncated {len(content) - output_chars} chars]"
        replies.write(json.dumps(reply, ensure_ascii=False) + "\n")
        replies.flush()


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc(file=sys.__stderr__)
        raise
