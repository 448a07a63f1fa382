import json

from toolmaster.models.tiny import TINY_SETTINGS as TINY


def test_the_quickstart_runs_every_stage_through_the_real_engines(ray_local, tmp_path, tiny_model_dir):
    """`toolmaster quickstart` at toy size: tiny model → synthesis → SFT → GRPO (choosing its checkpoint on
    val) → held-out evaluation of each stage, with the paired comparison and the run's files. On the shared
    fleet of the tiny model's shape: every stage resets it, as the quickstart's own fleet is reset."""
    from tests.integration.fleets import FLEETS
    from toolmaster.config import build_config
    from toolmaster.quickstart import quickstart

    cfg = build_config(TINY, ["model.copy_pretrain_steps=0", "synth.num_tasks=16", "sft.steps=4", "sft.batch_size=4",
                            "sft.warmup_steps=1", "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2",
                            "grpo.eval_every=1", "grpo.eval_tasks=2", "grpo.eval_split=val", "grpo.keep_best=true",
                            "env.toolworld.eval_tasks=3", "rollout.generation.max_new_tokens=16",
                            "eval.generation.max_new_tokens=16"])  # env.max_turns stays: the teacher needs its turns
    out = tmp_path / "qs"
    result = quickstart(cfg, str(out), fleet=FLEETS.get(cfg, tiny_model_dir))
    assert list(result["success"]) == ["untrained", "sft", "grpo"] and result["eval_tasks"] == 3
    assert json.loads((out / "report.json").read_text())["success"] == result["success"]
    for stage in ("untrained", "sft", "grpo"):
        assert (out / f"eval_{stage}" / "report.json").is_file()  # val was chosen on; test is reported
        assert json.loads((out / f"eval_{stage}" / "report.json").read_text())["split"] == "test"
    assert result["grpo_heldout_split"] == "val" and sorted(result["grpo_heldout_success"]) == [0, 1, 2]
    chosen = result["grpo_selected"]
    assert chosen["score"] == max(result["grpo_heldout_success"].values())
    if chosen["step"] == 0:  # the start model was best on val: the GRPO stage is the SFT model, greedy alike
        assert result["success"]["grpo"] == result["success"]["sft"]
    assert result["rl_gain"]["paired"]["tasks"] == 3
    assert (out / "grpo" / "grpo_curve.png").is_file() and (out / "sft" / "metrics.jsonl").is_file()
