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
class Tool:
    schema: dict  # {"name", "description", "parameters"} — OpenAI function schema
    executor: PythonExecutor

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
        raise TypeError(f"tool {tool.name!r} has an executor of unknown kind {type(ex).__name__}")

    def score(self, env, task, episode, reward_weights=None) -> tuple[bool, dict]:
        """Correctness by the environment's own rule, then the weighted reward components."""
        from toolmaster.rewards import score_episode

        episode.correct = env.is_correct(task, episode.final_message, episode.answer, episode.last_observation)
        return episode.correct, score_episode(episode, reward_weights)

    def close(self) -> None:
        self.sandbox.close()
