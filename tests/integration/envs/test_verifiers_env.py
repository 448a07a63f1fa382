"""verifiers environments (envs/verifiers_env.py): a small offline v1 taskset written in the tests
(tests/vf_plugins/vf_codes.py) evaluates and trains through each rollout worker's recording endpoint with
the real engines, verifiers' own null harness and subprocess runtime. Needs the ``[verifiers]`` extra
(``bash scripts/install.sh --with-verifiers``); without it those tests are skipped, and the one that checks
the error a user without the extra gets still runs."""
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest

from tests.integration.trainer.test_grpo import _config
from toolmaster.models.tiny import TINY_SETTINGS as TINY

ROOT = str(Path(__file__).resolve().parents[3])
PYTHONPATH = os.pathsep.join([ROOT, str(Path(ROOT) / "tests" / "vf_plugins")])
needs_verifiers = pytest.mark.skipif(
    importlib.util.find_spec("verifiers") is None,
    reason="the [verifiers] extra is not installed (scripts/install.sh --with-verifiers)")


def test_without_the_extra_the_config_is_refused_saying_how_to_install(monkeypatch):
    from toolmaster.config import ConfigError, build_config, check_runtime

    monkeypatch.setitem(sys.modules, "verifiers.v1", None)  # import fails as if it were not installed
    with pytest.raises(ConfigError, match="install.sh --with-verifiers"):
        check_runtime(build_config(TINY, ["env.name=verifiers", "env.verifiers.id=vf_codes"]))


def _vf_config(run_dir, steps=2):
    return _config(run_dir, 2, steps=steps, extra=["env.name=verifiers", "env.verifiers.id=vf_codes"])


@needs_verifiers
def test_a_bad_taskset_is_a_config_error_naming_it():
    from toolmaster.config import build_config
    from toolmaster.envs import make_env

    with pytest.raises(ValueError, match="env.verifiers.id must name"):
        make_env(build_config(TINY, ["env.name=verifiers"]).env)
    with pytest.raises(ValueError, match="cannot load 'no_such_taskset'"):
        make_env(build_config(TINY, ["env.name=verifiers", "env.verifiers.id=no_such_taskset"]).env)
    with pytest.raises(ValueError, match="cannot load 'no_such_harness'"):
        make_env(build_config(TINY, ["env.name=verifiers", "env.verifiers.id=vf_codes",
                                   "env.verifiers.harness=no_such_harness"]).env)
    # a harness that runs model-written shell commands would run them on this host: refused by default
    with pytest.raises(ValueError, match="runs model-written code"):
        make_env(build_config(TINY, ["env.name=verifiers", "env.verifiers.id=vf_codes",
                                   "env.verifiers.harness=bash"]).env)


@needs_verifiers
def test_the_taskset_splits_into_train_and_test():
    sys.path.insert(0, str(Path(ROOT) / "tests" / "vf_plugins"))
    from toolmaster.config import build_config
    from toolmaster.envs import make_env

    env = make_env(build_config(TINY, ["env.name=verifiers", "env.verifiers.id=vf_codes",
                                     "env.verifiers.args={num_tasks: 10}"]).env)
    train, test = env.tasks("train"), env.tasks("test")
    assert [len(train), len(test)] == [8, 2] and test[0].id == "verifiers-test-0"
    assert test[0].metadata["task"]["idx"] == 8 and "What is the code of" in test[0].metadata["task"]["prompt"]


@needs_verifiers
def test_a_verifiers_taskset_trains_a_grpo_step(fleets, tmp_path, tiny_model_dir):
    """Its episodes (each starts verifiers' harness: ≈ 15 s here) are recorded exactly, then a step trains."""
    from transformers import AutoTokenizer

    from toolmaster.trainer.grpo import start_grpo

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    cfg = _vf_config(tmp_path / "run", steps=1)
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        records = trainer.pool.run(trainer._tasks(0), 2, step=0)
        for r in records:
            assert r.error is None and not r.segments and r.stats["turns"] == 1
            # the reward is the verifiers trace's, its named reward among the metrics
            assert r.rewards["correctness"] == r.judgments["reward/exact"] in (0.0, 1.0)
            assert r.judgments["reply_chars"] >= 0
            assert "codes_lookup" in tokenizer.decode(r.token_ids)  # the toolset's tool reached the prompt
            assert sum(r.loss_mask) > 0
            engine = trainer.pool.prompt_logprobs(r.token_ids)[0]
            sampled = [(a, b) for a, b, m in zip(engine, r.logprobs, r.loss_mask) if m]
            assert max(abs(a - b) for a, b in sampled) < 1e-4  # the recorded tokens are the sampled ones
        history = [trainer.step()]
    finally:
        trainer.close()
    for step, h in enumerate(history):
        assert set(h["episode_ids"]) == {f"s{step}-t{i}-g{j}" for i in range(2) for j in range(2)}
        assert h["version"] == step + 1 and h["failed_episodes"] == 0 and math.isfinite(h["reward"])


@needs_verifiers
def test_eval_runs_a_verifiers_taskset_and_the_cli_refuses_a_bad_one(fleets, tmp_path, tiny_model_dir, capsys,
                                                                     monkeypatch):
    from toolmaster.cli import main
    from toolmaster.config import build_config
    from toolmaster.evaluation.runner import evaluate

    def no_ray():
        raise AssertionError("Ray was started")

    with monkeypatch.context() as patched:
        patched.setattr("toolmaster.ray_utils.init_ray", no_ray)
        code = main(["eval", "--env", "verifiers", "--policy", "model", "--model", tiny_model_dir,
                     "--out", str(tmp_path / "bad"), "env.verifiers.id=vf_nothing"])
    assert code == 2 and "cannot load 'vf_nothing'" in capsys.readouterr().err
    cfg = build_config(TINY, ["env.name=verifiers", "env.verifiers.id=vf_codes", f"eval.model={tiny_model_dir}",
                            "eval.num_tasks=2", "eval.generation.max_new_tokens=24"])
    evaluate(cfg, tmp_path / "eval", pool=fleets.pool(cfg, tiny_model_dir))
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["env"] == "verifiers" and report["num_items"] == 2 and report["failed_episodes"] == {}
    assert "reward/exact_rate" in report and "mean_reply_chars" in report
    assert all(item["stats"]["turns"] == 1 and item["policy_version"] == 0 for item in report["items"])
