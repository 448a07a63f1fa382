"""`toolmaster eval --policy model` through the CLI: a rollout fleet of its own, started and stopped by the
command (on the session's Ray instance, which the command joins)."""
import json

from toolmaster.cli import main


def test_eval_model_policy_on_vllm(ray_local, tiny_model_dir, tmp_path):
    code = main(["eval", "--env", "toolworld", "--policy", "model", "--model", tiny_model_dir, "--limit", "4",
                 "--out", str(tmp_path), "env.max_turns=2", "eval.generation.max_new_tokens=16"])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_items"] == 4 and 0.0 <= report["success"] <= 1.0
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert all(ep["messages"][2]["role"] == "assistant" for ep in episodes)
