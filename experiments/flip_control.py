"""Is GRPO's update distinguishable from a random update of the same size? A control for held-out gains.

Every GRPO run here flips held-out tasks both ways (fixed *and* broken) while moving the weights by < 1%.
This asks how many flips any update of that size causes: each control model is the SFT model plus GRPO's
own update with its entries shuffled within each tensor (the same magnitudes, per tensor the same norm,
a random direction). The SFT model, the GRPO model and the controls are evaluated on the same held-out
tasks (greedy, one rollout fleet).

    .venv/bin/python experiments/flip_control.py --before runs/sft/checkpoints/latest \
        --after runs/grpo/checkpoints/latest --out runs/flip_control [--controls 2] [--eval-tasks 200]

Prints, per model: held-out success, and the tasks fixed and broken against the SFT model.
"""
import argparse
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def shuffled_update_model(before: str, after: str, out: Path, seed: int) -> str:
    """``before`` + (``after`` − ``before``) with each tensor's entries permuted, written as a model dir."""
    import torch
    from safetensors.torch import load_file, save_file

    a, b = load_file(f"{before}/model.safetensors"), load_file(f"{after}/model.safetensors")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, w in a.items():
        delta = (b[key].float() - w.float()).flatten()
        delta = delta[torch.randperm(delta.numel(), generator=gen)].view_as(w)
        state[key] = (w.float() + delta).to(w.dtype).contiguous()
    shutil.copytree(before, out, ignore=shutil.ignore_patterns("deepspeed", "rng", "model.safetensors"),
                    dirs_exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the SFT checkpoint")
    ap.add_argument("--after", required=True, help="the GRPO checkpoint trained from it")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--controls", type=int, default=2)
    ap.add_argument("--eval-tasks", type=int, default=200)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from toolmaster.config import load_config
    from toolmaster.evaluation.stages import evaluate_stages

    out = Path(args.out)
    stages = {"sft": args.before, "grpo": args.after}
    for k in range(args.controls):
        stages[f"shuffled{k}"] = shuffled_update_model(args.before, args.after, out / f"shuffled{k}", seed=k)
    cfg = load_config(args.config, args.overrides)
    cfg.eval.num_tasks = args.eval_tasks
    reports = evaluate_stages(cfg, out, stages)
    base = [item["correct"] for item in reports["sft"]["items"]]
    print(f"{'model':<12}{'success':>10}{'fixed':>8}{'broken':>8}   ({args.eval_tasks} held-out tasks, greedy)")
    for stage, report in reports.items():
        now = [item["correct"] for item in report["items"]]
        fixed = sum(n and not b for b, n in zip(base, now))
        broken = sum(b and not n for b, n in zip(base, now))
        print(f"{stage:<12}{report['success']:>10.3f}{fixed:>8}{broken:>8}")


if __name__ == "__main__":
    main()
