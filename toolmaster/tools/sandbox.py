"""A pool of sandboxed Python processes that run tool source (see sandbox_child for the limits).

The pool is plain and picklable: its processes start lazily in whichever process (driver, Ray actor)
first makes a call, and are not carried by pickling.

Each template process serves one call at a time (its calls share one scratch directory, wiped between
calls), and the pool holds up to ``workers`` of them, started on demand. Calls come either blocking
(``call``, from any thread) or awaited (``acall``, from any event loop: the reply pipe is watched by the
loop, so a waiting call holds no thread); both draw on the same templates, and a call that finds every
template busy waits its turn in one first-come queue.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from toolmaster.tools.spec import ToolResult

_GRACE_S = 3.0  # the template kills a tool past its deadline; this kill is for a template that stopped answering
OS_LAYERS = ("user_namespace", "mount_namespace", "pid_namespace", "network_namespace", "seccomp",
             "capabilities_dropped")


class IsolationUnavailable(RuntimeError):
    pass


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, write: bool) -> None:
    """Until ``fd`` can be read (or written) without blocking; the loop watches it, no thread does."""
    done = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await done
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


class _Worker:
    def __init__(self, settings: dict):
        self.timeout_s = settings["timeout_s"]
        self.scratch = tempfile.mkdtemp(prefix="toolmaster-sandbox-")
        env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
               "HOME": self.scratch, "TMPDIR": self.scratch}  # nothing of the trainer's environment (API keys)
        self.proc = subprocess.Popen(
            # -I ignores PYTHONPATH and the working directory: the package root is put first explicitly, so the
            # child runs this checkout's code even where an installed copy lives elsewhere
            [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {_package_root()!r}); "
             "from toolmaster.tools.sandbox_child import run; run()",
             json.dumps({**settings, "scratch": self.scratch})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            cwd=_package_root(), start_new_session=True, text=True, bufsize=1)
        self._buffer = ""
        self.eof = False
        self.layers: dict = {}

    def _started(self, ready: str | None) -> "_Worker":
        if ready is None:
            self.kill()
            raise RuntimeError("sandbox process failed to start")
        self.layers = json.loads(ready)["layers"]
        return self

    def wait_ready(self) -> "_Worker":
        return self._started(self._read_line(timeout_s=60.0))

    async def await_ready(self) -> "_Worker":
        try:
            line = await self._aread_line(timeout_s=60.0)
        except BaseException:
            self.kill()
            raise
        return self._started(line)

    def _read_line(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while "\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    return None
                if not self._take(fd):
                    return None
        return self._next_line()

    async def _aread_line(self, timeout_s: float) -> str | None:
        """``_read_line`` awaited: the loop wakes this call when the template has written."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        fd = self.proc.stdout.fileno()
        while "\n" not in self._buffer:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(_ready(loop, fd, write=False), remaining)
            except asyncio.TimeoutError:
                return None
            if not self._take(fd):  # readable: does not block
                return None
        return self._next_line()

    def _take(self, fd: int) -> bool:
        """Append what the template wrote to the buffer; False at end of file."""
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            self.eof = True
            return False
        self._buffer += chunk.decode("utf-8", errors="replace")
        return True

    def _next_line(self) -> str:
        line, self._buffer = self._buffer.split("\n", 1)
        return line

    @staticmethod
    def _request(source: str, function: str, arguments: dict) -> str:
        return json.dumps({"source": source, "function": function, "arguments": arguments}, default=str) + "\n"

    def call(self, source: str, function: str, arguments: dict) -> tuple[ToolResult, bool]:
        """Returns the result and whether this process is still usable."""
        try:
            self.proc.stdin.write(self._request(source, function, arguments))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return ToolResult(False, "error: tool process crashed"), False
        return self._reply(self._read_line(self.timeout_s + _GRACE_S))

    async def acall(self, source: str, function: str, arguments: dict) -> tuple[ToolResult, bool]:
        """``call`` awaited: neither the request nor the reply holds a thread."""
        loop = asyncio.get_running_loop()
        view = memoryview(self._request(source, function, arguments).encode())
        fd = self.proc.stdin.fileno()
        try:
            while view:
                await _ready(loop, fd, write=True)
                view = view[os.write(fd, view[:4096]):]  # at most a page into a writable pipe: does not block
        except (BrokenPipeError, OSError):
            return ToolResult(False, "error: tool process crashed"), False
        return self._reply(await self._aread_line(self.timeout_s + _GRACE_S))

    def _reply(self, line: str | None) -> tuple[ToolResult, bool]:
        if line is None:
            if not self.eof:
                return ToolResult(False, f"error: tool call timed out after {self.timeout_s:g}s"), False
            return ToolResult(False, f"error: tool process crashed (exit code {self.proc.wait()})"), False
        try:  # the template writes these lines itself; a line that does not parse means it is not sane
            reply = json.loads(line)
            return ToolResult(bool(reply["ok"]), str(reply["content"])), True
        except (ValueError, KeyError, TypeError):
            return ToolResult(False, "error: sandbox returned a malformed reply"), False

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Waiter:
    """A call waiting for a template: handed an idle one, or None (start one: a slot came free)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop
        self.event = None if loop else threading.Event()
        self.future = loop.create_future() if loop else None
        self.worker = None

    def hand(self, pool: "SandboxPool", worker: "_Worker | None") -> bool:
        """False: this waiter is gone (its loop closed); the caller hands the template on."""
        if self.loop is None:
            self.worker = worker
            self.event.set()
            return True

        def deliver() -> None:
            if self.future.done():  # the waiting call was cancelled meanwhile: the template goes back
                pool._release(worker)
            else:
                self.future.set_result(worker)

        try:
            self.loop.call_soon_threadsafe(deliver)
        except RuntimeError:
            return False
        return True


@dataclass
class SandboxPool:
    workers: int = 8  # most template processes; each serves one call at a time, started when a call needs one
    timeout_s: float = 10.0
    memory_mb: int = 1024
    output_chars: int = 2000
    scratch_mb: int = 64
    isolate: bool = True
    require_isolation: bool = False

    def __post_init__(self):
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._waiting: collections.deque[_Waiter] = collections.deque()
        self._started = 0  # templates alive or starting, idle or busy
        self._layers: dict | None = None

    @classmethod
    def from_config(cls, cfg) -> "SandboxPool":
        return cls(cfg.workers, cfg.timeout_s, cfg.memory_mb, cfg.output_chars, cfg.scratch_mb, cfg.isolate,
                   cfg.require_isolation)

    def _settings(self) -> dict:
        return {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb, "output_chars": self.output_chars,
                "scratch_mb": self.scratch_mb, "isolate": self.isolate}

    def __getstate__(self):
        return {**self._settings(), "workers": self.workers, "require_isolation": self.require_isolation}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    def _claim(self, waiter: _Waiter) -> tuple[str, _Worker | None]:
        """An idle template ("idle"), a free slot to start one in ("start"), or a place in the queue ("wait")."""
        with self._lock:
            if self._idle:
                return "idle", self._idle.pop()
            if self._started < self.workers:
                self._started += 1
                return "start", None
            self._waiting.append(waiter)
            return "wait", None

    def _release(self, worker: _Worker | None) -> None:
        """A call is done with ``worker`` (None: it was killed, its slot is free): to the first waiter, or idle."""
        with self._lock:
            if worker is None:
                self._started -= 1
            while self._waiting:
                waiter = self._waiting.popleft()
                if worker is None:
                    self._started += 1
                if waiter.hand(self, worker):
                    return
                if worker is None:
                    self._started -= 1
            if worker is not None:
                self._idle.append(worker)

    def _check_layers(self, worker: _Worker) -> _Worker:
        self._layers = worker.layers
        missing = [name for name in OS_LAYERS if not worker.layers.get(name)]
        if missing and self.require_isolation:
            worker.kill()
            raise IsolationUnavailable(
                f"sandbox.require_isolation=true but these isolation layers are not available here: "
                f"{', '.join(missing)} ({worker.layers.get('mount_namespace_error', 'the kernel refused them')})")
        return worker

    def _acquire(self) -> _Worker:
        waiter = _Waiter()
        how, worker = self._claim(waiter)
        if how == "wait":
            waiter.event.wait()
            worker = waiter.worker
        if worker is not None:
            return worker
        try:
            return self._check_layers(_Worker(self._settings()).wait_ready())
        except BaseException:
            self._release(None)
            raise

    async def _aacquire(self) -> _Worker:
        waiter = _Waiter(asyncio.get_running_loop())
        how, worker = self._claim(waiter)
        if how == "wait":
            worker = await waiter.future  # cancelled while queued: the template it is handed goes back (hand)
        if worker is not None:
            return worker
        try:
            return self._check_layers(await _Worker(self._settings()).await_ready())
        except BaseException:
            self._release(None)
            raise

    def _done(self, worker: _Worker, usable: bool) -> None:
        if not usable:
            worker.kill()
        self._release(worker if usable else None)

    def layers(self) -> dict:
        """Which isolation layers the sandbox processes run with (starts one process if none has started)."""
        if self._layers is None:
            self._release(self._acquire())
        return dict(self._layers)

    def call(self, source: str, function: str, arguments: dict) -> ToolResult:
        """One call, blocking this thread until its reply."""
        worker = self._acquire()
        usable = False
        try:
            result, usable = worker.call(source, function, arguments)
        finally:
            self._done(worker, usable)
        return result

    async def acall(self, source: str, function: str, arguments: dict) -> ToolResult:
        """One call, awaited: many run at once (one per template), the rest queue without holding threads.
        A call cancelled mid-way kills its template (its reply would be read by the next call)."""
        worker = await self._aacquire()
        usable = False
        try:
            result, usable = await worker.acall(source, function, arguments)
        finally:
            self._done(worker, usable)
        return result

    def close(self) -> None:
        """Stops the idle templates; busy ones go back idle when their call ends (the pool stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._started -= len(idle)
        for worker in idle:
            worker.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_isolation(sandbox_cfg) -> dict:
    """Start one sandbox process here and say which isolation layers are active; a config that requires
    layers this machine lacks fails now (IsolationUnavailable), before Ray or any actor starts."""
    from toolmaster import console

    with SandboxPool.from_config(sandbox_cfg) as pool:
        pool.workers = 1
        layers = pool.layers()
    active = [name for name in OS_LAYERS if layers.get(name)]
    missing = [name for name in OS_LAYERS if not layers.get(name)]
    console.note(f"sandbox isolation: {', '.join(active) or 'no OS layer'} active"
                 + (f"; unavailable: {', '.join(missing)}" if missing else "")
                 + "; per-call fork and audit hook always on")
    return layers
