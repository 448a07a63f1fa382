"""Your own agent as the environment: ``env.name=agent env.agent.entry=pkg.module:function
env.agent.tasks=FILE.jsonl``.

The framework calls ``async def function(task: dict, client: openai.AsyncOpenAI, model: str)`` once per
episode, on the rollout worker that owns the episode, with ``client`` pointed at that worker's recording
endpoint (rollout/endpoint.py). It returns the reward, or a dict with ``reward`` and optionally ``correct``
(default: reward ≥ 1) and ``metrics``. The trajectory is what the endpoint recorded.
"""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

from toolmaster.envs.base import Environment, Task


def load_agent(entry: str | None):
    """The agent function named by ``package.module:function``; a clear error for anything else."""
    if not entry or ":" not in entry:
        raise ValueError(f"env.agent.entry must be 'package.module:function', got {entry!r}")
    module_name, _, name = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"env.agent.entry: cannot import {module_name!r} ({err})") from None
    fn = getattr(module, name, None)
    if not inspect.iscoroutinefunction(fn):
        raise ValueError(f"env.agent.entry: {entry!r} is not an async function "
                         "(async def f(task, client, model) -> float | dict)")
    return fn


def agent_result(value) -> tuple[float, bool, dict]:
    """(reward, correct, metrics) from what the agent function returned."""
    if isinstance(value, dict):
        if "reward" not in value:
            raise ValueError(f"the agent returned a dict without 'reward': {sorted(value)}")
        reward = float(value["reward"])
        return reward, bool(value.get("correct", reward >= 1.0)), dict(value.get("metrics") or {})
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value) >= 1.0, {}
    raise ValueError(f"the agent returned {type(value).__name__}; return a number or a dict with 'reward'")


class EndpointEnv(Environment):
    """An environment whose episodes are outside code talking to the worker's recording endpoint
    (agent/custom.py): ``agent(task_row, client, model)`` runs one episode and returns its reward. Tasks are
    JSON rows; the last ``test_fraction`` of them is the test split."""
    metric = "success"
    splits = ("train", "test")

    def _set_rows(self, rows: list[dict], test_fraction: float) -> None:
        cut = len(rows) - round(len(rows) * test_fraction)
        self._splits = {"train": rows[:cut], "test": rows[cut:]}

    @property
    def endpoint_model(self) -> str:
        return self.cfg.model_name

    def tasks(self, split: str = "train", num: int | None = None, start: int = 0) -> list[Task]:
        self.require_split(split)
        pool = [Task(id=f"{self.name}-{split}-{i}", question=json.dumps(row)[:500], tools=(),
                     reference=str(row.get("answer", "")), metadata={"task": row})
                for i, row in enumerate(self._splits[split])]
        return self._slice(pool, num, start)

    def grade(self, task: Task, episode) -> float | None:
        return episode.grade  # the agent's own verdict, set where it ran (agent/custom.py)


class AgentEnv(EndpointEnv):
    name = "agent"

    def __init__(self, cfg):
        self.cfg = cfg
        self.agent = load_agent(cfg.entry)
        if not cfg.tasks or not Path(cfg.tasks).is_file():
            raise ValueError(f"env.agent.tasks must be a JSONL file of tasks, got {cfg.tasks!r}")
        rows = []
        for n, line in enumerate(Path(cfg.tasks).read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as err:
                    raise ValueError(f"{cfg.tasks}:{n}: not a JSON object ({err})") from None
                if not isinstance(rows[-1], dict):
                    raise ValueError(f"{cfg.tasks}:{n}: a task must be a JSON object")
        self._set_rows(rows, cfg.test_fraction)
