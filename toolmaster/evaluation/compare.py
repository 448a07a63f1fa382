"""Two models on the same held-out tasks: is the difference more than the sample of tasks?

A difference in success between two evaluations of 50–200 tasks moves by several points with the tasks
drawn (measured here: one GRPO model scored −0.015 against its SFT start on 200 test tasks and +0.020 on
100 val tasks). The comparison is paired, task by task: how many tasks each model solves that the other
does not, an exact two-sided sign test on those, and a bootstrap interval over tasks for the difference.
``toolmaster eval compare BEFORE AFTER`` prints it for two finished evaluations.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path


def _scores(report: dict) -> dict[str, float]:
    """Per task: its grade (an episode that raised scores 0, as in the report's own metric)."""
    return {item["task_id"]: 0.0 if item.get("error") else float(item.get("grade") or 0.0) for item in report["items"]}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact p-value that wins and losses are equally likely (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference(before: dict, after: dict, resamples: int = 10_000, seed: int = 0) -> dict:
    """``after`` − ``before`` on the tasks both reports hold: mean difference, its 95% bootstrap interval
    over tasks, the tasks only ``after`` solves (fixed) and only ``before`` solves (broken), and the sign
    test's p-value."""
    a, b = _scores(before), _scores(after)
    tasks = [t for t in a if t in b]
    if not tasks:
        raise ValueError("the two reports share no task: compare evaluations of the same held-out tasks")
    diffs = [b[t] - a[t] for t in tasks]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    fixed, broken = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"tasks": n, "difference": round(sum(diffs) / n, 4),
            "ci95": [round(means[int(0.025 * resamples)], 4), round(means[int(0.975 * resamples) - 1], 4)],
            "fixed": fixed, "broken": broken, "p_value": round(sign_test(fixed, broken), 4)}


def describe(comparison: dict) -> str:
    c = comparison
    return (f"{c['difference']:+.3f} (95% CI {c['ci95'][0]:+.3f} to {c['ci95'][1]:+.3f} over {c['tasks']} tasks; "
            f"fixed {c['fixed']}, broken {c['broken']}, sign test p = {c['p_value']:.2f})")


def _is_item(item) -> bool:
    return isinstance(item, dict) and "task_id" in item and isinstance(item.get("grade"), (int, float, type(None)))


def load_report(path: str) -> dict:
    """An evaluation's ``report.json``, given the file or the evaluation's ``--out`` folder; ValueError with
    one line saying what is wrong otherwise."""
    p = Path(path)
    p = p / "report.json" if p.is_dir() else p
    if not p.is_file():
        raise ValueError(f"{path}: no report.json (give an evaluation's --out folder or its report.json)")
    try:
        report = json.loads(p.read_text())
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"{p}: not a readable JSON report ({err})") from None
    items = report.get("items") if isinstance(report, dict) else None
    if (not isinstance(items, list) or not all(map(_is_item, items))
            or not isinstance(report.get("breakdown", {}), dict)):
        raise ValueError(f"{p}: not an evaluation report (no per-task 'items'; `toolmaster eval --out DIR` writes one)")
    return report


def _value(value) -> str:
    return "not computed" if value is None else f"{value:.3f}"


def comparison_lines(before: dict, after: dict) -> list[str]:
    """What ``toolmaster eval compare`` prints: the metric before -> after, the paired line, and the metric per
    task group the two reports share. ValueError when they share no task."""
    comparison = paired_difference(before, after)
    metric = before.get("metric", "success")
    lines = [f"{metric}: {_value(before.get(metric))} -> {_value(after.get(metric))}",
             f"after - before, paired: {describe(comparison)}"]
    groups = [g for g in before.get("breakdown", {}) if g in after.get("breakdown", {})]
    lines += [f"  {g}: {_value(before['breakdown'][g])} -> {_value(after['breakdown'][g])}" for g in groups]
    return lines
