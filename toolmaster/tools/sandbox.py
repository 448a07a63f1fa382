"""A pool of sandboxed Python processes that run tool source (see sandbox_child for the limits).

The pool is plain and picklable: its processes start lazily in whichever process (driver, Ray actor)
first makes a call, and are not carried by pickling.
"""
from __future__ import annotations

import json
import os
import queue
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
        ready = self._read_line(timeout_s=60.0)
        if ready is None:
            self.kill()
            raise RuntimeError("sandbox process failed to start")
        self.layers = json.loads(ready)["layers"]

    def _read_line(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while "\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    return None
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.eof = True
                    return None
                self._buffer += chunk.decode("utf-8", errors="replace")
        line, self._buffer = self._buffer.split("\n", 1)
        return line

    def call(self, source: str, function: str, arguments: dict) -> tuple[ToolResult, bool]:
        """Returns the result and whether this process is still usable."""
        try:
            self.proc.stdin.write(json.dumps({"source": source, "function": function, "arguments": arguments},
                                             default=str) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return ToolResult(False, "error: tool process crashed"), False
        line = self._read_line(self.timeout_s + _GRACE_S)
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


@dataclass
class SandboxPool:
    workers: int = 2
    timeout_s: float = 10.0
    memory_mb: int = 1024
    output_chars: int = 2000
    scratch_mb: int = 64
    isolate: bool = True
    require_isolation: bool = False

    def __post_init__(self):
        self._idle: queue.Queue | None = None
        self._lock = threading.Lock()
        self._started = 0
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

    def _acquire(self) -> _Worker:
        with self._lock:
            if self._idle is None:
                self._idle = queue.Queue()
            if self._idle.empty() and self._started < self.workers:
                self._started += 1
                try:
                    worker = _Worker(self._settings())
                except Exception:
                    self._started -= 1
                    raise
                self._check_layers(worker)
                return worker
        return self._idle.get()

    def _check_layers(self, worker: _Worker) -> None:
        self._layers = worker.layers
        missing = [name for name in OS_LAYERS if not worker.layers.get(name)]
        if missing and self.require_isolation:
            worker.kill()
            self._started -= 1
            raise IsolationUnavailable(
                f"sandbox.require_isolation=true but these isolation layers are not available here: "
                f"{', '.join(missing)} ({worker.layers.get('mount_namespace_error', 'the kernel refused them')})")

    def layers(self) -> dict:
        """Which isolation layers the sandbox processes run with (starts one process if none has started)."""
        if self._layers is None:
            worker = self._acquire()
            self._idle.put(worker)
        return dict(self._layers)

    def call(self, source: str, function: str, arguments: dict) -> ToolResult:
        worker = self._acquire()
        try:
            result, usable = worker.call(source, function, arguments)
        except BaseException:
            usable = False
            raise
        finally:
            if not usable:
                worker.kill()
                with self._lock:
                    self._started -= 1
            else:
                self._idle.put(worker)
        return result

    def close(self) -> None:
        if self._idle is None:
            return
        while not self._idle.empty():
            self._idle.get_nowait().kill()
        self._started = 0

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
