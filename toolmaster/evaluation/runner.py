"""``toolmaster eval``: episodes of a policy on a split → a report with the environment's own metric.

A model is evaluated on the rollout fleet (the same workers, engines and tool-environment actors that
GRPO uses, with the eval generation settings); the reference policies (oracle, empty) need no engine
and run in-process.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from toolmaster.envs import make_env


def eval_tasks(cfg, env):
    num = cfg.eval.num_tasks
    if num is None and cfg.env.name == "toolworld":
        num = cfg.env.toolworld.eval_tasks
    return env.tasks(cfg.eval.split, num)


def fleet_config(cfg):
    """The run's config with rollout sampling replaced by the eval generation settings."""
    from toolmaster.config import SamplingConfig

    out = cfg.model_copy(deep=True)
    out.rollout.generation = SamplingConfig(**cfg.eval.generation.model_dump())
    return out


def run_on_fleet(cfg, tasks: list, pool=None, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Records of one greedy episode per task on rollout workers; starts (and stops) a pool if none is given."""
    from toolmaster.ray_utils import init_ray
    from toolmaster.rollout.pool import RolloutPool

    own = pool is None
    if own:  # evaluate() checked eval.model before anything started
        init_ray()
        pool = RolloutPool(fleet_config(cfg), cfg.eval.model)
    try:
        import ray
        refs = [ray.put(t) for t in tasks]
        from toolmaster.rollout.settings import EpisodeSettings

        records = pool.run_specs([(f"eval-{i}", ref) for i, ref in enumerate(refs)],
                                 on_record and (lambda record: on_record(record.to_dict())),
                                 settings=EpisodeSettings.of(fleet_config(cfg)))
        return [r.to_dict() for r in records]  # a report's items are JSON documents
    finally:
        if own:
            pool.shutdown()


def run_in_process(cfg, tasks: list, env, policy, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    from toolmaster.agent.loop import run_episodes
    from toolmaster.tools.base import ToolRunner

    runner = ToolRunner.from_config(cfg.sandbox)
    try:
        episodes = run_episodes(policy, tasks, env, runner, max_turns=cfg.env.max_turns, trial=cfg.synth.trial,
                                reward_weights=cfg.rewards, episode_ids=[f"eval-{i}" for i in range(len(tasks))],
                                system_prompt=cfg.env.system_prompt,
                                on_episode=(lambda ep: on_record(ep.to_record())) if on_record else None)
    finally:
        runner.close()
    return [{**ep.to_record(), "messages": ep.messages} for ep in episodes]


def evaluate(cfg, out_dir: str | Path, policy=None, progress: Callable[[int, int], None] | None = None,
             pool=None) -> dict:
    """Run ``cfg.eval`` and write ``out_dir``/report.json, report.md, report.png and episodes.jsonl.

    ``policy`` (an in-process policy object) overrides the configured one; ``pool`` reuses a running rollout
    pool for the model policy; ``progress`` gets (finished episodes, total). A benchmark whose tools live on
    the tool server gets one started here when ``env.tool_server.url`` is not set.
    """
    from toolmaster.agent.policies import make_policy
    from toolmaster.config import ENDPOINT_ENVS, ConfigError, check_runtime
    from toolmaster.evaluation.report import build_report, write_report
    from toolmaster.tools.sandbox import check_isolation
    from toolmaster.toolserver.process import tool_server_for

    if cfg.env.name in ENDPOINT_ENVS and policy is None and cfg.eval.policy != "model":
        raise ConfigError(f"env {cfg.env.name} runs outside agent code against a model's endpoint: use --policy "
                          "model --model DIR")
    if policy is None and cfg.eval.policy == "model" and pool is None:
        from toolmaster.plan import check_model_dir

        check_model_dir(cfg.eval.model, "--model (eval.model)")
    check_runtime(cfg)
    sandbox_layers = check_isolation(cfg.sandbox)
    start = time.time()
    with tool_server_for(cfg) as cfg:
        env = make_env(cfg.env)
        env.require_split(cfg.eval.split, "eval.split")
        tasks = eval_tasks(cfg, env)
        finished = []

        def on_record(record: dict) -> None:
            finished.append(record["episode_id"])
            if progress:
                progress(len(finished), len(tasks))

        if policy is None and cfg.eval.policy == "model":
            records = run_on_fleet(cfg, tasks, pool, on_record)
        else:
            policy = policy or make_policy(cfg.eval.policy)
            records = run_in_process(cfg, tasks, env, policy, on_record)
    report = build_report(cfg, env, tasks, records, time.time() - start)
    report["sandbox_layers"] = sandbox_layers
    write_report(report, records, out_dir)
    return report
