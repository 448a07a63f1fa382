import json

import pytest

from toolmaster.config import ConfigError, apply_overrides, build_config, load_config


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  max_turns: 5\n  toolworld:\n    max_hops: 3\n")
    cfg = load_config(path, ["env.toolworld.distractors=2", "synth.trial=false"])
    assert cfg.env.max_turns == 5 and cfg.env.toolworld.max_hops == 3
    assert cfg.env.toolworld.distractors == 2 and cfg.synth.trial is False


def test_override_wins_over_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  max_turns: 5\n")
    assert load_config(path, ["env.max_turns=7"]).env.max_turns == 7


@pytest.mark.parametrize("override, field, value", [
    ("env.max_turns=abc", "env.max_turns", "'abc'"),
    ("sandbox.timeout_s=-1", "sandbox.timeout_s", "-1"),
    ("env.name=nowhere", "env.name", "'nowhere'"),
    ("env.toolworld.quirk_rte=0.5", "env.toolworld.quirk_rte", "0.5"),
])
def test_bad_value_names_field_and_value(override, field, value):
    with pytest.raises(ConfigError) as err:
        build_config({}, [override])
    assert field in str(err.value) and value in str(err.value)


@pytest.mark.parametrize("override", [
    "grpo.balance_token_mass=true", "grpo.negative_advantage_weight=0.5", "grpo.drop_zero_variance=true",
    "synth.trial_order=per_tool", "rewards.wrong_answer=0.5", "rollout.generation.min_p=0.1",
    "eval.generation.top_p=0.9",
])
def test_options_measured_as_not_helping_are_gone(override):
    """Removed from the schema (docs/grpo.md, "Options measured as not helping"): setting one fails at load."""
    with pytest.raises(ConfigError, match="unknown field"):
        build_config({}, [override])


def test_cross_field_rule_is_checked():
    with pytest.raises(ConfigError, match="head_dim 16"):
        build_config({}, ["model.hidden_size=64", "model.num_heads=4"])
    with pytest.raises(ConfigError, match="min_hops 3 > max_hops 2"):
        build_config({}, ["env.toolworld.min_hops=3"])


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["env.max_turns"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_shipped_configs_load():
    from pathlib import Path
    for path in sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml")):
        load_config(path)


def test_gpu_only_settings_fail_before_any_actor_starts():
    from toolmaster.config import check_runtime

    with pytest.raises(ConfigError, match="learner.backend 'nccl'"):
        build_config({}, ["rollout.weight_transport=nccl"])  # NCCL weights need NCCL learners
    with pytest.raises(ConfigError, match="num_gpus_per_rank > 0"):  # NCCL learners without GPUs
        build_config({}, ["rollout.weight_transport=nccl", "learner.backend=nccl"])
    with pytest.raises(ConfigError, match="Ray hides every GPU"):
        build_config({}, ["learner.device=cuda"])
    cfg = build_config({}, ["rollout.weight_transport=nccl", "learner.backend=nccl", "learner.num_gpus_per_rank=1"])
    with pytest.raises(ConfigError, match="need CUDA"):  # this machine has no GPU
        check_runtime(cfg)
    with pytest.raises(ConfigError, match="learner.lora.rank"):
        build_config({}, ["learner.lora.rank=-1"])


def test_keep_best_needs_evaluations_on_a_split_that_is_not_reported():
    with pytest.raises(ConfigError, match="set grpo.eval_every"):
        build_config({}, ["grpo.keep_best=true"])
    with pytest.raises(ConfigError, match="grpo.eval_split=val"):  # choosing on the reported split
        build_config({}, ["grpo.keep_best=true", "grpo.eval_every=5"])
    cfg = build_config({}, ["grpo.keep_best=true", "grpo.eval_every=5", "grpo.eval_split=val"])
    assert cfg.grpo.keep_best and cfg.eval.split == "test"


def test_a_base_dict_is_not_changed_by_overrides():
    """A shared base (the tiny model's settings) must not collect one run's overrides for the next."""
    from toolmaster.models.tiny import TINY_SETTINGS

    before = json.dumps(TINY_SETTINGS, sort_keys=True)
    cfg = build_config(TINY_SETTINGS, ["sft.lr=0.5", "eval.generation.max_new_tokens=7", "eval.num_tasks=2"])
    assert cfg.sft.lr == 0.5 and cfg.eval.generation.max_new_tokens == 7
    assert json.dumps(TINY_SETTINGS, sort_keys=True) == before
    assert build_config(TINY_SETTINGS).eval.num_tasks is None
