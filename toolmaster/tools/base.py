"""ToolRunner runs tool calls with the right backend (the sandbox, a tool server, a live REST API) and
scores finished episodes (an environment's scoring may itself call out, e.g. to an LLM judge).

Tools and executors are plain frozen data (toolmaster.tools.spec), so tasks can travel to Ray actors; the
runner owns the process-local resources (the sandbox pool).

The agent loop awaits ``arun`` and ``ascore``: a call waits on its sandbox template's pipe or its HTTP
connection through the event loop, holding no thread, so concurrent episodes' calls overlap without a
thread-pool cap. ``run`` and ``score`` are the blocking forms for synchronous callers.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from toolmaster.rewards import score_episode
from toolmaster.tools.rest import acall_rest, call_rest
from toolmaster.tools.sandbox import SandboxPool
from toolmaster.tools.spec import FinishExecutor, PythonExecutor, RestExecutor, Tool, ToolResult, VirtualApiExecutor
from toolmaster.toolserver.client import acall_virtual, call_virtual

# Scoring may block (an LLM judge's HTTP client, a dataset lookup): it runs on threads of its own, as many as
# episodes finishing at once could want, so a slow judge never queues behind the default executor's few.
SCORING_THREADS = 64
_scoring: ThreadPoolExecutor | None = None
_scoring_lock = threading.Lock()


async def run_scoring(fn, *args):
    """``fn(*args)`` on the scoring threads, awaited."""
    global _scoring
    with _scoring_lock:
        if _scoring is None:
            _scoring = ThreadPoolExecutor(SCORING_THREADS, thread_name_prefix="toolmaster-score")
    return await asyncio.get_running_loop().run_in_executor(_scoring, fn, *args)

# the data types are re-exported: callers import them from here as well as from toolmaster.tools.spec
__all__ = ["FinishExecutor", "PythonExecutor", "RestExecutor", "Tool", "ToolResult", "ToolRunner",
           "VirtualApiExecutor"]


class ToolRunner:
    def __init__(self, sandbox):
        self.sandbox = sandbox

    @classmethod
    def from_config(cls, sandbox_cfg) -> "ToolRunner":
        return cls(SandboxPool.from_config(sandbox_cfg))

    def run(self, tool: Tool, arguments: dict) -> ToolResult:
        ex = tool.executor
        if isinstance(ex, PythonExecutor):
            return self.sandbox.call(ex.source, ex.function, arguments)
        if isinstance(ex, VirtualApiExecutor):
            return call_virtual(ex.url, ex.category, ex.tool_name, ex.api_name, arguments, key=ex.key,
                                timeout=ex.timeout_s, max_observation_chars=ex.max_observation_chars,
                                max_connections=ex.max_connections)
        if isinstance(ex, RestExecutor):
            return call_rest(ex, arguments)
        raise TypeError(f"tool {tool.name!r} has an executor of kind {type(ex).__name__}, which is not run as a call")

    async def arun(self, tool: Tool, arguments: dict) -> ToolResult:
        """``run`` awaited: the sandbox pool's templates and the pooled HTTP clients serve many calls at once."""
        ex = tool.executor
        if isinstance(ex, PythonExecutor):
            return await self.sandbox.acall(ex.source, ex.function, arguments)
        if isinstance(ex, VirtualApiExecutor):
            return await acall_virtual(ex.url, ex.category, ex.tool_name, ex.api_name, arguments, key=ex.key,
                                       timeout=ex.timeout_s, max_observation_chars=ex.max_observation_chars,
                                       max_connections=ex.max_connections)
        if isinstance(ex, RestExecutor):
            return await acall_rest(ex, arguments)
        raise TypeError(f"tool {tool.name!r} has an executor of kind {type(ex).__name__}, which is not run as a call")

    async def ascore(self, env, task, episode, reward_weights=None) -> tuple[float | None, dict, dict]:
        """``score`` awaited (on the scoring threads: a grader may block)."""
        return await run_scoring(self.score, env, task, episode, reward_weights)

    def score(self, env, task, episode, reward_weights=None) -> tuple[float | None, dict, dict]:
        """The environment's grade (its own rule, maybe an LLM judge; None: not gradable without a judge),
        its further judgments (e.g. a judge's success score beside TMDB's path metric), then the weighted
        reward components."""
        episode.grade = env.grade(task, episode)
        episode.correct = episode.grade is not None and episode.grade >= 1.0
        episode.reward_grade = env.reward_grade(task, episode)
        return episode.grade, env.judgments(task, episode), score_episode(episode, reward_weights)

    def close(self) -> None:
        self.sandbox.close()


async def close_async_clients() -> None:
    """Close the running loop's pooled HTTP sessions (before a loop that ran tool calls ends)."""
    from toolmaster.tools.rest import close_async_client
    from toolmaster.toolserver.client import close_async_clients as close_tool_server_clients

    await close_tool_server_clients()
    await close_async_client()
