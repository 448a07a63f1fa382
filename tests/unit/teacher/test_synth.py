import json

import datasets

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.protocol import parse_turn
from toolmaster.teacher.synth import synthesize


def test_synth_500_with_trials_and_corrections(tmp_path):
    cfg = build_config(TINY, ["synth.num_tasks=500"])
    summary = synthesize(cfg, tmp_path)
    assert summary["num_tasks"] == 500 and summary["kept"] + summary["dropped"] == 500
    # the teacher always answers, parseably and correctly: only the length filter drops (the default
    # 1024-token cap, measured in chars / 3 without a tokenizer: 121 of 500 dropped here, trials first)
    assert set(summary["dropped_reasons"]) <= {"too_long"} and summary["kept"] >= 350
    assert summary["mean_trial_calls"] >= 1 and summary["mean_corrections"] > 0.1
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    ds = datasets.load_from_disk(str(tmp_path))
    assert len(ds) == summary["kept"] and {"messages", "tools"} <= set(ds.column_names)
    row = ds[0]
    tools = json.loads(row["tools"])
    for msg in row["messages"]:
        if msg["role"] == "assistant":
            assert not parse_turn(msg["content"], tools).format_errors  # bare trial calls fail on purpose
    assert row["messages"][-1]["content"] == f"<answer>{row['reference']}</answer>"


def test_no_trial_writes_same_tasks_without_trials(tmp_path):
    with_trial = synthesize(build_config(TINY, ["synth.num_tasks=60"]), tmp_path / "a")
    without = synthesize(build_config(TINY, ["synth.num_tasks=60", "synth.trial=false"]), tmp_path / "b")
    a, b = datasets.load_from_disk(str(tmp_path / "a")), datasets.load_from_disk(str(tmp_path / "b"))
    assert without["mean_trial_calls"] == 0 and with_trial["mean_trial_calls"] > 0
    assert without["mean_corrections"] > 0  # without trials the quirks are met in execution
    assert set(b["task_id"]) >= set(a["task_id"]) - {None} or len(set(a["task_id"]) & set(b["task_id"])) > 40
    assert not any("<experience>" in m["content"] for r in b for m in r["messages"])


def test_filter_drops_overlong_trajectories(tmp_path):
    summary = synthesize(build_config(TINY, ["synth.num_tasks=30", "synth.max_tokens=100"]), tmp_path)
    assert summary["dropped_reasons"].get("too_long", 0) == 30 and summary["kept"] == 0
