"""Run the tool server: in this process (``toolmaster serve-tools``) or as a child process that eval starts."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml


def serve(cfg) -> None:
    """Blocks: uvicorn serving ``create_app(cfg)`` (a ToolServerConfig) on cfg.host:cfg.port."""
    import uvicorn

    from toolmaster.toolserver.app import create_app

    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level="warning")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A tool server in a child process; ``url`` once healthy. Use as a context manager."""

    def __init__(self, server_cfg, startup_timeout_s: float = 60.0):
        port = server_cfg.port or free_port(server_cfg.host)
        self.cfg = server_cfg.model_copy(update={"port": port})
        self.url = f"http://{self.cfg.host}:{port}"
        self._file = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump({"env": {"tool_server": self.cfg.model_dump()}}, self._file)
        self._file.close()
        self.proc = subprocess.Popen([sys.executable, "-m", "toolmaster.cli", "serve-tools", "--config", self._file.name],
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._wait(startup_timeout_s)

    def _wait(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tool server exited with code {self.proc.returncode} before becoming healthy")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.close()
        raise TimeoutError(f"tool server at {self.url} not healthy after {timeout:.0f} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        Path(self._file.name).unlink(missing_ok=True)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def needs_tool_server(env_cfg) -> bool:
    """Benchmarks whose tools are answered by the tool server (TMDB only without a live API key)."""
    if env_cfg.name == "stabletoolbench":
        return True
    return env_cfg.name == "tmdb" and not os.environ.get(env_cfg.tmdb.api_key_env)


@contextmanager
def tool_server_for(cfg):
    """Yields ``cfg``, or a copy pointing at a tool server started for this run and stopped after it."""
    if not needs_tool_server(cfg.env) or cfg.env.tool_server.url:
        yield cfg
        return
    with ServerProcess(cfg.env.tool_server.model_copy(update={"port": 0})) as server:
        out = cfg.model_copy(deep=True)
        out.env.tool_server.url = server.url
        yield out
