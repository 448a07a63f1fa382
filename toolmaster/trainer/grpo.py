"""The GRPO driver (DESIGN.md, "One GRPO step").

Reads top to bottom: take B tasks → G episodes each from the rollout pool → group-normalized advantages →
one learner step → publish weights v+1 to every rollout worker → log → checkpoint. The driver handles
rewards and token lists, never model tensors.

With ``grpo.async_rollouts`` the episodes of step s+1 are generated while step s trains and syncs (the
engines swap weights between turns, so a trajectory may start on v and finish on v+1); each trajectory
carries the version it started on, the importance ratio uses its sampling logprobs, and episodes older
than ``max_staleness`` versions are re-sampled before training.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from toolmaster import console
from toolmaster.config import check_runtime
from toolmaster.envs import make_env
from toolmaster.learner.group import LearnerGroup
from toolmaster.learner.losses import group_advantages
from toolmaster.ray_utils import init_ray
from toolmaster.rollout.pool import RolloutPool
from toolmaster.trainer.run_dir import RunDir


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def build_batch(records: list[dict], group_size: int, std_normalize: bool, drop_zero_variance: bool) -> tuple[dict, dict]:
    rewards = [r["rewards"]["total"] for r in records]
    advantages = group_advantages(rewards, group_size, std_normalize)
    keep = []
    for lo in range(0, len(records), group_size):
        group = rewards[lo: lo + group_size]
        if drop_zero_variance and max(group) == min(group):
            continue
        keep.extend(range(lo, lo + group_size))
    trainable = [i for i in keep if any(records[i]["loss_mask"])]  # an episode cut before any sampled token
    kept = [records[i] for i in trainable]
    batch = {"token_ids": [r["token_ids"] for r in kept], "loss_mask": [r["loss_mask"] for r in kept],
             "logprobs": [r["logprobs"] for r in kept], "advantages": [advantages[i] for i in trainable],
             "total_tokens": sum(sum(r["loss_mask"]) for r in kept)}
    info = {"reward": _mean(rewards), "success": _mean(r["correct"] for r in records),
            "trained_sequences": len(kept), "dropped_groups": (len(records) - len(keep)) // group_size,
            "advantage_abs_mean": _mean(abs(a) for a in batch["advantages"])}
    return batch, info


def _pad_to_ranks(batch: dict, ranks: int) -> dict:
    """Every rank must run the same number of steps; fill with zero-mask copies (no gradient, no tokens)."""
    n = len(batch["token_ids"])
    missing = (-n) % ranks if n else ranks
    for _ in range(missing):
        src = batch["token_ids"][0] if n else [0, 0]
        batch["token_ids"].append(src)
        batch["loss_mask"].append([0] * len(src))
        batch["logprobs"].append([0.0] * len(src))
        batch["advantages"].append(0.0)
    batch["total_tokens"] = max(batch["total_tokens"], 1)
    return batch


class GRPOTrainer:
    """Holds the actors of one run; ``step()`` is one synchronous GRPO step."""

    def __init__(self, cfg, model_dir: str, resume: bool = False):
        check_runtime(cfg)
        init_ray()
        self.cfg, self.run = cfg, RunDir(cfg, "grpo")
        self.step_index, self.version = 0, 0
        if resume and (state := self.run.load_state()):
            self.step_index, self.version, model_dir = state["step"], state["version"], state["checkpoint"]
        self.model_dir = model_dir
        self.env = make_env(cfg.env)
        self._train_size = self.env.size("train")
        if self._train_size == 0:
            raise ValueError(f"{cfg.env.name} has no training tasks (toolhop: set env.toolhop.test_fraction below 1)")
        self.learners = LearnerGroup(cfg, model_dir)
        self.pool = RolloutPool(cfg, model_dir)
        if cfg.rollout.weight_transport != "object_store":  # a transport with a standing connection (NCCL)
            self.learners.connect_transport(cfg.rollout.weight_transport, list(self.pool.workers.values()))
        if self.version:  # resumed: the engines loaded the checkpoint, which is this version
            self.pool.update_weights({"version": self.version, "ref": None, "preloaded": True})
        self.last_records: list[dict] = []
        self._prefetch: tuple[int, Future] | None = None
        self._events_logged = 0
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollouts")

    def _tasks(self, step: int) -> list:
        """B tasks at the data position; a finite train split (a benchmark's) is cycled through in epochs."""
        b, size = self.cfg.grpo.prompts_per_step, self._train_size
        if size is None:
            return self.env.tasks("train", b, start=step * b)
        return [self.env.tasks("train", 1, start=(step * b + i) % size)[0] for i in range(b)]

    def _timed_rollouts(self, step: int) -> tuple[list, list[dict], float]:
        start = time.time()
        tasks = self._tasks(step)
        return tasks, self.pool.run(tasks, self.cfg.grpo.group_size, step), time.time() - start

    def _rollouts(self, step: int) -> tuple[list, list[dict], dict]:
        """This step's tasks and episodes: generated now (sync), or collected from the prefetch started last
        step."""
        g = self.cfg.grpo
        if not g.async_rollouts:
            tasks, records, seconds = self._timed_rollouts(step)
            return tasks, records, {"time/rollout_generate": seconds}
        if self._prefetch is None or self._prefetch[0] != step:  # first step, or just resumed
            self._prefetch = (step, self._background.submit(self._timed_rollouts, step))
        wait_start = time.time()
        tasks, records, seconds = self._prefetch[1].result()
        waited = time.time() - wait_start
        self._prefetch = None
        stale = [i for i, r in enumerate(records) if self.version - r["policy_version"] > g.max_staleness]
        if stale:  # too old to train on: sample those episodes again with the current weights
            # records come grouped by task, in task order
            specs = [(records[i]["episode_id"], tasks[i // g.group_size]) for i in stale]
            for i, record in zip(stale, self.pool.run_specs(specs)):
                records[i] = record
        if step + 1 < g.steps:  # overlap the next step's rollouts with this step's train and sync
            self._prefetch = (step + 1, self._background.submit(self._timed_rollouts, step + 1))
        return tasks, records, {"time/rollout_generate": seconds, "time/rollout_wait": waited,
                                "rollout_hidden_fraction": max(0.0, 1.0 - waited / seconds) if seconds else 0.0,
                                "stale_resampled": len(stale)}

    def step(self) -> dict:
        g, step = self.cfg.grpo, self.step_index
        t0 = time.time()
        tasks, records, rollout_info = self._rollouts(step)
        t1 = time.time()
        batch, info = build_batch(records, g.group_size, g.std_normalize, g.drop_zero_variance)
        t2 = time.time()
        train = self.learners.train_step(_pad_to_ranks(batch, self.cfg.learner.num_ranks), "grpo")
        t3 = time.time()
        self.version += 1
        reload_s = self.pool.update_weights(self.learners.publish(self.version, self.cfg.rollout.weight_transport))
        t4 = time.time()
        metrics = {
            **info, **{f"train/{k}": v for k, v in train.items()}, "version": self.version,
            "trial_calls": _mean(r["stats"]["trial_calls"] for r in records),
            "corrections": _mean(r["stats"]["corrections"] for r in records),
            "turns": _mean(r["stats"]["turns"] for r in records),
            "tokens_per_episode": _mean(len(r["token_ids"]) for r in records),
            "episodes": len(records), "task_ids": [t.id for t in tasks],
            "episode_ids": [r["episode_id"] for r in records],
            # rollout wall time; inside it, per-episode means of generation, tool calls and reward scoring
            "time/rollout": t1 - t0, "time/advantages": t2 - t1, "time/train": t3 - t2, "time/sync": t4 - t3,
            **{f"time/episode_{k}": _mean(r["timings"][k] for r in records) for k in ("generate", "tools", "score")},
            "time/engine_reload": reload_s, "workers_replaced": self.pool.replaced, **rollout_info,
            "policy_versions": sorted({r["policy_version"] for r in records}),
            "rollout_workers": len(self.pool.workers), "scaling_events": self.pool.events[self._events_logged:],
            "staleness_max": max(self.version - 1 - r["policy_version"] for r in records),
        }
        self._events_logged = len(self.pool.events)
        self.step_index += 1
        self.run.log(self.step_index, metrics)
        every = g.checkpoint_every
        if (every and self.step_index % every == 0) or self.step_index == g.steps:
            self.checkpoint()
        self.last_records = records
        return metrics

    def checkpoint(self) -> str:
        path = str(self.run.path / "checkpoints" / "latest")
        self.learners.save(path, self.model_dir)
        self.run.save_state(self.step_index, {"version": self.version, "checkpoint": path})
        return path

    def close(self) -> None:
        if self._prefetch is not None:  # let an in-flight prefetch finish before its workers go away
            self._prefetch[1].exception()
        self._background.shutdown(wait=True)
        self.pool.shutdown()
        self.learners.shutdown()
        self.run.finish()


def train_grpo(cfg, model_dir: str, resume: bool = False) -> dict:
    trainer = GRPOTrainer(cfg, model_dir, resume)
    history = []
    try:
        with console.progress("GRPO steps", cfg.grpo.steps) as advance:
            advance(trainer.step_index)
            while trainer.step_index < cfg.grpo.steps:
                history.append(trainer.step())
                advance(trainer.step_index)
        trainer.run.plot(("reward", "success"))
    finally:
        trainer.close()
    return {"run_dir": str(trainer.run.path), "history": history, "version": trainer.version}
