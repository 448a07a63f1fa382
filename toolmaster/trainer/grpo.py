"""The GRPO driver (docs/architecture.md, "One GRPO step").

Reads top to bottom: take B tasks → G episodes each from the rollout pool → (with ``grpo.filter_groups``)
drop groups whose outcome does not vary and sample new tasks until B informative groups are collected →
advantages (outcome normalized within the group, shaping terms only centred: trainer/advantages.py) →
``grpo.updates_per_step`` learner updates → publish weights v+1 to every rollout worker → (every
``grpo.eval_every`` steps) greedy held-out evaluation on the same fleet → curriculum → log → checkpoint.
The driver handles rewards and token lists, never model tensors.

With ``grpo.async_rollouts`` the first sampling round of step s+1 is generated while step s trains and
syncs (the engines swap weights between turns, so a trajectory may start on v and finish on v+1); each
trajectory carries the version it started on, the importance ratio uses its sampling logprobs, and
episodes older than ``max_staleness`` versions are re-sampled before training.
"""
from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from toolmaster import console
from toolmaster.config import ConfigError, check_runtime
from toolmaster.envs import make_env
from toolmaster.plan import check_learner_plan, check_model_dir
from toolmaster.ray_utils import check_cluster_resources, init_ray
from toolmaster.rollout.record import RolloutRecord
from toolmaster.rollout.settings import EpisodeSettings
from toolmaster.tools.sandbox import check_isolation
from toolmaster.trainer.advantages import (
    episode_advantages,
    episode_credit,
    informative,
    loss_weights,
    mask_after_first_error,
)
from toolmaster.trainer.checkpoints import Checkpoints, check_optimizer_source, has_engine_state
from toolmaster.trainer.curriculum import Curriculum
from toolmaster.trainer.fleet import Fleet, build_fleet
from toolmaster.trainer.run_dir import RunDir


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def build_batch(records: list[RolloutRecord], g, reward_weights: dict) -> tuple[dict, dict]:
    """The sequences to train on, with per-sequence advantages; ``records`` come grouped by task."""
    group_size = g.group_size
    with_failed = g.train_on_failed_episodes
    advantages = episode_advantages(records, group_size, reward_weights, g.std_normalize, with_failed)
    if g.failure_credit == "until_first_error":
        records = [dataclasses.replace(r, loss_mask=mask_after_first_error(r)) for r in records]
    if g.context_limit == "mask":  # its group statistics keep it; its tokens are neither pushed up nor down
        records = [dataclasses.replace(r, loss_mask=[0] * len(r.loss_mask)) if r.finish_reason == "context_limit"
                   else r for r in records]
    trainable = [i for i, r in enumerate(records) if any(r.loss_mask)  # an episode cut before any sampled token
                 and (with_failed or not r.failed)]
    kept = [records[i] for i in trainable]
    # a custom agent whose client broke its history's prefix has several segments: each is a sequence
    sequences = [(seq, i) for i in trainable for seq in records[i].sequences]
    batch = {"token_ids": [s.token_ids for s, _ in sequences], "loss_mask": [s.loss_mask for s, _ in sequences],
             "logprobs": [s.logprobs for s, _ in sequences], "advantages": [advantages[i] for _, i in sequences],
             "episode_ids": [records[i].episode_id for _, i in sequences]}
    # token-weighted advantage mass by sign: under token_mean it is what pushes sampled tokens up or down
    mass = [a * sum(m) for a, m in zip(batch["advantages"], batch["loss_mask"])]
    info = {"trained_sequences": len(kept),
            "advantage_abs_mean": _mean(abs(a) for a in batch["advantages"]),
            "advantage_token_mass_pos": sum(x for x in mass if x > 0),
            "advantage_token_mass_neg": sum(x for x in mass if x < 0),
            # per group: its share of correct episodes (a rare failure in a strong group gets the
            # largest negative advantage under std normalization: −√(G−1) at one failure in G)
            "group_success": [_mean(r.correct for r in records[lo: lo + group_size])
                              for lo in range(0, len(records), group_size)]}
    return batch, info


def minibatches(batch: dict, count: int, aggregation: str, seed: int) -> list[dict]:
    """``count`` slices of the batch (shuffled, seeded), each with the loss weights of its own mean."""
    order = list(range(len(batch["token_ids"])))
    random.Random(seed).shuffle(order)
    slices = [order[k::count] for k in range(count)]
    out = []
    for idx in slices:
        part = {key: [batch[key][i] for i in idx] for key in ("token_ids", "loss_mask", "logprobs", "advantages")}
        part["loss_weights"] = loss_weights([sum(m) for m in part["loss_mask"]], aggregation)
        out.append(part)
    return [p for p in out if p["token_ids"]]


def _pad_to_ranks(batch: dict, ranks: int) -> dict:
    """Every rank must run the same number of steps; fill with zero-weight copies (no gradient, no tokens)."""
    n = len(batch["token_ids"])
    for _ in range((-n) % ranks):
        src = batch["token_ids"][0]
        batch["token_ids"].append(src)
        batch["loss_mask"].append([0] * len(src))
        batch["logprobs"].append([0.0] * len(src))
        batch["advantages"].append(0.0)
        batch["loss_weights"].append(0.0)
    return batch


def warmup_lr(peak: float, warmup: int, update: int) -> float:
    return peak * min(1.0, (update + 1) / warmup) if warmup else peak


class GRPOTrainer:
    """One GRPO run over its collaborators: the environment, the rollout pool, the learner group and the run
    directory (``start_grpo`` makes them). ``step()`` is one GRPO step. ``state``: a resumed run's trainer
    state (step, version, updates, best, curriculum)."""

    def __init__(self, cfg, env, pool, learners, run: RunDir, model_dir: str, state: dict | None = None):
        self.cfg, self.env, self.pool, self.learners, self.run = cfg, env, pool, learners, run
        self._train_size = env.size("train")
        self.settings = EpisodeSettings.of(cfg, training=True)
        self.eval_settings = EpisodeSettings.of(cfg, cfg.eval.generation)
        self.checkpoints = Checkpoints(run, cfg.grpo.keep_checkpoints)
        state = state or {}
        self.step_index, self.version = state.get("step", 0), state.get("version", 0)
        self.updates = state.get("updates", self.step_index)
        # grpo.keep_best: the best evaluation so far ({version, step, score, checkpoint}); the start model
        # counts as a candidate, so a run that only makes the model worse names the start model
        self.best: dict | None = state.get("best")
        if state and self.best is None:  # the start model was best, and no checkpoint was written since
            self.best = run.load_meta().get("best")
        self.model_dir = model_dir
        self.reward_weights = cfg.rewards.model_dump()
        self.curriculum = None
        if cfg.env.name == "toolworld" and cfg.env.toolworld.curriculum.enabled:
            self.curriculum = Curriculum(cfg.env.toolworld, state.get("curriculum"))
        self.fleet: Fleet | None = None  # set when the trainer built its fleet and closes it
        self.last_records: list[RolloutRecord] = []
        self._prefetch: tuple[int, Future] | None = None
        self._events_logged = 0
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollouts")

    def _tasks(self, step: int, sampling_round: int = 0) -> list:
        """B tasks at the data position; every step owns ``max_sampling_rounds`` blocks of B positions when
        groups are filtered (so positions do not depend on how many rounds earlier steps took); a finite
        train split (a benchmark's) is cycled through in epochs."""
        g = self.cfg.grpo
        b, size = g.prompts_per_step, self._train_size
        start = (step * (g.max_sampling_rounds if g.filter_groups else 1) + sampling_round) * b
        if self.curriculum is not None:
            return self.curriculum.tasks("train", b, start)
        if size is None:
            return self.env.tasks("train", b, start=start)
        return [self.env.tasks("train", 1, start=(start + i) % size)[0] for i in range(b)]

    def _timed_rollouts(self, step: int) -> tuple[list, list[dict], float]:
        start = time.time()
        tasks = self._tasks(step)
        return tasks, self.pool.run(tasks, self.cfg.grpo.group_size, step, settings=self.settings), time.time() - start

    def _rollouts(self, step: int) -> tuple[list, list[dict], dict]:
        """This step's first sampling round: generated now (sync), or collected from the prefetch started
        last step."""
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
        stale = [i for i, r in enumerate(records) if self.version - r.policy_version > g.max_staleness]
        if stale:  # too old to train on: sample those episodes again with the current weights
            # records come grouped by task, in task order
            specs = [(records[i].episode_id, tasks[i // g.group_size]) for i in stale]
            for i, record in zip(stale, self.pool.run_specs(specs, settings=self.settings)):
                records[i] = record
        return tasks, records, {"time/rollout_generate": seconds, "time/rollout_wait": waited,
                                "rollout_hidden_fraction": max(0.0, 1.0 - waited / seconds) if seconds else 0.0,
                                "stale_resampled": len(stale)}

    def _informative_groups(self, step: int, tasks: list, records: list[dict]) -> tuple[list, list[dict], list, dict]:
        """DAPO's dynamic sampling: keep the groups whose outcome varies; sample further rounds of B new
        tasks until B are kept or ``max_sampling_rounds`` is reached. Returns the kept tasks and records,
        every sampled record (for metrics) and the sampling counts."""
        g = self.cfg.grpo
        kept_tasks, kept, sampled = [], [], list(records)
        rounds = 1
        while True:
            for i, task in enumerate(tasks):
                group = records[i * g.group_size: (i + 1) * g.group_size]
                if len(kept_tasks) < g.prompts_per_step and informative(group, self.reward_weights,
                                                                        g.train_on_failed_episodes):
                    kept_tasks.append(task)
                    kept.extend(group)
            if len(kept_tasks) >= g.prompts_per_step or rounds >= g.max_sampling_rounds:
                break
            tasks = self._tasks(step, rounds)
            records = self.pool.run(tasks, g.group_size, step, sampling_round=rounds, settings=self.settings)
            sampled.extend(records)
            rounds += 1
        groups = len(sampled) // g.group_size
        return kept_tasks, kept, sampled, {"sampling_rounds": rounds, "groups_sampled": groups,
                                           "groups_kept": len(kept_tasks), "groups_dropped": groups - len(kept_tasks)}

    def _train(self, batch: dict) -> dict:
        """``updates_per_step`` learner updates on slices of the batch (none when nothing is trainable)."""
        g, lc = self.cfg.grpo, self.cfg.learner
        results = []
        for part in minibatches(batch, g.updates_per_step, g.loss_aggregation, seed=g.seed + self.step_index):
            part["lr"] = warmup_lr(lc.lr, g.warmup_steps, self.updates)
            results.append(self.learners.train_step(_pad_to_ranks(part, lc.num_ranks), "grpo"))
            results[-1]["lr"] = part["lr"]
            self.updates += 1
        if not results:
            return {"updates": 0}
        merged = {k: (max if k.endswith("_max") else _mean)(r[k] for r in results) for k in results[0] if k != "tokens"}
        # the first update is on-policy (ratio 1 unless engine and learner disagree); later ones are not
        first = {f"{k}_first_update": results[0][k] for k in ("ratio_mean", "kl") if k in results[0]}
        return {**merged, **first, "tokens": sum(r["tokens"] for r in results), "updates": len(results)}

    def evaluate(self) -> dict:
        """Greedy episodes on ``grpo.eval_tasks`` held-out tasks, on the training fleet; the report goes to
        ``eval/v<version>`` in the run directory."""
        from toolmaster.evaluation.report import build_report, write_report

        g = self.cfg.grpo
        if self._prefetch is not None:  # async: the fleet finishes the next step's episodes first
            self._prefetch[1].exception()
        start = time.time()
        size = self.env.size(g.eval_split)
        tasks = self.env.tasks(g.eval_split, g.eval_tasks if size is None else min(g.eval_tasks, size))
        records = [r.to_dict() for r in self.pool.run_specs(
            [(f"eval-v{self.version}-{i}", task) for i, task in enumerate(tasks)], settings=self.eval_settings)]
        cfg = self.cfg.model_copy(deep=True)
        cfg.eval.split, cfg.eval.model = g.eval_split, f"{self.run.path}@v{self.version}"
        report = build_report(cfg, self.env, tasks, records, time.time() - start)
        write_report(report, records, self.run.path / "eval" / f"v{self.version}")
        metric = self.env.metric
        return {f"eval/{metric}": report[metric], "eval/finish_rate": report["finish_rate"],
                "eval/trial_calls": report["mean_trial_calls"], "eval/corrections": report["mean_corrections"],
                "eval/turns": report["mean_turns"], "eval/tasks": len(tasks), "time/eval": time.time() - start}

    def step(self) -> dict:
        g, step = self.cfg.grpo, self.step_index
        if g.eval_every and step == 0 and not self.run.read_metrics():  # the starting point, logged as step 0
            start = self.evaluate()
            self.run.log(0, {"version": self.version, **start})
            if g.keep_best and self._keep_if_best(start, str(Path(self.model_dir).resolve())):
                self.checkpoints.point("best", self.best["checkpoint"])
        t0 = time.time()
        tasks, records, rollout_info = self._rollouts(step)
        sampled = records
        if g.filter_groups:
            tasks, records, sampled, sampling_info = self._informative_groups(step, tasks, records)
            rollout_info.update(sampling_info)
        if g.async_rollouts and step + 1 < g.steps:  # the next step's episodes overlap this step's train and sync
            # (started only now: the pool serves one caller at a time, and refill rounds came first)
            self._prefetch = (step + 1, self._background.submit(self._timed_rollouts, step + 1))
        t1 = time.time()
        batch, info = build_batch(records, g, self.reward_weights)
        t2 = time.time()
        train = self._train(batch)
        t3 = time.time()
        reload_s = 0.0
        if train["updates"]:
            self.version += 1
            reload_s = self.pool.update_weights(self.learners.publish(self.version, self.cfg.rollout.weight_transport))
        t4 = time.time()
        metrics = {
            # training reward and success over every episode sampled this step (before filtering)
            "reward": _mean(r.rewards["total"] for r in sampled), "success": _mean(r.correct for r in sampled),
            **info, **{f"train/{k}": v for k, v in train.items()}, "version": self.version,
            "trial_calls": _mean(r.stats["trial_calls"] for r in sampled),
            "corrections": _mean(r.stats["corrections"] for r in sampled),
            "turns": _mean(r.stats["turns"] for r in sampled),
            "finish_rate": _mean(r.finish_reason == "answer" for r in sampled),
            "tokens_per_episode": _mean(len(r.token_ids) for r in sampled),
            # mean −log π of the sampled tokens: rises when the policy spreads out, falls when it sharpens
            "sampled_nll": (-sum(sum(r.logprobs) for r in sampled)
                            / max(1, sum(sum(r.loss_mask) for r in sampled))),
            "episodes": len(sampled), "task_ids": [t.id for t in tasks],
            "episode_ids": [r.episode_id for r in sampled],
            "trained_episode_ids": [r.episode_id for r in records],
            # rollout wall time; inside it, per-episode means of generation, tool calls and reward scoring
            "time/rollout": t1 - t0, "time/advantages": t2 - t1, "time/train": t3 - t2, "time/sync": t4 - t3,
            **{f"time/episode_{k}": _mean(r.timings[k] for r in sampled) for k in ("generate", "tools", "score")},
            "time/engine_reload": reload_s, "workers_replaced": self.pool.replaced, **rollout_info,
            # sampled tokens per second of rollout (async: of its generation, hidden or not); trained tokens per
            # second of the learner updates
            "throughput/generated_tokens_per_s": sum(sum(r.loss_mask) for r in sampled)
            / max(t1 - t0, rollout_info.get("time/rollout_generate", 0.0), 1e-9),
            "throughput/train_tokens_per_s": train.get("tokens", 0) / max(t3 - t2, 1e-9),
            "failed_episodes": sum(r.failed for r in sampled), "episode_retries": self.pool.episode_retries,
            **{f"failed/{kind}": n for kind, n in Counter(r.error["kind"] for r in sampled if r.failed).items()},
            "policy_versions": sorted({r.policy_version for r in sampled}),
            "rollout_workers": len(self.pool.workers), "scaling_events": self.pool.events[self._events_logged:],
            "staleness_max": max(self.version - 1 - r.policy_version for r in sampled),
        }
        if self.curriculum is not None:
            metrics.update(self.curriculum.update(metrics["success"]))
        self._events_logged = len(self.pool.events)
        self.step_index += 1
        if g.eval_every and (self.step_index % g.eval_every == 0 or self.step_index == g.steps):
            metrics.update(self.evaluate())
        self.run.log(self.step_index, metrics)
        if g.save_rollouts:
            self.run.save_rollouts(self.step_index, episode_credit(sampled, batch))
        every = g.checkpoint_every
        improved = g.keep_best and self._keep_if_best(metrics, f"step-{self.step_index:06d}")
        if (every and self.step_index % every == 0) or self.step_index == g.steps or improved:
            self.checkpoint()
        self.last_records = records
        return metrics

    def _keep_if_best(self, metrics: dict, checkpoint: str) -> bool:
        """Name ``checkpoint`` (a step checkpoint's name, or the start model's path) as the best when the
        evaluation in ``metrics`` is strictly better than the best so far (a tie keeps the model with fewer
        updates); the step's checkpoint is written after this, with the new best in it."""
        score = metrics.get(f"eval/{self.env.metric}")
        if score is None or (self.best is not None and score <= self.best["score"]):
            return False
        self.best = {"version": self.version, "step": self.step_index, "score": score,
                     "split": self.cfg.grpo.eval_split, "checkpoint": checkpoint}
        self.run.save_meta("best", self.best)
        return True

    def checkpoint(self) -> str:
        extra = {"version": self.version, "updates": self.updates, "best": self.best}
        if self.curriculum is not None:
            extra["curriculum"] = self.curriculum.state()
        path = self.checkpoints.save(self.step_index, self.learners.save, extra)
        if self.best:  # after the save: the link never names a checkpoint that is not complete
            self.checkpoints.point("best", self.best["checkpoint"])
        return path

    def close(self) -> None:
        if self._prefetch is not None:  # let an in-flight prefetch finish before its workers go away
            self._prefetch[1].exception()
        self._background.shutdown(wait=True)
        if self.fleet is not None:
            self.fleet.close()
        self.run.finish()


def start_grpo(cfg, model_dir: str, resume: bool = False, fleet: Fleet | None = None) -> GRPOTrainer:
    """Check everything that can be checked before any actor starts, then a trainer on ``fleet`` (reset to
    this run's start model and settings) or on a fleet of its own, which it closes."""
    check_runtime(cfg)
    start_from = (RunDir.checkpoint_of(cfg.run_dir) if resume else None) or model_dir
    check_model_dir(start_from, "--model")
    check_learner_plan(cfg, start_from)
    # a resumed run has its own moments; only a run that starts from --model takes that checkpoint's
    carry_optimizer = cfg.grpo.optimizer_state == "checkpoint" and start_from == model_dir
    if carry_optimizer:
        check_optimizer_source(model_dir, cfg.learner.num_ranks, cfg.learner.zero_stage)
    sandbox_layers = check_isolation(cfg.sandbox)
    env = make_env(cfg.env)  # its splits are checked before any actor starts
    if env.size("train") == 0:
        raise ConfigError(f"env.name = {cfg.env.name!r} has no training tasks (toolhop: set "
                          "env.toolhop.test_fraction below 1)")
    if cfg.grpo.eval_every:
        env.require_split(cfg.grpo.eval_split, "grpo.eval_split")
        if cfg.grpo.eval_split == "train":
            raise ConfigError("grpo.eval_split = 'train': the held-out evaluation would score the items GRPO trains "
                              "on; choose a held-out split")
    init_ray()
    if fleet is None:  # what the fleet asks of the cluster, before the run directory and any actor
        check_cluster_resources(cfg)
    run = RunDir(cfg, "grpo")
    run.save_meta("sandbox_layers", sandbox_layers)
    state = run.load_state() if resume else None
    start_model, version = (state["checkpoint"], state["version"]) if state else (model_dir, 0)
    own = fleet is None
    if own:
        fleet = build_fleet(cfg, start_model, version)
    else:
        fleet.reset(start_model, cfg, version)
    if (state and has_engine_state(start_model)) or carry_optimizer:
        fleet.learners.load(start_model)  # optimizer moments, step counters, RNG: the run continues exactly
    trainer = GRPOTrainer(cfg, env, fleet.pool, fleet.learners, run, start_model, state)
    trainer.fleet = fleet if own else None
    return trainer


def train_grpo(cfg, model_dir: str, resume: bool = False, fleet: Fleet | None = None) -> dict:
    trainer = start_grpo(cfg, model_dir, resume, fleet)
    history = []
    try:
        with console.progress("GRPO steps", cfg.grpo.steps) as advance:
            advance(trainer.step_index)
            while trainer.step_index < cfg.grpo.steps:
                history.append(trainer.step())
                console.step(trainer.step_index, cfg.grpo.steps, history[-1])
                advance(trainer.step_index)
        trainer.run.plot(("reward", "success", f"eval/{trainer.env.metric}"))
    finally:
        trainer.close()
    best = trainer.best
    if best:
        print(f"best held-out {trainer.env.metric} on '{best['split']}': {best['score']:.3f} at step {best['step']} "
              f"(version {best['version']}): {trainer.run.path / 'checkpoints' / 'best'} -> {best['checkpoint']}")
    return {"run_dir": str(trainer.run.path), "history": history, "version": trainer.version, "best": best}
