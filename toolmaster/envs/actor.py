"""ToolEnv actors: tool execution away from the rollout engines, as a pool of restartable Ray actors.

Each actor owns a sandbox pool. ``RemoteToolRunner`` is the ToolRunner a rollout worker uses: it spreads
calls over the actors and retries a call whose actor died (Ray restarts the actor, ``max_restarts``), so an
episode survives the loss of the process that was running its tool.
"""
from __future__ import annotations

import itertools
import logging

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError

from toolmaster.tools.base import ToolResult, ToolRunner

log = logging.getLogger(__name__)
_RETRIES = 3


class ToolEnvActor:
    def __init__(self, sandbox_cfg: dict):
        from toolmaster.config import SandboxConfig
        self.runner = ToolRunner.from_config(SandboxConfig.model_validate(sandbox_cfg))

    def run(self, tool, arguments: dict) -> ToolResult:
        return self.runner.run(tool, arguments)

    def pid(self) -> int:
        import os
        return os.getpid()


def start_env_actors(cfg) -> list:
    actor_cls = ray.remote(num_cpus=cfg.env_actors.num_cpus_per_actor, max_restarts=-1,
                           max_task_retries=0)(ToolEnvActor)
    actors = [actor_cls.remote(cfg.sandbox.model_dump()) for _ in range(cfg.env_actors.num_actors)]
    ray.get([a.pid.remote() for a in actors])
    return actors


class RemoteToolRunner:
    """Same interface as ToolRunner; runs each call on one of the ToolEnv actors."""

    def __init__(self, actors: list):
        self.actors = actors
        self._next = itertools.cycle(range(len(actors)))

    def run(self, tool, arguments: dict) -> ToolResult:
        for attempt in range(_RETRIES):
            actor = self.actors[next(self._next)]
            try:
                return ray.get(actor.run.remote(tool, arguments))
            except (ActorDiedError, ActorUnavailableError) as err:
                log.warning("tool-environment actor lost during %s (%s); retrying", tool.name, type(err).__name__)
        return ToolResult(False, f"error: tool {tool.name} could not be run: its environment actors kept failing")

    def close(self) -> None:
        """The actors belong to the pool that started them."""
