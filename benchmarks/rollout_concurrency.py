"""How many episodes should one rollout worker run at once? One fleet runs the same GRPO-shaped round
(``--tasks`` tasks × ``--group`` sampled episodes, the same episode ids, so the same per-turn seeds) under
each ``rollout.max_episodes_per_worker`` cap, alternating caps over ``--repeats`` passes, and prints episodes
per second, the ratio to the first cap, and whether every cap sampled exactly the same episodes.

    .venv/bin/python benchmarks/rollout_concurrency.py --model runs/quickstart/sft/checkpoints/latest \
        [--caps 32,64] [--tasks 8] [--group 8] [--repeats 2] [key=value ...]
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--caps", default="32,64")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import ray

    from toolmaster.config import load_config
    from toolmaster.envs import make_env
    from toolmaster.ray_utils import init_ray
    from toolmaster.rollout.pool import RolloutPool

    caps = [int(c) for c in args.caps.split(",")]
    cfg = load_config(args.config, args.overrides)
    cfg.rollout.max_episodes_per_worker = max(caps)
    tasks = make_env(cfg.env).tasks("train", args.tasks, start=10**6)  # far from any run's training positions
    init_ray()
    pool = RolloutPool(cfg, args.model)
    seconds = {c: [] for c in caps}
    sampled: dict[int, list] = {}
    try:
        refs = [ray.put(t) for t in tasks]
        specs = [(f"t{i}-g{g}", refs[i]) for i in range(len(tasks)) for g in range(args.group)]
        pool.run_specs(specs[: len(tasks)])  # warm-up: the engine's first batches compile and allocate
        for _ in range(args.repeats):
            for cap in caps:
                pool.cfg.rollout.max_episodes_per_worker = cap  # the pool reads its cap on every dispatch
                start = time.perf_counter()
                records = pool.run_specs(specs)
                seconds[cap].append(time.perf_counter() - start)
                sampled[cap] = [r.token_ids for r in records]
    finally:
        pool.shutdown()
        ray.shutdown()

    n = len(specs)
    base = min(seconds[caps[0]])
    print(f"{args.model}: {args.tasks} tasks x {args.group} sampled episodes per round, best of {args.repeats}")
    print(f"{'cap':>5}{'episodes/s':>14}{'speed vs cap ' + str(caps[0]):>22}{'same episodes':>16}")
    for cap in caps:
        same = sampled[cap] == sampled[caps[0]]
        print(f"{cap:>5}{n / min(seconds[cap]):>14.2f}{base / min(seconds[cap]):>22.2f}{str(same):>16}")


if __name__ == "__main__":
    main()
