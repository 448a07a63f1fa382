"""``toolmaster eval``: episodes of a policy on a split → report.json with the environment's metric."""
from __future__ import annotations

import json
import time
from pathlib import Path

from toolmaster.agent.loop import run_episodes
from toolmaster.agent.policies import make_policy
from toolmaster.envs import make_env
from toolmaster.tools.base import ToolRunner


def _rate(episodes, key) -> float:
    return sum(e.stats.get(key, 0) for e in episodes) / max(len(episodes), 1)


def evaluate(cfg, out_dir: str | Path, policy=None, progress=None) -> dict:
    """Run ``cfg.eval`` and write ``out_dir/report.json``; ``policy`` overrides the configured one."""
    start = time.time()
    env = make_env(cfg.env)
    num = cfg.eval.num_tasks
    if num is None and cfg.env.name == "toolworld":
        num = cfg.env.toolworld.eval_tasks
    tasks = env.tasks(cfg.eval.split, num)
    if policy is None:
        policy = make_policy(cfg.eval.policy, cfg.eval.model, cfg.eval.generation)
    runner = ToolRunner.from_config(cfg.sandbox)
    try:
        episodes = run_episodes(policy, tasks, env, runner, max_turns=cfg.env.max_turns, trial=cfg.synth.trial,
                                reward_weights=cfg.rewards, on_turn=progress)
    finally:
        runner.close()
    correct = [e.correct for e in episodes]
    report = {
        "env": cfg.env.name, "split": cfg.eval.split, "policy": cfg.eval.policy, "model": cfg.eval.model,
        "metric": env.metric, env.metric: env.metric_value(correct), "num_items": len(episodes),
        "num_correct": sum(correct),
        "finish_rate": sum(e.finish_reason == "answer" for e in episodes) / max(len(episodes), 1),
        "mean_trial_calls": _rate(episodes, "trial_calls"), "mean_corrections": _rate(episodes, "corrections"),
        "mean_turns": _rate(episodes, "turns"), "seconds": round(time.time() - start, 2),
        "items": [e.to_record() for e in episodes],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with open(out / "episodes.jsonl", "w") as f:
        for e in episodes:
            f.write(json.dumps({"episode_id": e.episode_id, "messages": e.messages}) + "\n")
    return report
