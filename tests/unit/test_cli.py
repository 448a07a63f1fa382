import json
import subprocess
import sys

import pytest

from tests.conftest import TOOLHOP
from toolmaster.cli import main


def test_eval_toolhop_oracle_and_empty(tmp_path):
    for policy, expected in [("oracle", 100.0), ("empty", 0.0)]:
        out = tmp_path / policy
        assert main(["eval", "--env", "toolhop", "--data", str(TOOLHOP), "--policy", policy, "--out", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["accuracy"] == expected and report["num_items"] == 100 and len(report["items"]) == 100


def test_eval_toolworld_oracle(tmp_path):
    assert main(["eval", "--env", "toolworld", "--policy", "oracle", "--limit", "7", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["success"] == 1.0 and report["num_items"] == 7 and report["split"] == "test"


def test_bad_config_value_fails_before_work(tmp_path, capsys):
    code = main(["eval", "--policy", "oracle", "--out", str(tmp_path), "env.max_turns=zero"])
    assert code == 2 and "env.max_turns = 'zero'" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_a_split_the_environment_lacks_is_a_config_error_before_any_actor(tmp_path, tiny_model_dir, capsys,
                                                                          monkeypatch):
    def no_ray():
        raise AssertionError("Ray was started")

    monkeypatch.setattr("toolmaster.trainer.grpo.init_ray", no_ray)
    monkeypatch.setattr("toolmaster.ray_utils.init_ray", no_ray)
    code = main(["eval", "--env", "toolhop", "--data", str(TOOLHOP), "--policy", "oracle", "--split", "val",
                 "--out", str(tmp_path / "eval")])
    assert code == 2 and ("eval.split = 'val': toolhop has no such split; splits: ['train', 'test']"
                          in capsys.readouterr().err)
    code = main(["grpo", "--model", tiny_model_dir, f"run_dir={tmp_path / 'grpo'}", "grpo.eval_every=5",
                 "grpo.eval_split=val", "env.name=toolhop", f"env.toolhop.data={TOOLHOP}",
                 "env.toolhop.test_fraction=0.5"])
    assert code == 2 and "grpo.eval_split = 'val'" in capsys.readouterr().err
    code = main(["grpo", "--model", tiny_model_dir, f"run_dir={tmp_path / 'grpo'}", "env.name=toolhop",
                 f"env.toolhop.data={TOOLHOP}"])
    assert code == 2 and "has no training tasks" in capsys.readouterr().err
    assert not (tmp_path / "grpo").exists()


def test_synth_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toolmaster.cli", "synth", "--env", "toolworld", "--num-tasks", "40",
                           "--out", str(tmp_path), "--seed", "3", "--no-trial"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_tasks"] == 40 and summary["trial"] is False


def test_eval_each_benchmark_from_its_data_folder(tmp_path, capsys):
    from tests.conftest import DATA
    out = tmp_path / "tmdb"
    assert main(["eval", "--env", "tmdb", "--data", str(DATA / "restbench"), "--policy", "oracle", "--limit", "3",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "correct_path_rate" and report["correct_path_rate"] == 0.0  # oracle calls no endpoint
    assert (out / "report.md").exists() and (out / "report.png").exists()
    out = tmp_path / "stb"
    assert main(["eval", "--env", "stabletoolbench",
                 "--data", str(DATA / "stabletoolbench" / "test_instruction" / "G3_instruction.json"),
                 "--policy", "empty", "--limit", "2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["num_items"] == 2 and report["sopr"] is None
            and report["items"][0]["task_id"].startswith("G3_instruction:"))
    assert main(["eval", "--env", "toolworld", "--data", "x", "--policy", "oracle", "--out", str(tmp_path / "tw")]) == 2
    assert "takes no --data" in capsys.readouterr().err


def test_synth_with_an_openai_teacher_command(tmp_path):
    from tests.fakes import FakeOpenAI
    with FakeOpenAI(lambda messages: "<answer>nothing</answer>") as fake:
        proc = subprocess.run([sys.executable, "-m", "toolmaster.cli", "synth", "--teacher", "openai", "--base-url",
                               fake.base_url, "--model", "teacher-7b", "--num-tasks", "5", "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["teacher"] == "openai" and summary["num_tasks"] == 5 and len(fake.requests) == 5


@pytest.mark.parametrize("argv,message", [
    (["sft", "--data", "d.jsonl"], "sft needs a model: --model DIR or model.path=DIR (or --tiny"),
    (["grpo"], "grpo needs a model: --model DIR or model.path=DIR (or --tiny"),
    (["eval", "--policy", "model", "--out", "OUT"], "--model (eval.model): no model given"),
])
def test_no_model_is_a_config_error_not_a_silent_toy(argv, message, tmp_path, capsys, monkeypatch):
    """Only the quickstart, or an explicit --tiny, builds the toy model (it once trained 3 minutes silently)."""
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("OUT", str(tmp_path / "out")) for a in argv] + [f"run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("toolmaster: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "base_model").exists()
