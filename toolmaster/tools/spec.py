"""What a tool is, as plain frozen data: an OpenAI function schema plus an executor (how a call runs), and
a call's result. Tasks carry these to Ray actors; toolmaster.tools.base runs them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    content: str


@dataclass(frozen=True)
class PythonExecutor:
    """Runs ``function`` defined by ``source`` in the sandbox."""
    source: str
    function: str


@dataclass(frozen=True)
class VirtualApiExecutor:
    """Sends the call to a StableToolBench-compatible tool server (``toolmaster serve-tools``)."""
    url: str
    category: str
    tool_name: str
    api_name: str
    key: str = ""
    timeout_s: float = 30.0
    max_observation_chars: int | None = None  # StableToolBench's truncation (toolserver/client.py); None: uncut
    max_connections: int = 256  # the pooled client's connections to this server (toolserver.client_max_connections)


@dataclass(frozen=True)
class RestExecutor:
    """Calls a live REST API: ``method base_url+path`` with path and query parameters, the key from an
    environment variable (read where the call runs, so keys never travel inside tasks)."""
    base_url: str
    method: str
    path: str
    api_key_env: str
    timeout_s: float = 30.0


@dataclass(frozen=True)
class FinishExecutor:
    """StableToolBench's ``Finish`` function: calling it ends the episode (the agent loop handles it)."""


@dataclass(frozen=True)
class Tool:
    schema: dict  # {"name", "description", "parameters"} — OpenAI function schema
    executor: PythonExecutor | VirtualApiExecutor | RestExecutor | FinishExecutor

    @property
    def name(self) -> str:
        return self.schema["name"]
