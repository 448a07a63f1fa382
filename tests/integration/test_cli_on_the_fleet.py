"""`toolmaster eval --policy model` through the CLI on the session's Ray instance, which the command joins.
The command would start a rollout pool of its own and stop it; here it is handed the shared fleet's pool
instead (starting a pool is what every fleet test does), so the test covers the command's own path: flags,
config, evaluation, report files."""
import json

from toolmaster.cli import main


class _Borrowed:
    """The shared pool, as a command that owns its pool sees it: its shutdown leaves the fleet running."""

    def __init__(self, pool):
        self._pool, self.shut_down = pool, False

    def __getattr__(self, name):
        return getattr(self._pool, name)

    def shutdown(self):
        self.shut_down = True


def test_eval_model_policy_on_vllm(fleets, tiny_model_dir, tmp_path, monkeypatch):
    import toolmaster.rollout.pool

    borrowed = []

    def pool(cfg, model_dir):
        borrowed.append(_Borrowed(fleets.pool(cfg, model_dir)))
        return borrowed[-1]

    monkeypatch.setattr(toolmaster.rollout.pool, "RolloutPool", pool)
    code = main(["eval", "--env", "toolworld", "--policy", "model", "--model", tiny_model_dir, "--limit", "4",
                 "--out", str(tmp_path), "env.max_turns=2", "eval.generation.max_new_tokens=16"])
    assert code == 0 and len(borrowed) == 1 and borrowed[0].shut_down  # the command stopped the pool it started
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_items"] == 4 and 0.0 <= report["success"] <= 1.0
    episodes = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert all(ep["messages"][2]["role"] == "assistant" for ep in episodes)
