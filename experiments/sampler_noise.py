"""What does GRPO's training sampler contrast? GRPO learns from the difference between the episodes of a
group that succeed and those that fail. If most sampled failures contain a token the policy itself gives a
low probability (a mis-copied id, a broken tag), the contrast is "a tail token was sampled", which the
greedy policy never does: pushing it down sharpens the sampler and leaves greedy success where it was, while
the failure's large negative advantage lands on every other token of it too.

    .venv/bin/python experiments/sampler_noise.py --model runs/sft/checkpoints/latest \
        [--tasks 48] [--samples 8] [--split train] [--samplers t1,t0.7] [key=value ...]

Runs each task once greedily, then ``--samples`` times (one GRPO group) with each sampler (``t1``:
temperature 1; ``tX``: temperature X; min_p, measured here once, left the schema) on one rollout fleet, and prints
per sampler: success, finish rate, informative groups (outcome varies), how many successes and failures
contain a sampled token of probability < 0.1 under the policy, and the success of the episodes without one.
"""
import argparse
import math
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TAIL = math.log(0.1)


def sampler(name: str, max_new_tokens: int) -> dict:
    if name == "greedy":
        return {"max_new_tokens": max_new_tokens, "temperature": 0.0}
    if name.startswith("t"):
        return {"max_new_tokens": max_new_tokens, "temperature": float(name[1:])}
    raise SystemExit(f"unknown sampler {name!r} (greedy, t1, t0.7, ...)")


def tail_tokens(record: dict) -> int:
    return sum(lp < TAIL for lp, m in zip(record["logprobs"], record["loss_mask"]) if m)


def summarize(records: list[dict], samples: int) -> dict:
    wins = [sum(r["correct"] for r in records[i:i + samples]) for i in range(0, len(records), samples)]
    ok = [r for r in records if r["correct"]]
    bad = [r for r in records if not r["correct"]]
    clean = [r for r in records if not tail_tokens(r)]
    return {"success": len(ok) / len(records),
            "finish_rate": sum(r["finish_reason"] == "answer" for r in records) / len(records),
            "informative_groups": sum(0 < w < samples for w in wins), "groups": len(wins),
            "successes_with_tail": (sum(bool(tail_tokens(r)) for r in ok), len(ok)),
            "failures_with_tail": (sum(bool(tail_tokens(r)) for r in bad), len(bad)),
            "clean_success": (sum(r["correct"] for r in clean), len(clean))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--tasks", type=int, default=48)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--split", default="train")
    ap.add_argument("--samplers", default="t1,t0.7")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import ray

    from toolmaster.config import load_config
    from toolmaster.envs import make_env
    from toolmaster.ray_utils import init_ray
    from toolmaster.rollout.pool import RolloutPool

    cfg = load_config(args.config, args.overrides)
    # training tasks far past any GRPO run's data positions, so that they are new to every checkpoint
    start = 10**6 if args.split == "train" else 0
    tasks = make_env(cfg.env).tasks(args.split, args.tasks, start=start)
    max_new = cfg.rollout.generation.max_new_tokens
    init_ray()
    pool = RolloutPool(cfg, args.model)
    rows = {}
    try:
        refs = [ray.put(t) for t in tasks]
        for name in ["greedy", *args.samplers.split(",")]:
            n = 1 if name == "greedy" else args.samples
            specs = [(f"{name}-t{i}-g{g}", refs[i]) for i in range(len(tasks)) for g in range(n)]
            rows[name] = summarize([r.to_dict() for r in pool.run_specs(specs, generation=sampler(name, max_new))], n)
    finally:
        pool.shutdown()
        ray.shutdown()

    print(f"{args.model}: {args.tasks} '{args.split}' tasks, {args.samples} samples per task and sampler; "
          f"tail token: sampled with probability < 0.1 under the policy")
    head = ("sampler", "success", "finish", "informative", "successes w/ tail", "failures w/ tail",
            "success w/o tail")
    print(f"{head[0]:<10}" + "".join(f"{h:>19}" for h in head[1:]))
    for name, r in rows.items():
        cells = [f"{r['success']:.3f}", f"{r['finish_rate']:.3f}", f"{r['informative_groups']}/{r['groups']}",
                 "{}/{}".format(*r["successes_with_tail"]), "{}/{}".format(*r["failures_with_tail"]),
                 "{}/{}".format(*r["clean_success"])]
        print(f"{name:<10}" + "".join(f"{c:>19}" for c in cells))


if __name__ == "__main__":
    main()
