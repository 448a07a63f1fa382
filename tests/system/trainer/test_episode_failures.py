"""One episode's failure is that episode's: a grader that raises (in the rollout workers) and a tool whose
sandbox reply is garbage never stop a GRPO step."""
import dataclasses
from pathlib import Path

import pytest

from tests.integration.trainer.test_grpo import _config

ROOT = str(Path(__file__).resolve().parents[3])


@pytest.fixture
def ray_with_failing_grader(fresh_ray):
    """Ray of its own: the hook patches the grader in every worker process it starts."""
    from tests.conftest import RAY_ENV

    fresh_ray(runtime_env={**RAY_ENV, "worker_process_setup_hook": "tests.fakes.failing_grader_hook"})


def _garbage_tools(env):
    """Every task's tools in the driver's task stream write garbage into their sandbox reply pipe first."""
    from toolmaster.tools.base import PythonExecutor, Tool

    original = env.tasks

    def garbage(tool):
        name = tool.executor.function
        source = (tool.executor.source + f"\n_real = {name}\n\ndef {name}(**kw):\n    import os\n"
                  "    os.write(3, b'\\x00garbage{{{')\n    return _real(**kw)\n")
        return Tool(tool.schema, PythonExecutor(source, name))

    env.tasks = lambda *a, **k: [dataclasses.replace(t, tools=tuple(map(garbage, t.tools))) for t in original(*a, **k)]


def test_a_raising_grader_and_garbage_tool_replies_fail_only_their_episodes(ray_with_failing_grader, tmp_path,
                                                                           tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    steps, b, g = 2, 2, 2  # _config's B and G
    cfg = _config(tmp_path / "run", 2, steps=steps, extra=["rollout.num_workers=2", "rollout.num_cpus_per_worker=0.25",
                                                           "rollout.episode_retries=1", "env.max_turns=3"])
    trainer = start_grpo(cfg, tiny_model_dir)
    _garbage_tools(trainer.env)
    history, observations = [], []  # observations: per episode that called a tool
    try:
        for step in range(steps):
            history.append(trainer.step())
            failing = {t.id for t in trainer._tasks(step) if int(t.id.rsplit("-", 1)[-1]) % 3 == 0}
            for r in trainer.last_records:
                if r["task_id"] in failing:
                    assert r["error"] == {"kind": "grader_error", "message": "RuntimeError: grader exploded"}
                    assert r["finish_reason"] == "error" and r["rewards"]["total"] == 0.0
                else:
                    assert r["error"] is None
                if r["turns"] and r["finish_reason"] != "answer":  # the hook's probe call ran after turn 1
                    observations.append([m["content"] for m in r["messages"] if m["role"] == "tool"])
    finally:
        trainer.close()
    expected_failed = []
    for step, h in enumerate(history):
        assert set(h["episode_ids"]) == {f"s{step}-t{i}-g{j}" for i in range(b) for j in range(g)}  # exactly B×G
        expected_failed.append(g * sum(int(t) % 3 == 0 for t in h["task_ids"] for t in [t.rsplit("-", 1)[-1]]))
        assert h["failed_episodes"] == expected_failed[-1] and h.get("failed/grader_error", 0) == expected_failed[-1]
    assert sum(expected_failed) > 0
    assert history[-1]["episode_retries"] == sum(expected_failed)  # each failed episode ran twice
    assert observations and all(any("error: tool process returned a malformed reply" in o for o in obs)
                                for obs in observations)
    assert not any("garbage" in o for obs in observations for o in obs)
