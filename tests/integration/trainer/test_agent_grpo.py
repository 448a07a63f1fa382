"""Train any agent: an OpenAI-SDK agent (tests/agents.py) trains through each rollout worker's recording
endpoint with the real engines."""
import math
from pathlib import Path

from tests.integration.trainer.test_grpo import _config
from toolmaster.models.tiny import TINY_SETTINGS as TINY

ROOT = str(Path(__file__).resolve().parents[3])
TASKS = str(Path(__file__).resolve().parents[3] / "tests" / "adder_tasks.jsonl")


def _agent_config(run_dir, agent: str, steps: int = 2, extra=()):
    return _config(run_dir, 2, steps=steps, extra=["env.name=agent", f"env.agent.entry=tests.agents:{agent}",
                                                   f"env.agent.tasks={TASKS}", *extra])


def test_an_openai_sdk_agent_trains_with_exact_trajectories(fleets, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    cfg = _agent_config(tmp_path / "run", "adder")
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        records = trainer.pool.run(trainer._tasks(0), 2, step=0)
        for r in records:
            assert r.error is None and not r.segments  # one conversation, one trajectory
            assert r.stats["turns"] == 3
            assert sum(r.loss_mask) == r.judgments["completion_tokens"] > 0  # mask 1 exactly on sampled
            engine = trainer.pool.prompt_logprobs(r.token_ids)[0]
            sampled = [(a, b) for a, b, m in zip(engine, r.logprobs, r.loss_mask) if m]
            assert max(abs(a - b) for a, b in sampled) < 1e-4  # the engine's logprobs on the assembled ids
        history = [trainer.step(), trainer.step()]
    finally:
        trainer.close()
    for step, h in enumerate(history):
        assert set(h["episode_ids"]) == {f"s{step}-t{i}-g{j}" for i in range(2) for j in range(2)}  # B×G, no dupes
        assert h["version"] == step + 1 and h["failed_episodes"] == 0 and math.isfinite(h["reward"])


def test_a_client_that_rewrites_its_history_is_still_one_trajectory(fleets, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    cfg = _agent_config(tmp_path / "run", "rewriter", steps=1)
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        records = trainer.pool.run(trainer._tasks(0), 2, step=0)
    finally:
        trainer.close()
    for r in records:
        assert not r.segments and r.stats["turns"] == 3 and r.error is None
        # three sampled turns in one sequence: three runs of mask 1
        runs = sum(1 for i, m in enumerate(r.loss_mask) if m and (i == 0 or not r.loss_mask[i - 1]))
        assert runs == 3


def test_an_agent_that_raises_fails_only_its_episodes(fleets, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    cfg = _agent_config(tmp_path / "run", "raises", steps=1, extra=["rollout.episode_retries=0"])
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        h = trainer.step()
    finally:
        trainer.close()
    assert h["episodes"] == 4 and h["failed_episodes"] == 4 and h["failed/agent_error"] == 4
    assert h["train/updates"] == 0


def test_max_tokens_and_stop_strings_behave_as_openai_documents(fleets, tmp_path, tiny_model_dir):
    from toolmaster.envs import make_env

    cfg = _agent_config(tmp_path / "run", "stopper")
    records = fleets.pool(cfg, tiny_model_dir).run(make_env(cfg.env).tasks("train", 2), 2, step=0)
    for r in records:
        assert r.error is None and not r.segments
        assert r.judgments["cut_is_length"] == 1.0  # 3 sampled tokens, finish_reason "length"
        assert r.judgments["stop_string_shown"] == 0.0  # cut before the stop string whenever one was sampled
        assert sum(r.loss_mask) == 3 + r.judgments["stopped_tokens"]  # the stop string's tokens were sampled
    assert any(r.judgments["stop_hit"] for r in records)  # common letters: some turn met one


def test_eval_runs_an_agent_and_the_cli_refuses_a_bad_entry(fleets, tmp_path, tiny_model_dir, capsys, monkeypatch):
    import json

    from toolmaster.cli import main
    from toolmaster.config import build_config
    from toolmaster.evaluation.runner import evaluate

    def no_ray():
        raise AssertionError("Ray was started")

    with monkeypatch.context() as patched:
        patched.setattr("toolmaster.ray_utils.init_ray", no_ray)
        code = main(["eval", "--env", "agent", f"env.agent.tasks={TASKS}", "env.agent.entry=tests.agents:nothing",
                     "--policy", "model", "--model", tiny_model_dir, "--out", str(tmp_path / "bad")])
    assert code == 2 and "tests.agents:nothing' is not an async function" in capsys.readouterr().err
    cfg = build_config(TINY, ["env.name=agent", f"env.agent.tasks={TASKS}", "env.agent.entry=tests.agents:adder",
                            f"eval.model={tiny_model_dir}", "eval.num_tasks=2"])
    evaluate(cfg, tmp_path / "eval", pool=fleets.pool(cfg, tiny_model_dir))
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["env"] == "agent" and report["num_items"] == 2 and report["failed_episodes"] == {}
    assert all(item["stats"]["turns"] == 3 for item in report["items"])
