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

from toolmaster.tools.base import ToolResult

_GRACE_S = 2.0  # the child's own alarm fires first; the hard kill is for code stuck in C


class _Worker:
    def __init__(self, memory_mb: int, timeout_s: float, output_chars: int):
        self.timeout_s = timeout_s
        self.scratch = tempfile.mkdtemp(prefix="toolmaster-sandbox-")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "HOME": self.scratch, "TMPDIR": self.scratch}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "toolmaster.tools.sandbox_child", self.scratch, str(memory_mb),
             str(timeout_s), str(output_chars)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            cwd=_package_root(), start_new_session=True, text=True, bufsize=1)
        self._buffer = ""
        self.eof = False
        ready = self._read_line(timeout_s=60.0)
        if ready is None:
            self.kill()
            raise RuntimeError("sandbox process failed to start")
        self.network_namespace = json.loads(ready).get("network_namespace", False)

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
        reply = json.loads(line)
        self._clear_scratch()
        return ToolResult(bool(reply["ok"]), reply["content"]), True

    def _clear_scratch(self) -> None:
        for name in os.listdir(self.scratch):  # calls are stateless: nothing survives into the next one
            path = os.path.join(self.scratch, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)

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

    def __post_init__(self):
        self._idle: queue.Queue | None = None
        self._lock = threading.Lock()
        self._started = 0

    @classmethod
    def from_config(cls, cfg) -> "SandboxPool":
        return cls(cfg.workers, cfg.timeout_s, cfg.memory_mb, cfg.output_chars)

    def __getstate__(self):
        return {"workers": self.workers, "timeout_s": self.timeout_s, "memory_mb": self.memory_mb,
                "output_chars": self.output_chars}

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
                    return _Worker(self.memory_mb, self.timeout_s, self.output_chars)
                except Exception:
                    self._started -= 1
                    raise
        return self._idle.get()

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
