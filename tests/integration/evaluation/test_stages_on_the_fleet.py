"""The quickstart's stage evaluation on a shared fleet: reports taken as given are not rerun, and the reach
of a stage's failures is sampled on the fleet."""
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def test_stages_with_a_report_are_not_rerun_but_still_sampled_for_reach(fleets, tiny_model_dir, tmp_path):
    from toolmaster.config import build_config
    from toolmaster.evaluation.stages import evaluate_stages

    cfg = build_config(TINY, ["rollout.generation.max_new_tokens=16", "eval.generation.max_new_tokens=16",
                            "env.max_turns=2", "env.toolworld.eval_tasks=3", "grpo.group_size=2"])
    measured = {"success": 0.0, "items": [{"correct": False} for _ in range(3)]}
    reports = evaluate_stages(cfg, tmp_path, {"untrained": tiny_model_dir, "sft": tiny_model_dir},
                              reach_of="sft", done={"sft": measured}, pool=fleets.get(cfg, tiny_model_dir).pool)
    assert list(reports) == ["untrained", "sft"]
    assert reports["untrained"]["num_items"] == 3 and (tmp_path / "eval_untrained" / "report.json").is_file()
    assert not (tmp_path / "eval_sft").exists()  # taken as given, not evaluated again
    assert reports["sft"]["reach"]["failures"] == 3  # its failures were sampled on the fleet
