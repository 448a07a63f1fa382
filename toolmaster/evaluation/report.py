"""An evaluation's report: report.json (every figure and item), report.md (the tables) and report.png."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

_GROUP_KEYS = ("group", "hop_count", "kind")  # the first one tasks carry breaks the score down
_NOT_COMPUTED = {"sopr": "SoPR not computed: no judge configured (set env.judge.base_url); see finish_rate"}


def _rate(records, key) -> float:
    return sum(r["stats"].get(key, 0) for r in records) / max(len(records), 1)


def build_report(cfg, env, tasks: list, records: list[dict], seconds: float) -> dict:
    grades = [0.0 if r.get("error") else r["grade"] for r in records]  # an episode that raised scores 0
    graded = bool(records) and all(g is not None for g in grades)
    report = {
        "env": cfg.env.name, "split": cfg.eval.split, "policy": cfg.eval.policy, "model": cfg.eval.model,
        "metric": env.metric, env.metric: env.metric_value(grades) if graded else None,
        "num_items": len(records), "num_correct": sum(r["correct"] for r in records),
        "finish_rate": sum(r["finish_reason"] == "answer" for r in records) / max(len(records), 1),
        "mean_trial_calls": _rate(records, "trial_calls"), "mean_corrections": _rate(records, "corrections"),
        "mean_turns": _rate(records, "turns"), "seconds": round(seconds, 2),
        "failed_episodes": dict(Counter(r["error"]["kind"] for r in records if r.get("error"))),
    }
    if not graded and records:
        report["note"] = _NOT_COMPUTED.get(env.metric, f"{env.metric} not computed")
    for name in sorted({k for r in records for k in r.get("judgments", {})}):  # e.g. TMDB's judged success
        values = [r["judgments"].get(name, 0.0) for r in records]
        if all(0.0 <= v <= 1.0 for v in values):  # a judged score: reported as a percentage
            report[f"{name}_rate"] = 100.0 * sum(values) / len(records)
        else:  # any other metric an outside agent returned (token counts, lengths): its mean
            report[f"mean_{name}"] = sum(values) / len(records)
    report["breakdown"] = _breakdown(env, tasks, records) if graded else {}
    report.update(env.report_figures(tasks, records) if records else {})
    report["items"] = [{k: v for k, v in r.items() if k not in ("messages", "token_ids", "loss_mask", "logprobs")}
                       for r in records]
    return report


def group_key(tasks: list) -> str | None:
    """The metadata key that breaks these tasks' scores down (toolworld: hops/the first tool's rule)."""
    return next((k for k in _GROUP_KEYS if tasks and tasks[0].metadata.get(k) is not None), None)


def _breakdown(env, tasks, records) -> dict:
    key = group_key(tasks)
    if key is None:
        return {}
    groups = defaultdict(list)
    for task, record in zip(tasks, records):
        groups[f"{key}={task.metadata.get(key)}"].append(0.0 if record.get("error") else record["grade"])
    return {name: env.metric_value(g) for name, g in sorted(groups.items())}


def write_report(report: dict, records: list[dict], out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with open(out / "episodes.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps({"episode_id": r["episode_id"], "messages": r["messages"]}) + "\n")
    (out / "report.md").write_text(_markdown(report))
    _plot(report, out / "report.png")


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _markdown(report: dict) -> str:
    metric = report["metric"]
    lines = [f"# {report['env']} evaluation ({report['split']}, policy {report['policy']})", "",
             f"model: `{report['model']}`", "", "| figure | value |", "|---|---|"]
    extra = [k for k in report if k.endswith("_rate") and k not in (metric, "finish_rate")]
    for key in (metric, *extra, "num_items", "num_correct", "finish_rate", "mean_trial_calls", "mean_corrections",
                "mean_turns", "seconds"):
        lines.append(f"| {key} | {_fmt(report[key]) if report[key] is not None else 'not computed'} |")
    if "sopr_std" in report:
        lines.insert(lines.index("|---|---|") + 2, f"| sopr_std (over judge rounds) | {_fmt(report['sopr_std'])} |")
    if "judge" in report:
        judge = report["judge"]
        lines += ["", f"Judge: `{judge['model']}`, {judge['samples']} sample(s) per answer; {judge['procedure']}"]
    if "sowr" in report:
        detail = report["sowr_detail"]
        lines += ["", f"SoWR against `{detail['reference_answers']}` ({detail['rounds']} rounds per query)", "",
                  "| group | win rate | tie rate | lose rate |", "|---|---|---|---|"]
        lines += [f"| {g} | {_fmt(r['sowr'])} | {_fmt(r['tie_rate'])} | {_fmt(r['lose_rate'])} |"
                  for g, r in detail["groups"].items()]
        lines.append(f"| all | {_fmt(report['sowr'])} | {_fmt(report['sowr_tie_rate'])} | |")
    if "note" in report:
        lines += ["", f"Note: {report['note']}"]
    if report["breakdown"]:
        lines += ["", f"| group | {metric} |", "|---|---|"]
        lines += [f"| {g} | {_fmt(v)} |" for g, v in report["breakdown"].items()]
    reasons = Counter(i["finish_reason"] for i in report["items"])
    lines += ["", "| finish reason | episodes |", "|---|---|"] + [f"| {k} | {v} |" for k, v in reasons.most_common()]
    return "\n".join(lines) + "\n"


def _plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    scores = report["breakdown"] or ({"all": report[report["metric"]]} if report[report["metric"]] is not None else {})
    left.bar(list(scores), list(scores.values()), color="tab:blue")
    left.set_title(f"{report['metric']}" + ("" if scores else " (not computed)"))
    left.tick_params(axis="x", labelrotation=30)
    reasons = Counter(i["finish_reason"] for i in report["items"])
    right.bar(list(reasons), list(reasons.values()), color="tab:gray")
    right.set_title("finish reasons")
    fig.suptitle(f"{report['env']} — {report['num_items']} items")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
