"""Run the tool server: in this process (``toolmaster serve-tools``) or as a child process that eval starts."""
from __future__ import annotations

import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from toolmaster.child_server import ChildServer


def serve(cfg) -> None:
    """Blocks: uvicorn serving ``create_app(cfg)`` (a ToolServerConfig) on cfg.host:cfg.port."""
    import uvicorn

    from toolmaster.toolserver.app import create_app

    warning = open_to_network(cfg)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level="warning")


def open_to_network(cfg) -> str | None:
    """A warning when the server listens beyond loopback and takes requests without a key."""
    import ipaddress

    try:
        loopback = cfg.host == "localhost" or ipaddress.ip_address(cfg.host).is_loopback
    except ValueError:  # a host name other than localhost
        loopback = False
    if loopback or cfg.api_keys:
        return None
    return (f"the tool server listens on {cfg.host}, beyond loopback, and accepts requests without a key: "
            "anyone who can reach it can use its simulator and write to its cache; set env.tool_server.api_keys")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess(ChildServer):
    """A tool server (`toolmaster serve-tools`) in a child process; ``url`` once healthy."""

    name = "tool server"

    def __init__(self, server_cfg, startup_timeout_s: float = 60.0):
        port = server_cfg.port or free_port(server_cfg.host)
        self.cfg = server_cfg.model_copy(update={"port": port})
        self.url = f"http://{self.cfg.host}:{port}"
        self._file = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump({"env": {"tool_server": self.cfg.model_dump()}}, self._file)
        self._file.close()
        super().__init__([sys.executable, "-m", "toolmaster.cli", "serve-tools", "--config", self._file.name],
                         self.url + "/health", startup_timeout_s, poll_s=0.3,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def _release(self) -> None:
        Path(self._file.name).unlink(missing_ok=True)


def needs_tool_server(env_cfg) -> bool:
    """Benchmarks whose tools are answered by the tool server (TMDB only without a live API key)."""
    if env_cfg.name == "stabletoolbench":
        return True
    return env_cfg.name == "tmdb" and not os.environ.get(env_cfg.tmdb.api_key_env)


def served_docs(env_cfg) -> list[str]:
    """The tool server's documents, plus the StableToolBench queries the run uses (your own train and test
    queries), so that every API a task can call has its document on the server this run starts."""
    docs = list(env_cfg.tool_server.docs)
    if env_cfg.name == "stabletoolbench":
        stb = env_cfg.stabletoolbench
        docs += [p for p in (stb.queries, stb.train_queries, stb.test_queries) if p and p not in docs]
    return docs


@contextmanager
def tool_server_for(cfg):
    """Yields ``cfg``, or a copy pointing at a tool server started for this run and stopped after it."""
    if not needs_tool_server(cfg.env) or cfg.env.tool_server.url:
        yield cfg
        return
    with ServerProcess(cfg.env.tool_server.model_copy(update={"port": 0, "docs": served_docs(cfg.env)})) as server:
        out = cfg.model_copy(deep=True)
        out.env.tool_server.url = server.url
        yield out
