"""Which held-out failures can GRPO reach? GRPO learns only from groups whose outcomes vary, so a task the
policy fails greedily is fixable by outcome-reward RL only if the training sampler sometimes solves it.

    .venv/bin/python benchmarks/rl_reach.py --model runs/sft/checkpoints/latest [--tasks 200] [--samples 8] \
        [--split test] [--out reach.json] [key=value ...]

One rollout fleet runs every task once greedily (the eval generation settings) and each greedy failure
``--samples`` times with the training sampler (``rollout.generation``: one GRPO group). Prints, per task
group (toolworld: hops/the first tool's hidden rule) and overall: greedy success, failures, how many of them
the sampler solves at least once (reachable) and the sampled success on them.
"""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--samples", type=int, default=8, help="sampled episodes per greedy failure (a GRPO group)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", help="write the figures here as JSON")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import ray

    from toolmaster.config import load_config
    from toolmaster.envs import make_env
    from toolmaster.evaluation.reach import sample_failures
    from toolmaster.ray_utils import init_ray
    from toolmaster.rollout.pool import RolloutPool

    cfg = load_config(args.config, args.overrides)
    tasks = make_env(cfg.env).tasks(args.split, args.tasks)
    init_ray()
    pool = RolloutPool(cfg, args.model)
    try:
        refs = [ray.put(t) for t in tasks]
        greedy = pool.run_specs([(f"greedy-{i}", ref) for i, ref in enumerate(refs)],
                                generation=cfg.eval.generation.model_dump())
        reach = sample_failures(pool, tasks, greedy, args.samples, cfg.rollout.generation.model_dump())
    finally:
        pool.shutdown()
        ray.shutdown()

    print(f"{args.model}: {args.tasks} '{args.split}' tasks, {args.samples} samples per greedy failure "
          f"(temperature {cfg.rollout.generation.temperature})")
    print(f"{'group':<24}{'tasks':>7}{'greedy':>8}{'failures':>10}{'reachable':>11}{'sampled success':>17}")
    for name, g in [*reach["by_group"].items(), ("all", reach)]:
        rate = "-" if g["sampled_success"] is None else f"{g['sampled_success']:.3f}"
        print(f"{name:<24}{g['tasks']:>7}{g['greedy_correct'] / g['tasks']:>8.3f}{g['failures']:>10}"
              f"{g['reachable']:>11}{rate:>17}")
    if args.out:
        Path(args.out).write_text(json.dumps(reach, indent=2))


if __name__ == "__main__":
    main()
