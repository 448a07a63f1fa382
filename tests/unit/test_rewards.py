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
