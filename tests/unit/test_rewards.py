from toolmaster.agent.episode import Episode
from toolmaster.config import RewardConfig
from toolmaster.rewards import score_episode


def test_weighted_components():
    ep = Episode("e", "t", [], [], answer="x", finish_reason="answer", correct=True, grade=1.0,
                 stats={"turns": 4, "trial_calls": 2, "parse_errors": 0})
    parts = score_episode(ep, RewardConfig(correctness=1.0, format=0.5, turn_cost=0.1, trial_cost=0.05))
    assert parts["correctness"] == 1.0 and parts["format"] == 0.0  # clean turns: no penalty, and no bonus
    assert abs(parts["total"] - (1.0 - 0.4 - 0.1)) < 1e-9
    sloppy = Episode("e", "t", [], [], answer="x", finish_reason="answer", correct=True, grade=1.0,
                     stats={"turns": 4, "trial_calls": 0, "parse_errors": 1})
    assert score_episode(sloppy, RewardConfig(format=0.5))["format"] == -0.25  # one turn of four malformed
    assert set(score_episode(ep, RewardConfig(format=0.0))) == {"correctness", "total"}


def test_wrong_answer_costs_more_than_running_out_of_turns():
    weights = RewardConfig(format=0.0, wrong_answer=0.5)
    wrong = Episode("e", "t", [], [], answer="x", finish_reason="answer", grade=0.0, stats={"turns": 3})
    timeout = Episode("e", "t", [], [], finish_reason="max_turns", grade=0.0, stats={"turns": 9})
    right = Episode("e", "t", [], [], answer="y", finish_reason="answer", correct=True, grade=1.0, stats={"turns": 4})
    unsure = Episode("e", "t", [], [], answer="z", finish_reason="answer", grade=0.5, stats={"turns": 4})
    assert score_episode(wrong, weights)["total"] == -0.5
    assert score_episode(timeout, weights)["total"] == 0.0
    assert score_episode(right, weights)["total"] == 1.0
    assert score_episode(unsure, weights)["wrong_answer"] == -0.5  # a judge's Unsure is half wrong
    assert "wrong_answer" not in score_episode(wrong, RewardConfig())  # off by default: weight 0
