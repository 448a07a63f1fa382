"""An HTTP server in a child process, ready once a URL answers 200 (the tool server, a vLLM model server)."""
from __future__ import annotations

import subprocess
import time

import httpx


class ChildServer:
    """Starts ``cmd`` and waits until ``ready_url`` answers; stops the process on close. A context manager."""

    name = "server"

    def __init__(self, cmd: list[str], ready_url: str, startup_timeout_s: float, *, poll_s: float = 0.5,
                 stop_grace_s: float = 10.0, **popen_kwargs):
        self._stop_grace_s = stop_grace_s
        self.proc = subprocess.Popen(cmd, **popen_kwargs)
        deadline = time.time() + startup_timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode} before it was ready: "
                                   f"{' '.join(cmd)}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
        self.close()
        raise TimeoutError(f"{self.name} not ready at {ready_url} after {startup_timeout_s:.0f} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self._stop_grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._release()

    def _release(self) -> None:
        """What a subclass holds besides the process (a config file, a log file)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
