"""Which greedy failures can GRPO reach? GRPO learns only from groups whose outcomes vary, so a task the
policy fails greedily is fixable by outcome-reward RL only if the training sampler sometimes solves it.
Measured on toolworld (README, "What limits the gain"): GRPO fixed 12 of 18 reachable held-out failures of
a 200-step SFT model and 1 of 24 unreachable ones.
"""
from __future__ import annotations

from collections import defaultdict

from toolmaster.evaluation.report import group_key


def sample_failures(pool, tasks: list, records: list[dict], samples: int, generation: dict) -> dict:
    """Run each greedily failed task ``samples`` times with ``generation`` (the training sampler) on ``pool``.

    Returns the failures, how many the sampler solved at least once (reachable), the sampled success on
    them, and the same per task group; ``records`` are the greedy records, in ``tasks`` order."""
    failed = [i for i, r in enumerate(records) if not r["correct"]]
    specs = [(f"reach-t{i}-g{g}", tasks[i]) for i in failed for g in range(samples)]
    sampled = pool.run_specs(specs, generation=generation) if specs else []
    wins = {i: sum(r["correct"] for r in sampled[j * samples:(j + 1) * samples]) for j, i in enumerate(failed)}
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
