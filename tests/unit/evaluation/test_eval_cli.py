"""`toolmaster eval compare BEFORE AFTER` and `toolmaster eval --reach N`, without engines."""
import json
from pathlib import Path

import pytest

from tests.fakes import ScriptedPool
from toolmaster.cli import main


def _write(path, solved: list[int], breakdown: float | None = None, ids=None):
    ids = ids or [f"t{i}" for i in range(len(solved))]
    report = {"metric": "success", "success": sum(solved) / len(solved),
              "items": [{"task_id": t, "grade": float(s), "correct": bool(s)} for t, s in zip(ids, solved)],
              "breakdown": {} if breakdown is None else {"group=2-hop": breakdown}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def test_compare_prints_the_paired_line_and_each_task_group(tmp_path, capsys):
    _write(tmp_path / "sft" / "report.json", [1] * 10 + [0] * 10, breakdown=0.5)
    _write(tmp_path / "grpo" / "report.json", [1] * 8 + [0, 0] + [1] * 6 + [0] * 4, breakdown=0.7)
    # a folder and a file alike
    assert main(["eval", "compare", str(tmp_path / "sft"), str(tmp_path / "grpo" / "report.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "success: 0.500 -> 0.700"
    assert out[1].startswith("after - before, paired: +0.200 (95% CI") and "fixed 6, broken 2" in out[1]
    assert out[2] == "  group=2-hop: 0.500 -> 0.700"


@pytest.mark.parametrize("case, message", [
    ("missing", "no report.json"),
    ("folder without a report", "no report.json"),
    ("not JSON", "not a readable JSON report"),
    ("the quickstart's summary", "not an evaluation report"),
    ("other tasks", "share no task"),
])
def test_compare_a_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, case, message):
    before = _write(tmp_path / "before.json", [1, 0, 1])
    after = tmp_path / "after"
    if case == "folder without a report":
        after.mkdir()
    elif case == "not JSON":
        after.write_text('{"items": [')
    elif case == "the quickstart's summary":
        after.write_text(json.dumps({"success": {"sft": 0.6, "grpo": 0.7}, "rl_gain": {}}))
    elif case == "other tasks":
        _write(after, [1, 1], ids=["x", "y"])
    assert main(["eval", "compare", str(before), str(after)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("toolmaster eval compare: ") and message in captured.err


def test_compare_needs_two_reports(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "compare", "only-one"])
    assert exit_.value.code == 2 and "AFTER" in capsys.readouterr().err


def test_eval_still_takes_its_overrides_after_the_compare_subcommand_exists(tmp_path):
    assert main(["eval", "--policy", "oracle", "--limit", "2", "--out", str(tmp_path), "env.max_turns=zero"]) == 2


@pytest.mark.parametrize("args, message", [
    (["--policy", "oracle", "--reach", "4"], "use --policy model"),
    (["--policy", "model", "--reach", "4"], "--model: no model given"),
    (["--policy", "model", "--model", "nowhere", "--reach", "4"], "not a directory"),
    (["--policy", "model", "--reach", "0"], "--reach 0"),
])
def test_reach_settings_that_cannot_work_fail_before_any_actor(tmp_path, capsys, args, message):
    assert main(["eval", *args, "--limit", "3", "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


class EvaluationPool(ScriptedPool):
    """The evaluation fleet, scripted: a sampled episode of the listed (task index, sample) succeeds."""

    made = []

    def __init__(self, cfg, model):
        super().__init__(lambda task, episode_id, settings: _reach_index(episode_id) in {(1, 0), (1, 2)})
        self.cfg, self.model, self.closed = cfg, model, False
        EvaluationPool.made.append(self)

    def shutdown(self):
        self.closed = True


def _reach_index(episode_id: str) -> tuple[int, int]:
    task, sample = episode_id.removeprefix("reach-t").split("-g")
    return int(task), int(sample)


def test_reach_samples_the_greedy_failures_on_the_evaluation_fleet(tmp_path, monkeypatch, capsys):
    """The wiring: one fleet (greedy by default) serves the evaluation, then the failures are sampled on it with
    the training sampler; report.json gets ``reach`` and the command prints the table."""
    import toolmaster.evaluation.runner as runner
    import toolmaster.plan as plan
    import toolmaster.ray_utils as ray_utils
    import toolmaster.rollout.pool as pool_module

    def evaluate(cfg, out_dir, progress=None, pool=None):
        assert isinstance(pool, EvaluationPool) and not pool.calls  # the greedy evaluation first, on the fleet
        Path(out_dir).mkdir(parents=True)
        items = [{"task_id": f"t{i}", "grade": float(i == 0), "correct": i == 0} for i in range(3)]
        return {"metric": "success", "success": 1 / 3, "items": items}

    monkeypatch.setattr(runner, "evaluate", evaluate)
    monkeypatch.setattr(plan, "check_model_dir", lambda path, setting: None)
    monkeypatch.setattr(ray_utils, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(pool_module, "RolloutPool", EvaluationPool)
    EvaluationPool.made.clear()
    code = main(["eval", "--policy", "model", "--model", "M", "--limit", "3", "--reach", "4", "--out",
                 str(tmp_path / "out"), "rollout.generation.temperature=0.9"])
    assert code == 0
    (pool,) = EvaluationPool.made
    assert pool.model == "M" and pool.closed
    assert pool.cfg.rollout.generation.temperature == 0.0  # the fleet serves the greedy evaluation
    call = pool.calls[-1]
    assert call["episode_ids"] == [f"reach-t{i}-g{g}" for i in (1, 2) for g in range(4)]
    assert call["generation"]["temperature"] == 0.9  # the failures: the training sampler
    reach = json.loads((tmp_path / "out" / "report.json").read_text())["reach"]
    assert (reach["tasks"], reach["failures"], reach["reachable"], reach["sampled_success"]) == (3, 2, 1, 0.25)
    out = capsys.readouterr().out
    assert "sampled 4 times each" in out and "reachable" in out
    assert [line.split() for line in out.splitlines() if line.startswith("all")] == [
        ["all", "3", "0.333", "2", "1", "0.250"]]
