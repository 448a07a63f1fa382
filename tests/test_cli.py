import json
import subprocess
import sys

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


def test_synth_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toolmaster.cli", "synth", "--env", "toolworld", "--num-tasks", "40",
                           "--out", str(tmp_path), "--seed", "3", "--no-trial"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_tasks"] == 40 and summary["trial"] is False


def test_eval_model_policy_on_vllm(tiny_model_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toolmaster.cli", "eval", "--env", "toolworld", "--policy", "model",
                           "--model", tiny_model_dir, "--limit", "4", "--out", str(tmp_path), "env.max_turns=2",
                           "eval.generation.max_new_tokens=16"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_items"] == 4 and 0.0 <= report["success"] <= 1.0
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert all(ep["messages"][2]["role"] == "assistant" for ep in episodes)
