"""Which held-out failures can GRPO reach? GRPO learns only from groups whose outcomes vary, so a task the
policy fails greedily is fixable by outcome-reward RL only if the training sampler sometimes solves it.

    .venv/bin/python benchmarks/rl_reach.py --model runs/sft/checkpoints/latest [--tasks 200] [--samples 8] \
        [--split test] [key=value ...]

One rollout fleet runs every task once greedily (the eval generation settings) and the greedy failures
``--samples`` times with the training sampler (``rollout.generation``, one GRPO group each). Prints, per task
kind (toolworld: hops/the first tool's hidden rule) and overall: greedy success, the greedy failures, how many of them
the sampler solves at least once (reachable: a group with a success), and the sampled success on them.
"""
import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def kind_of(task) -> str:
    """The task's group (toolworld: hops/the first tool's rule), as evaluation reports break scores down."""
    return str(task.metadata.get("group") or task.metadata.get("hop_count") or "all")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--samples", type=int, default=8, help="sampled episodes per greedy failure (a GRPO group)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", help="write the per-task figures here as JSON")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import ray

    from toolmaster.config import load_config
    from toolmaster.envs import make_env
    from toolmaster.ray_utils import init_ray
    from toolmaster.rollout.pool import RolloutPool

    cfg = load_config(args.config, args.overrides)
    env = make_env(cfg.env)
    tasks = env.tasks(args.split, args.tasks)
    init_ray()
    pool = RolloutPool(cfg, args.model)
    try:
        refs = [ray.put(t) for t in tasks]
        greedy = pool.run_specs([(f"greedy-{i}", ref) for i, ref in enumerate(refs)],
                                generation=cfg.eval.generation.model_dump())
        failed = [i for i, r in enumerate(greedy) if not r["correct"]]
        sampled = pool.run([tasks[i] for i in failed], args.samples, 0) if failed else []
    finally:
        pool.shutdown()
        ray.shutdown()

    wins = {i: sum(r["correct"] for r in sampled[j * args.samples:(j + 1) * args.samples])
            for j, i in enumerate(failed)}
    rows = defaultdict(lambda: {"tasks": 0, "greedy_correct": 0, "failed": 0, "reachable": 0, "sampled_wins": 0})
    for i, task in enumerate(tasks):
        for key in (kind_of(task), "all"):
            row = rows[key]
            row["tasks"] += 1
            row["greedy_correct"] += int(greedy[i]["correct"])
            if i in wins:
                row["failed"] += 1
                row["reachable"] += int(wins[i] > 0)
                row["sampled_wins"] += wins[i]
    print(f"{args.model}: {args.tasks} '{args.split}' tasks, {args.samples} samples per greedy failure "
          f"(temperature {cfg.rollout.generation.temperature})")
    print(f"{'kind':<30}{'tasks':>7}{'greedy':>8}{'failed':>8}{'reachable':>11}{'sampled success':>17}")
    for key in sorted(rows, key=lambda k: (k == "all", k)):
        r = rows[key]
        rate = r["sampled_wins"] / (r["failed"] * args.samples) if r["failed"] else 0.0
        print(f"{key:<30}{r['tasks']:>7}{r['greedy_correct'] / r['tasks']:>8.3f}{r['failed']:>8}"
              f"{r['reachable']:>11}{rate:>17.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "wins": {tasks[i].id: w for i, w in wins.items()}}, indent=2))


if __name__ == "__main__":
    main()
