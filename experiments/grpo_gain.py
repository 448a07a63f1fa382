"""Does GRPO improve an SFT model on held-out tools? One run: GRPO from a checkpoint, then the SFT and the
GRPO model evaluated on the same held-out tasks (greedy, one rollout fleet), side by side with how far
GRPO moved the weights.

    .venv/bin/python experiments/grpo_gain.py --model runs/sft/checkpoints/latest --out runs/gain \
        [--eval-tasks 200] [--after GRPO_CHECKPOINT] [key=value ...]   # e.g. grpo.steps=20 grpo.group_size=8

Prints success, finish rate, trial calls, corrections and turns per episode for both models, their
difference, and the relative L2 distance of the GRPO weights from the SFT weights (and the largest change).
"""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def weight_distance(a_dir: str, b_dir: str) -> tuple[float, float]:
    """(‖b − a‖ / ‖a‖ over all shared tensors, max |b − a|)."""
    import glob

    from safetensors.torch import load_file

    def load(d):
        state = {}
        for f in glob.glob(f"{d}/*.safetensors"):
            state.update(load_file(f))
        return state

    a, b = load(a_dir), load(b_dir)
    keys = [k for k in a if k in b and k != "lm_head.weight"]
    diff = sum(float((b[k].float() - a[k].float()).pow(2).sum()) for k in keys) ** 0.5
    norm = sum(float(a[k].float().pow(2).sum()) for k in keys) ** 0.5
    return diff / norm, max(float((b[k].float() - a[k].float()).abs().max()) for k in keys)


def episode_class(item: dict) -> str:
    """clean / err (a failed execution call) and + / − (solved or not), from an evaluation report's item."""
    erred = (item.get("stats") or {}).get("first_failed_execution_turn") is not None
    return ("err" if erred else "clean") + ("+" if item["correct"] else "−")


def transitions(before: dict, after: dict) -> dict:
    """How each task's greedy episode changed class between two reports on the same tasks, and how often
    an erred episode recovered (was still solved) under each model."""
    from collections import Counter

    a = {i["task_id"]: episode_class(i) for i in before["items"]}
    b = {i["task_id"]: episode_class(i) for i in after["items"]}
    recovery = {}
    for name, classes in (("sft", a), ("grpo", b)):
        erred = [c for c in classes.values() if c.startswith("err")]
        recovery[name] = (erred.count("err+"), len(erred))
    return {"moves": dict(Counter(f"{a[t]} -> {b[t]}" for t in a)), "recovered": recovery}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="the SFT checkpoint GRPO starts from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--eval-tasks", type=int, default=200)
    ap.add_argument("--after", help="an existing GRPO checkpoint to compare instead of training one")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from toolmaster.config import load_config
    from toolmaster.evaluation.compare import describe, paired_difference
    from toolmaster.evaluation.stages import evaluate_stages
    from toolmaster.trainer.grpo import train_grpo

    out = Path(args.out)
    cfg = load_config(args.config, [f"run_dir={out / 'grpo'}", *args.overrides])
    result = train_grpo(cfg, args.model) if not args.after else {"history": [], "best": None}
    history, best = result["history"], result["best"]
    after = args.after or str(out / "grpo" / "checkpoints" / "latest")
    eval_cfg = cfg.model_copy(deep=True)
    eval_cfg.eval.num_tasks = args.eval_tasks
    stages = {"sft": args.model, "grpo": after}
    # the stage that is the model grpo.keep_best named; a checkpoint in between is evaluated as its own stage
    chosen = best and ("sft" if best["step"] == 0 else "grpo" if best["step"] == cfg.grpo.steps else "chosen")
    if chosen == "chosen":
        stages["chosen"] = str(out / "grpo" / "checkpoints" / "best")
    reports = evaluate_stages(eval_cfg, out, stages)
    rel, biggest = weight_distance(args.model, after)
    keys = ("success", "finish_rate", "mean_trial_calls", "mean_corrections", "mean_turns")
    rows = {stage: {k: r[k] for k in keys} for stage, r in reports.items()}
    summary = {"stages": rows, "weight_change_relative_l2": rel, "weight_change_max": biggest,
               "overrides": args.overrides, "eval_tasks": args.eval_tasks,
               "train_success": [h["success"] for h in history]}
    summary["episode_classes"] = transitions(reports["sft"], reports["grpo"])
    summary["paired"] = {stage: paired_difference(reports["sft"], reports[stage])
                         for stage in reports if stage != "sft"}
    if chosen:
        summary["chosen"] = {**best, "stage": chosen, "success": rows[chosen]["success"]}
    (out / "gain.json").write_text(json.dumps(summary, indent=2))
    print(f"{'model':<6}" + "".join(f"{k:>18}" for k in keys))
    for stage, r in rows.items():
        print(f"{stage:<6}" + "".join(f"{r[k]:>18.3f}" for k in keys))
    print(f"{'Δ':<6}" + "".join(f"{rows['grpo'][k] - rows['sft'][k]:>+18.3f}" for k in keys))
    print(f"GRPO − SFT success, paired: {describe(summary['paired']['grpo'])}")
    classes = summary["episode_classes"]
    print("task classes SFT -> GRPO (clean / err: a failed execution call; + / −: solved): " +
          ", ".join(f"{k} {n}" for k, n in sorted(classes["moves"].items())))
    print("erred episodes that recovered: " + ", ".join(f"{s} {r}/{n}" for s, (r, n) in classes["recovered"].items()))
    if chosen:  # by its held-out score on grpo.eval_split
        print(f"grpo.keep_best chose step {best['step']} ({best['split']} {best['score']:.3f}): the {chosen} model, "
              f"held-out success {rows[chosen]['success']:.3f}" +
              (f", against SFT {describe(summary['paired'][chosen])}" if chosen != "sft" else ""))
    print(f"GRPO moved the weights by {rel:.2%} (relative L2), max |Δw| {biggest:.2e}; "
          f"{args.eval_tasks} held-out '{cfg.eval.split}' tasks, greedy; overrides: {' '.join(args.overrides)}")


if __name__ == "__main__":
    import sys

    from toolmaster.config import ConfigError
    try:
        main()
    except ConfigError as err:  # a bad --model or setting: one line, before any actor starts
        sys.exit(f"grpo_gain.py: {err}")
