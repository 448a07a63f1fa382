"""`toolmaster eval` as a user runs it: its own process, its own Ray and rollout fleet."""
import json
import subprocess
import sys


def test_eval_model_policy_on_vllm(tiny_model_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toolmaster.cli", "eval", "--env", "toolworld", "--policy", "model",
                           "--model", tiny_model_dir, "--limit", "4", "--out", str(tmp_path), "env.max_turns=2",
                           "eval.generation.max_new_tokens=16"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_items"] == 4 and 0.0 <= report["success"] <= 1.0
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert all(ep["messages"][2]["role"] == "assistant" for ep in episodes)
