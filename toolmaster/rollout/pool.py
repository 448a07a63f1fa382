"""RolloutPool: owns the rollout workers and which worker holds which episode.

The driver asks for G episodes of each task and gets exactly those back; the pool decides placement,
records assignments, and re-queues a dead worker's episodes on live workers (replacing the worker), so
the driver never sees a lost or duplicated episode.
"""
from __future__ import annotations

import logging

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError

from toolmaster.rollout.worker import RolloutWorker

log = logging.getLogger(__name__)


class RolloutPool:
    def __init__(self, cfg, model_dir: str):
        self.cfg, self.model_dir = cfg, model_dir
        self._actor_cls = ray.remote(num_cpus=cfg.rollout.num_cpus_per_worker, max_restarts=0)(RolloutWorker)
        self._next_id = 0
        self.workers: dict[int, ray.actor.ActorHandle] = {}
        self.assignment: dict[str, int] = {}  # episode id -> worker id
        self.latest_handle: dict | None = None
        self.replaced = 0
        self.env_actors = []
        if cfg.env_actors.num_actors:
            from toolmaster.envs.actor import start_env_actors
            self.env_actors = start_env_actors(cfg)
        for _ in range(cfg.rollout.num_workers):
            self._spawn()
        ray.get([w.ready.remote() for w in self.workers.values()])

    def _spawn(self) -> int:
        wid = self._next_id
        self._next_id += 1
        self.workers[wid] = self._actor_cls.remote(wid, self.model_dir, self.cfg.model_dump(), self.env_actors)
        if self.latest_handle is not None:  # a late joiner pulls the current version before taking work
            self.workers[wid].update_weights.remote(self.latest_handle)
        return wid

    def run(self, tasks: list, group_size: int, step: int) -> list[dict]:
        """Exactly ``len(tasks) * group_size`` episode records, grouped by task in task order."""
        specs = [(f"s{step}-t{i}-g{g}", task) for i, task in enumerate(tasks) for g in range(group_size)]
        pending = list(specs)
        done: dict[str, dict] = {}
        while pending:
            ids = sorted(self.workers)
            shards = {wid: pending[k::len(ids)] for k, wid in enumerate(ids) if pending[k::len(ids)]}
            futures = {}
            for wid, shard in shards.items():
                for eid, _ in shard:
                    self.assignment[eid] = wid
                futures[self.workers[wid].run.remote(shard)] = (wid, shard)
            pending = []
            for ref, (wid, shard) in futures.items():
                try:
                    for rec in ray.get(ref):
                        done[rec["episode_id"]] = rec
                except (ActorDiedError, ActorUnavailableError) as err:
                    log.warning("rollout worker %d died (%s); re-queueing %d episodes", wid, type(err).__name__,
                                len(shard))
                    self.workers.pop(wid, None)
                    self._spawn()
                    self.replaced += 1
                    pending.extend(shard)
        for eid, _ in specs:
            self.assignment.pop(eid, None)
        return [done[eid] for eid, _ in specs]

    def update_weights(self, handle: dict) -> float:
        self.latest_handle = handle
        return max(ray.get([w.update_weights.remote(handle) for w in self.workers.values()]))

    def prompt_logprobs(self, token_ids: list[int]) -> list[list[float]]:
        return ray.get([w.prompt_logprobs.remote(token_ids) for w in self.workers.values()])

    def shutdown(self) -> None:
        for w in self.workers.values():
            try:
                ray.get(w.shutdown.remote(), timeout=30)
            except Exception:  # best effort: the actor is killed next anyway
                pass
            ray.kill(w)
        self.workers.clear()
        for a in self.env_actors:
            ray.kill(a, no_restart=True)
        self.env_actors = []
