"""``toolmaster quickstart``: the whole pipeline on the embedded default, on one machine.

Stages so far: tiny model → teacher synthesis → evaluation of the untrained model on toolworld's
held-out test tools. (SFT and GRPO stages arrive with the Ray trainer.)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from toolmaster import console
from toolmaster.config import dump_config


def quickstart(cfg, out_dir: str) -> dict:
    from toolmaster.evaluation.runner import evaluate
    from toolmaster.models.tiny import build_tiny_model
    from toolmaster.teacher.synth import synthesize

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    timings = {}
    t0 = time.time()
    model_dir = out / "model"
    with console.status("[1/3] building the tiny model"):
        facts = build_tiny_model(cfg, model_dir)
    timings["tiny_model_s"] = round(time.time() - t0, 1)

    t1 = time.time()
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with console.progress("[2/3] synthesizing teacher trajectories", cfg.synth.num_tasks) as advance:
        summary = synthesize(cfg, out / "data", tokenizer, progress=advance)
    timings["synth_s"] = round(time.time() - t1, 1)

    t2 = time.time()
    cfg = cfg.model_copy(deep=True)
    cfg.env.name = "toolworld"
    cfg.eval.policy, cfg.eval.model, cfg.eval.split = "model", str(model_dir), "test"
    with console.progress("[3/3] evaluating the untrained model (episode turns)", cfg.env.max_turns) as advance:
        report = evaluate(cfg, out / "eval_untrained", progress=lambda t, a: advance(t))
    timings["eval_s"] = round(time.time() - t2, 1)
    timings["total_s"] = round(time.time() - t0, 1)

    result = {
        "model": facts,
        "data": {k: summary[k] for k in ("kept", "dropped", "mean_trial_calls", "mean_corrections")},
        "success": {"untrained": report["success"]},
        "trial_calls": {"untrained": report["mean_trial_calls"]},
        "corrections": {"untrained": report["mean_corrections"]},
        "eval_tasks": report["num_items"], "split": "test (held-out tools)", "timings": timings,
    }
    (out / "report.json").write_text(json.dumps(result, indent=2))
    console.print_table(
        "toolworld held-out test tools", ["stage", "success", "trial calls / episode", "corrections / episode"],
        [["untrained", report["success"], report["mean_trial_calls"], report["mean_corrections"]]])
    print(f"toolworld test-split success of the untrained tiny model: {report['success']:.3f} "
          f"({report['num_correct']}/{report['num_items']}); report: {out / 'report.json'}; "
          f"wall time {timings['total_s']} s")
    return result
