"""ToolEnv actors: tool execution and episode scoring away from the rollout engines, as a pool of
restartable Ray actors.

Each actor owns a sandbox pool and is an async actor: it serves many calls at once (up to
``env_actors.max_concurrency``; sandbox calls queue for its templates, HTTP calls share its pooled client).
``RemoteToolRunner`` is the ToolRunner a rollout worker uses: it awaits the actor's call (no thread blocks
on ``ray.get``), sends each call to the actor with the fewest of its calls in flight (ties in turn), and
retries a call whose actor died (Ray restarts the actor, ``max_restarts``), so an episode survives the loss
of the process that was running its tool.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from toolmaster.config import EnvConfig, SandboxConfig
from toolmaster.envs import make_env
from toolmaster.ray_utils import ActorFailure, ResourceWait, actor_error, env_actor_demand, wait_placed
from toolmaster.tools.base import ToolResult, ToolRunner

log = logging.getLogger(__name__)
_RETRIES = 3
_BACKOFF_S = 0.1  # before the 2nd, 3rd… try of a call whose actor died: 0.1 s, 0.2 s


class ToolEnvActor:
    def __init__(self, sandbox_cfg: dict):
        self.runner = ToolRunner.from_config(SandboxConfig.model_validate(sandbox_cfg))
        self._envs = {}

    async def run(self, tool, arguments: dict) -> ToolResult:
        return await self.runner.arun(tool, arguments)

    async def score(self, env_cfg: dict, task, episode, reward_weights) -> tuple[float | None, dict, dict]:
        return await self.runner.ascore(self._env(env_cfg), task, episode, reward_weights)

    def _env(self, env_cfg: dict):
        key = repr(sorted(env_cfg.items()))
        if key not in self._envs:  # environments can be costly to build (datasets, clients): one per config
            self._envs[key] = make_env(EnvConfig.model_validate(env_cfg))
        return self._envs[key]

    def pid(self) -> int:
        import os
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


def start_env_actors(cfg) -> list:
    actor_cls = ray.remote(num_cpus=cfg.env_actors.num_cpus_per_actor, resources=cfg.env_actors.resources,
                           max_restarts=-1, max_task_retries=0,
                           max_concurrency=cfg.env_actors.max_concurrency)(ToolEnvActor)
    actors = [actor_cls.remote(cfg.sandbox.model_dump()) for _ in range(cfg.env_actors.num_actors)]
    started = [a.pid.remote() for a in actors]
    try:  # bounded where the cluster lacks what the actors ask for (cluster.resource_wait_s)
        wait_placed(started, ResourceWait(cfg.cluster, f"{len(actors)} tool-environment actor(s)",
                                          env_actor_demand(cfg)))
        ray.get(started)
    except BaseException as err:
        for a in actors:
            ray.kill(a, no_restart=True)
        if isinstance(err, RayActorError):
            raise ActorFailure("a tool-environment actor failed to start:\n"
                               + actor_error(err, cfg.cluster.log_tail_lines)) from None
        raise
    return actors


class RemoteToolRunner:
    """Same interface as ToolRunner; runs each call on one of the ToolEnv actors."""

    def __init__(self, actors: list, env_cfg: dict | None = None):
        self.actors = actors
        self.env_cfg = env_cfg  # the environment the actors score with (the same config as the caller's)
        self._in_flight = [0] * len(actors)  # this runner's calls on each actor
        self._turn = 0
        self._lock = threading.Lock()  # the blocking forms may be called from several threads

    def _pick(self) -> int:
        """The actor with the fewest of this runner's calls in flight; among equals, the next in turn."""
        with self._lock:
            n = len(self.actors)
            i = min(((self._turn + k) % n for k in range(n)), key=lambda j: self._in_flight[j])
            self._turn = (i + 1) % n
            self._in_flight[i] += 1
            return i

    def _done(self, i: int) -> None:
        with self._lock:
            self._in_flight[i] -= 1

    async def _acall(self, method: str, what: str, *args):
        """Await ``method`` on an actor; on the actor's death, again (Ray restarts it) — None if all fail."""
        for attempt in range(_RETRIES):
            i = self._pick()
            try:
                return await getattr(self.actors[i], method).remote(*args)
            except (ActorDiedError, ActorUnavailableError) as err:
                log.warning("tool-environment actor lost during %s (%s); retrying", what, type(err).__name__)
            finally:
                self._done(i)
            if attempt + 1 < _RETRIES:
                await asyncio.sleep(_BACKOFF_S * 2 ** attempt)  # a restarting actor takes a moment
        return None

    def _call(self, method: str, what: str, *args):
        """``_acall`` for blocking callers."""
        for attempt in range(_RETRIES):
            i = self._pick()
            try:
                return ray.get(getattr(self.actors[i], method).remote(*args))
            except (ActorDiedError, ActorUnavailableError) as err:
                log.warning("tool-environment actor lost during %s (%s); retrying", what, type(err).__name__)
            finally:
                self._done(i)
            if attempt + 1 < _RETRIES:
                time.sleep(_BACKOFF_S * 2 ** attempt)
        return None

    @staticmethod
    def _failed(tool) -> ToolResult:
        return ToolResult(False, f"error: tool {tool.name} could not be run: its environment actors kept failing")

    def run(self, tool, arguments: dict) -> ToolResult:
        return self._call("run", tool.name, tool, arguments) or self._failed(tool)

    async def arun(self, tool, arguments: dict) -> ToolResult:
        return await self._acall("run", tool.name, tool, arguments) or self._failed(tool)

    def _score_args(self, episode, reward_weights) -> tuple:
        if self.env_cfg is None:
            raise ValueError("RemoteToolRunner was built without env_cfg, so it cannot score episodes")
        weights = reward_weights.model_dump() if hasattr(reward_weights, "model_dump") else reward_weights
        return f"scoring {episode.episode_id}", self.env_cfg, weights

    @staticmethod
    def _scored(result, episode) -> tuple[float | None, dict, dict]:
        if result is None:
            raise RuntimeError(f"episode {episode.episode_id} could not be scored: its environment actors kept failing")
        return result

    def score(self, env, task, episode, reward_weights=None) -> tuple[float | None, dict, dict]:
        """Scored on an environment actor (where a judge's client lives), with this episode's env config."""
        what, env_cfg, weights = self._score_args(episode, reward_weights)
        return self._scored(self._call("score", what, env_cfg, task, episode, weights), episode)

    async def ascore(self, env, task, episode, reward_weights=None) -> tuple[float | None, dict, dict]:
        what, env_cfg, weights = self._score_args(episode, reward_weights)
        return self._scored(await self._acall("score", what, env_cfg, task, episode, weights), episode)

    def close(self) -> None:
        """The actors belong to the pool that started them."""
