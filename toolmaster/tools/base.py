"""A tool is an OpenAI function schema plus an executor; ToolRunner runs calls with the right backend
and scores finished episodes (an environment's scoring may itself call out, e.g. to an LLM judge).

Tools and executors are plain frozen data, so tasks can travel to Ray actors; the runner owns the
process-local resources (the sandbox pool).
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


class ToolRunner:
    def __init__(self, sandbox):
        self.sandbox = sandbox

    @classmethod
    def from_config(cls, sandbox_cfg) -> "ToolRunner":
        from toolmaster.tools.sandbox import SandboxPool
        return cls(SandboxPool.from_config(sandbox_cfg))

    def run(self, tool: Tool, arguments: dict) -> ToolResult:
        ex = tool.executor
        if isinstance(ex, PythonExecutor):
            return self.sandbox.call(ex.source, ex.function, arguments)
        if isinstance(ex, VirtualApiExecutor):
            from toolmaster.toolserver.client import call_virtual
            return call_virtual(ex.url, ex.category, ex.tool_name, ex.api_name, arguments, key=ex.key,
                                timeout=ex.timeout_s)
        if isinstance(ex, RestExecutor):
            from toolmaster.tools.rest import call_rest
            return call_rest(ex, arguments)
        raise TypeError(f"tool {tool.name!r} has an executor of kind {type(ex).__name__}, which is not run as a call")

    def score(self, env, task, episode, reward_weights=None) -> tuple[float | None, dict, dict]:
        """The environment's grade (its own rule, maybe an LLM judge; None: not gradable without a judge),
        its further judgments (e.g. a judge's success score beside TMDB's path metric), then the weighted
        reward components."""
        from toolmaster.rewards import score_episode

        episode.grade = env.grade(task, episode)
        episode.correct = episode.grade is not None and episode.grade >= 1.0
        return episode.grade, env.judgments(task, episode), score_episode(episode, reward_weights)

    def close(self) -> None:
        self.sandbox.close()
