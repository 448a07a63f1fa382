"""The stages' evaluation without engines: GRPO's gain against the target, and GRPO's own held-out reports
reused as the SFT and GRPO stages."""
import json

from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.evaluation.runner import eval_tasks
from toolmaster.evaluation.stages import heldout_reports_from_grpo, rl_gain
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def report(success, trials):
    return {"success": success, "mean_trial_calls": trials}


def test_rl_gain_needs_both_the_success_gain_and_the_trials_kept():
    assert rl_gain(report(0.6, 2.5), report(0.72, 2.4))["met"]
    assert rl_gain(report(0.8, 2.5), report(0.9, 2.5))["met"]  # exactly the target (0.9 - 0.8 < 0.1 in floats)
    assert not rl_gain(report(0.6, 2.5), report(0.65, 2.5))["met"]  # too small a gain
    dropped = rl_gain(report(0.6, 2.5), report(0.9, 1.5))  # bought by skipping trials
    assert dropped["trial_calls_ratio"] == 0.6 and not dropped["met"]


def test_rl_gain_without_trials_judges_success_alone():
    gain = rl_gain(report(0.2, 0.0), report(0.31, 0.0))
    assert gain["trial_calls_ratio"] is None and gain["met"] and gain["success"] == 0.11


def test_rl_gain_compares_the_models_task_by_task():
    sft = {**report(0.5, 2.5), "items": [{"task_id": f"t{i}", "grade": float(i < 5)} for i in range(10)]}
    grpo = {**report(0.7, 2.5), "items": [{"task_id": f"t{i}", "grade": float(i < 7)} for i in range(10)]}
    paired = rl_gain(sft, grpo)["paired"]
    assert (paired["fixed"], paired["broken"], paired["difference"]) == (2, 0, 0.2)
    assert "paired" not in rl_gain(report(0.5, 2.5), report(0.7, 2.5))  # summaries without items


def test_rl_gain_reports_what_grpo_could_learn_from():
    sft = {**report(0.9, 2.8), "reach": {"tasks": 50, "failures": 5, "reachable": 1}}
    gain = rl_gain(sft, report(0.92, 2.8))
    assert (gain["sft_failures"], gain["reachable_failures"], gain["reachable_share"]) == (5, 1, 0.02)
    assert "reachable_failures" not in rl_gain(report(0.9, 2.8), report(0.92, 2.8))


def grpo_run_with_evals(tmp_path, cfg, versions, task_ids):
    for v in versions:
        d = tmp_path / "grpo" / "eval" / f"v{v}"
        d.mkdir(parents=True)
        (d / "report.json").write_text(json.dumps({"success": v / 10, "items": [{"task_id": t} for t in task_ids]}))
        (d / "episodes.jsonl").write_text("")
    return tmp_path / "grpo"


def heldout_ids(cfg):
    return [t.id for t in eval_tasks(cfg, make_env(cfg.env))]


def test_the_stage_reports_reuse_grpos_first_and_last_heldout_evaluation(tmp_path):
    cfg = build_config(TINY, ["grpo.eval_every=5", "grpo.eval_tasks=6", "env.toolworld.eval_tasks=6"])
    grpo_dir = grpo_run_with_evals(tmp_path, cfg, [0, 5, 10], heldout_ids(cfg))
    reports = heldout_reports_from_grpo(cfg, grpo_dir, tmp_path / "qs")
    assert (reports["sft"]["success"], reports["grpo"]["success"]) == (0.0, 1.0)
    assert (tmp_path / "qs" / "eval_grpo" / "episodes.jsonl").is_file()  # the usual layout, copied


def test_grpo_evaluations_on_other_tasks_are_not_reused(tmp_path):
    cfg = build_config(TINY, ["grpo.eval_every=5", "grpo.eval_tasks=6", "env.toolworld.eval_tasks=6"])
    ids = heldout_ids(cfg)
    assert heldout_reports_from_grpo(cfg, grpo_run_with_evals(tmp_path / "a", cfg, [0, 5], ids[:5]), tmp_path) == {}
    assert heldout_reports_from_grpo(cfg, grpo_run_with_evals(tmp_path / "b", cfg, [5], ids), tmp_path) == {}
    off = build_config(TINY, ["grpo.eval_every=0", "env.toolworld.eval_tasks=6"])
    assert heldout_reports_from_grpo(off, grpo_run_with_evals(tmp_path / "c", cfg, [0, 5], ids), tmp_path) == {}
    assert not (tmp_path / "eval_sft").exists()
