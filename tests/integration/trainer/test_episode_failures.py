"""One episode's failure is that episode's: a grader that raises (in the rollout workers) and a tool whose
sandbox reply is garbage never stop a GRPO step."""
import dataclasses

from tests.integration.trainer.test_grpo import _config


def _faulty_tasks(env):
    """The driver's task stream, with faults: every tool writes garbage into its sandbox reply pipe first;
    each episode calls its first tool after turn 1, and the grader raises for every task whose index is a
    multiple of 3 (tests/fakes.py's worker hook reads both from the task's metadata)."""
    from toolmaster.tools.base import PythonExecutor, Tool

    original = env.tasks

    def garbage(tool):
        name = tool.executor.function
        source = (tool.executor.source + f"\n_real = {name}\n\ndef {name}(**kw):\n    import os\n"
                  "    os.write(3, b'\\x00garbage{{{')\n    return _real(**kw)\n")
        return Tool(tool.schema, PythonExecutor(source, name))

    def faulty(task):
        failing = int(task.id.rsplit("-", 1)[-1]) % 3 == 0
        return dataclasses.replace(task, tools=tuple(map(garbage, task.tools)),
                                   metadata={**task.metadata, "probe_first_tool": True, "grader_raises": failing})

    env.tasks = lambda *a, **k: [faulty(t) for t in original(*a, **k)]


def test_a_raising_grader_and_garbage_tool_replies_fail_only_their_episodes(fleets, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    steps, b, g = 2, 2, 2  # _config's B and G
    cfg = _config(tmp_path / "run", 2, steps=steps, extra=["rollout.episode_retries=1", "env.max_turns=3"])
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    _faulty_tasks(trainer.env)
    history, observations = [], []  # observations: per episode that called a tool
    try:
        for step in range(steps):
            history.append(trainer.step())
            failing = {t.id for t in trainer._tasks(step) if int(t.id.rsplit("-", 1)[-1]) % 3 == 0}
            for r in trainer.last_records:
                if r.task_id in failing:
                    assert r.error == {"kind": "grader_error", "message": "RuntimeError: grader exploded"}
                    assert r.finish_reason == "error" and r.rewards["total"] == 0.0
                else:
                    assert r.error is None
                if r.turns and r.finish_reason != "answer":  # the hook's probe call ran after turn 1
                    observations.append([m["content"] for m in r.messages if m["role"] == "tool"])
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
