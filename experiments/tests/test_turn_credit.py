"""experiments/turn_credit.py: the kind of each assistant turn, and the advantage each kind carried."""
import json

import pytest

from experiments import turn_credit


def _call(args):
    return "<tool_call>\n" + json.dumps({"name": "get_r1", "arguments": args}) + "\n</tool_call>"


MESSAGES = [
    {"role": "system", "content": "..."}, {"role": "user", "content": "What is the r1 of e1?"},
    {"role": "assistant", "content": _call({})}, {"role": "tool", "content": "error: missing required argument 'p1'"},
    {"role": "assistant", "content": "<experience>p1 needs '-s1'.</experience>\n" + _call({"p1": "e1"})},
    {"role": "tool", "content": "error: ValueError: bad p1 'e1'"},
    {"role": "assistant", "content": _call({"p1": "e1"})},
    {"role": "tool", "content": "error: ValueError: bad p1 'e1'"},
    {"role": "assistant", "content": _call({"p1": "e1-s1"})}, {"role": "tool", "content": '{"r1": "e2"}'},
    {"role": "assistant", "content": "<answer>e2</answer>"},
]


def test_turn_kinds_follow_the_trial_and_execution_phases():
    assert turn_credit.turn_kinds(MESSAGES) == ["trial", "execution failed", "after a failure: repeated",
                                                "after a failure: fixed", "answer"]
    garbled = MESSAGES[:2] + [{"role": "assistant", "content": "<experience>x</experience> get_r1("}]
    assert turn_credit.turn_kinds(garbled) == ["malformed"]


def test_credit_sums_the_advantage_of_trained_turns_by_outcome(tmp_path):
    episodes = [{"messages": MESSAGES, "advantage": 1.5, "trained_turns": [0, 1, 2, 3, 4], "correct": True},
                {"messages": MESSAGES[:6], "advantage": -0.5, "trained_turns": [0, 1], "correct": False},
                {"messages": MESSAGES, "advantage": None, "trained_turns": [], "correct": False}]  # not trained
    (tmp_path / "rollouts").mkdir()
    (tmp_path / "rollouts" / "step-000001.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    table = turn_credit.credit(str(tmp_path))
    assert table["trial"] == [2, 1.5, -0.5] and table["execution failed"] == [2, 1.5, -0.5]
    assert table["after a failure: fixed"] == [1, 1.5, 0.0] and table["answer"] == [1, 1.5, 0.0]
    with pytest.raises(SystemExit, match="save_rollouts"):
        turn_credit.credit(str(tmp_path / "elsewhere"))
