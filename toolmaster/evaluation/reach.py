"""Which greedy failures can GRPO reach? GRPO learns only from groups whose outcomes vary, so a task the
policy fails greedily is fixable by outcome-reward RL only if the training sampler sometimes solves it.
Measured on toolworld (docs/grpo.md): GRPO fixed 12 of 18 reachable held-out failures of a 200-step SFT
model and 1 of 24 unreachable ones. ``toolmaster eval --policy model --reach N`` measures it for a model.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

from toolmaster.evaluation.report import group_key


def sample_failures(pool, tasks: list, records: list[dict], samples: int, generation: dict) -> dict:
    """Run each greedily failed task ``samples`` times with ``generation`` (the training sampler) on ``pool``.

    Returns the failures, how many the sampler solved at least once (reachable), the sampled success on
    them, and the same per task group; ``records`` are the greedy records, in ``tasks`` order."""
    failed = [i for i, r in enumerate(records) if not r["correct"]]
    specs = [(f"reach-t{i}-g{g}", tasks[i]) for i in failed for g in range(samples)]
    sampled = pool.run_specs(specs, generation=generation) if specs else []
    wins = {i: sum(r.correct for r in sampled[j * samples:(j + 1) * samples]) for j, i in enumerate(failed)}
    groups: dict[str, dict] = defaultdict(lambda: {"tasks": 0, "greedy_correct": 0, "failures": 0, "reachable": 0,
                                                  "sampled_wins": 0})
    by = group_key(tasks)  # the reports' breakdown key
    for i, task in enumerate(tasks):
        for key in ([str(task.metadata[by])] if by else []) + ["all"]:
            g = groups[key]
            g["tasks"] += 1
            g["greedy_correct"] += int(records[i]["correct"])
            if i in wins:
                g["failures"] += 1
                g["reachable"] += int(wins[i] > 0)
                g["sampled_wins"] += wins[i]
    for g in groups.values():
        wins_in_group = g.pop("sampled_wins")
        g["sampled_success"] = round(wins_in_group / (g["failures"] * samples), 3) if g["failures"] else None
    overall = groups.pop("all")
    return {**overall, "samples": samples, "by_group": dict(sorted(groups.items())),
            "reachable_task_ids": [tasks[i].id for i, w in wins.items() if w > 0]}


def evaluate_with_reach(cfg, out_dir: str | Path, samples: int,
                        progress: Callable[[int, int], None] | None = None) -> dict:
    """``toolmaster eval --reach N``: the greedy evaluation of ``cfg.eval.model``, then each failure sampled
    ``samples`` times with the training sampler (``rollout.generation``, one GRPO group) on the same fleet;
    the report (and ``out_dir``/report.json) gets ``reach``."""
    from toolmaster.config import ConfigError, check_runtime
    from toolmaster.plan import check_model_dir

    if cfg.eval.policy != "model":
        raise ConfigError(f"--reach samples a model's failures: use --policy model --model DIR, not eval.policy = "
                          f"{cfg.eval.policy!r}")
    check_model_dir(cfg.eval.model, "--model")
    check_runtime(cfg)  # bad settings fail before the fleet starts, as in a plain evaluation

    from toolmaster.envs import make_env
    from toolmaster.evaluation.runner import eval_tasks, evaluate, fleet_config
    from toolmaster.ray_utils import init_ray
    from toolmaster.rollout.pool import RolloutPool
    from toolmaster.toolserver.process import tool_server_for

    # one tool server for the fleet and for the evaluation inside it (which then starts none of its own)
    with tool_server_for(cfg) as cfg:
        env = make_env(cfg.env)
        env.require_split(cfg.eval.split, "eval.split")
        tasks = eval_tasks(cfg, env)
        init_ray()
        pool = RolloutPool(fleet_config(cfg), cfg.eval.model)
        try:
            report = evaluate(cfg, out_dir, progress=progress, pool=pool)
            report["reach"] = sample_failures(pool, tasks, report["items"], samples,
                                              cfg.rollout.generation.model_dump())
        finally:
            pool.shutdown()
    (Path(out_dir) / "report.json").write_text(json.dumps(report, indent=2))
    return report


def reach_lines(reach: dict) -> list[str]:
    """The reach table: per task group and overall, greedy success, failures, how many of them the sampler
    solved at least once (reachable) and the sampled success on them."""
    lines = [f"{'group':<24}{'tasks':>7}{'greedy':>8}{'failures':>10}{'reachable':>11}{'sampled success':>17}"]
    for name, g in [*reach["by_group"].items(), ("all", reach)]:
        rate = "-" if g["sampled_success"] is None else f"{g['sampled_success']:.3f}"
        lines.append(f"{name:<24}{g['tasks']:>7}{g['greedy_correct'] / max(g['tasks'], 1):>8.3f}{g['failures']:>10}"
                     f"{g['reachable']:>11}{rate:>17}")
    return lines
