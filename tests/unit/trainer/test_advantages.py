"""Advantages that cannot be earned without progress, informative groups and loss aggregation."""
from dataclasses import replace

import pytest

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.rollout.record import RolloutRecord
from toolmaster.trainer.advantages import episode_advantages, group_advantages, informative, loss_weights
from toolmaster.trainer.grpo import minibatches

WEIGHTS = build_config(TINY).rewards.model_dump()  # the defaults: correctness 1, format 0.1 (a penalty)


def _record(correct: float, trial_calls: int, turns: int, parse_errors: int = 0, answered: bool = True,
            weights: dict = WEIGHTS, **fields) -> RolloutRecord:
    """What a finished episode carries into the driver, scored by the real reward functions."""
    from toolmaster.agent.episode import Episode
    from toolmaster.rewards import score_episode

    ep = Episode("e", "t", [], [], answer="x" if answered else None,
                 finish_reason="answer" if answered else "max_turns", correct=bool(correct), grade=correct,
                 stats={"turns": turns, "trial_calls": trial_calls, "parse_errors": parse_errors})
    return RolloutRecord(**{"episode_id": "e", **fields}, correct=bool(correct), rewards=score_episode(ep, weights))


def test_skipping_trials_is_not_rewarded_when_correctness_is_equal():
    # all wrong: two episodes trial their tools for 8 turns, two answer at once without trials
    group = [_record(0.0, 3, 8, answered=False), _record(0.0, 2, 8, answered=False),
             _record(0.0, 0, 1), _record(0.0, 0, 1)]
    adv = episode_advantages(group, 4, WEIGHTS)
    assert adv == [0.0, 0.0, 0.0, 0.0]  # no shaping term pays for answering fast
    assert not informative(group, WEIGHTS)
    # all right, same picture
    assert episode_advantages([_record(1.0, 3, 6), _record(1.0, 0, 2)], 2, WEIGHTS) == [0.0, 0.0]


def test_shaping_keeps_its_scale_while_the_outcome_is_normalized():
    sloppy = [_record(0.0, 2, 4, parse_errors=2), _record(0.0, 2, 4)] * 2  # equal correctness, one malformed
    adv = episode_advantages(sloppy, 4, WEIGHTS)
    assert max(abs(a) for a in adv) <= 0.1 * 0.5 + 1e-9  # at most the format weight × the penalty, not ±1
    assert adv[0] < 0 < adv[1]
    mixed = [_record(1.0, 2, 4), _record(0.0, 2, 4), _record(0.0, 0, 1), _record(0.0, 0, 1)]
    adv = episode_advantages(mixed, 4, WEIGHTS)
    assert adv[0] > 1.5 and all(a < 0 for a in adv[1:])  # the outcome term is std-normalized
    assert informative(mixed, WEIGHTS)


def test_loss_weights_aggregate_by_token_or_by_sequence():
    lengths = [10, 30, 0]
    tok = loss_weights(lengths, "token_mean")
    assert sum(w * n for w, n in zip(tok, lengths)) == pytest.approx(1.0) and tok[0] == tok[1]
    seq = loss_weights(lengths, "sequence_mean")
    assert [w * n for w, n in zip(seq, lengths)] == pytest.approx([0.5, 0.5, 0.0])  # each episode weighs the same
    with pytest.raises(ValueError, match="aggregation"):
        loss_weights(lengths, "median")


def test_minibatches_split_the_batch_and_renormalize():
    batch = {"token_ids": [[1] * n for n in (3, 4, 5, 6)], "loss_mask": [[1] * n for n in (3, 4, 5, 6)],
             "logprobs": [[0.0] * n for n in (3, 4, 5, 6)], "advantages": [1.0, -1.0, 0.5, -0.5]}
    parts = minibatches(batch, 2, "token_mean", seed=0)
    assert len(parts) == 2 and sorted(len(p["token_ids"]) for p in parts) == [2, 2]
    assert sorted(a for p in parts for a in p["advantages"]) == sorted(batch["advantages"])
    for p in parts:
        assert sum(w * sum(m) for w, m in zip(p["loss_weights"], p["loss_mask"])) == pytest.approx(1.0)
    assert len(minibatches(batch, 1, "sequence_mean", seed=0)) == 1
    assert minibatches({k: [] for k in batch}, 2, "token_mean", seed=0) == []


def test_the_batch_reports_what_it_pushes():
    from toolmaster.trainer.grpo import build_batch

    records = [_record(c, 2, 4, token_ids=[1, 2, 3], loss_mask=[0, 1, 1], logprobs=[0.0, -0.1, -0.2],
                       episode_id=f"e{i}") for i, c in enumerate((1.0, 0.0, 0.0, 0.0))]
    full, info = build_batch(records, build_config(TINY, ["grpo.group_size=4"]).grpo, WEIGHTS)
    assert full["advantages"] == episode_advantages(records, 4, WEIGHTS) and full["advantages"][0] > 0
    # what the batch pushes: one success of four, so the three failures' token mass is as large as its own
    assert info["group_success"] == [0.25]
    assert info["advantage_token_mass_pos"] == pytest.approx(2 * full["advantages"][0])
    assert info["advantage_token_mass_neg"] == pytest.approx(-info["advantage_token_mass_pos"], abs=0.05)


def test_an_unsuccessful_episode_trains_only_up_to_its_first_failed_execution_call():
    from toolmaster.protocol.stats import EpisodeStats
    from toolmaster.trainer.advantages import mask_after_first_error

    stats = EpisodeStats()
    stats.record_turn(False, 0)
    stats.record_call("get_a", False)  # trial: a note follows
    stats.record_turn(True, 0)
    stats.record_call("get_a", False)  # the first failed execution call, in turn 1
    stats.record_turn(False, 0)
    stats.record_call("get_a", True)  # the retry that repeats the noted rule
    summary = stats.summary()
    assert summary["first_failed_execution_turn"] == 1 and summary["trial_calls"] == 1
    # prompt, turn 0, observation, turn 1, observation, turn 2
    mask = [0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1]
    record = RolloutRecord("e", loss_mask=mask, stats=summary, correct=False, finish_reason="max_turns")
    assert mask_after_first_error(record) == [0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0]
    assert mask_after_first_error(replace(record, correct=True)) == mask  # successes keep every turn
    # a wrong final answer keeps its turn: it decided the outcome
    answered = replace(record, finish_reason="answer", loss_mask=mask + [0, 0, 1, 1])
    assert mask_after_first_error(answered) == [0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    clean = EpisodeStats()
    clean.record_turn(False, 0)
    clean.record_call("get_a", True)
    assert clean.summary()["first_failed_execution_turn"] is None
    assert mask_after_first_error(replace(record, stats=clean.summary())) == mask  # never failed a call


def test_episode_credit_names_each_episodes_advantage_and_trained_turns():
    from toolmaster.trainer.advantages import episode_credit

    records = [RolloutRecord("a", correct=True, finish_reason="answer", rewards={"total": 0.0}),
               RolloutRecord("b", finish_reason="answer", rewards={"total": 0.0}),
               RolloutRecord("c", finish_reason="answer", rewards={"total": 0.0})]
    # "b" trained only its first turn (failure credit); "c" was dropped (its group was not informative)
    batch = {"episode_ids": ["a", "b"], "advantages": [1.0, -1.0],
             "loss_mask": [[0, 1, 1, 0, 1], [0, 1, 1, 0, 0]]}
    out = {e["episode_id"]: e for e in episode_credit(records, batch)}
    assert (out["a"]["advantage"], out["a"]["trained_turns"]) == (1.0, [0, 1])
    assert (out["b"]["advantage"], out["b"]["trained_turns"]) == (-1.0, [0])
    assert (out["c"]["advantage"], out["c"]["trained_turns"]) == (None, [])


def test_group_advantages_and_dr_grpo():
    adv = group_advantages([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], 4)
    assert abs(sum(adv[:4])) < 1e-9 and adv[0] > 0 > adv[1]
    assert adv[4:] == [0.0] * 4  # a zero-variance group has no signal
    dr = group_advantages([1.0, 0.0, 1.0, 1.0], 4, std_normalize=False)
    assert dr == [0.25, -0.75, 0.25, 0.25]


def test_group_advantages_equal_torch_at_the_learners_float32():
    """The driver computes advantages without torch; the learner takes them as float32. Torch's float64
    sum order follows the CPU's vector width, so the two may differ in float64's last bit, and after the
    float32 cast at most by one float32 step."""
    import random

    import torch

    rng = random.Random(0)
    for _ in range(2000):
        g = rng.choice([2, 4, 8, 16])
        rewards = [rng.choice([0.0, 1.0, 0.1, 1.1]) + rng.random() * rng.choice([0.0, 0.05, 1.0]) for _ in range(g)]
        for std in (True, False):
            group = torch.tensor(rewards, dtype=torch.float64)
            ref = group - group.mean()
            if std:
                ref = ref / (group.std(unbiased=False) + 1e-6)
            ours = torch.tensor(group_advantages(rewards, g, std), dtype=torch.float32)
            ref = ref.to(torch.float32)
            step = torch.finfo(torch.float32).eps * ref.abs().clamp(min=1e-6)
            assert ((ours - ref).abs() <= step).all(), (rewards, std)


def test_the_advantage_code_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, toolmaster.trainer.advantages; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_context_limit_episodes_are_trained_or_masked_as_configured():
    from toolmaster.trainer.grpo import build_batch

    records = [_record(c, 2, 4, token_ids=[1, 2, 3], loss_mask=[0, 1, 1], logprobs=[0.0, -0.1, -0.2],
                       episode_id=f"e{i}") for i, c in enumerate((1.0, 0.0, 0.0, 0.0))]
    records[3] = replace(records[3], finish_reason="context_limit")
    trained, _ = build_batch(records, build_config(TINY, ["grpo.group_size=4"]).grpo, WEIGHTS)
    masked, _ = build_batch(records, build_config(TINY, ["grpo.group_size=4", "grpo.context_limit=mask"]).grpo,
                            WEIGHTS)
    assert trained["episode_ids"] == ["e0", "e1", "e2", "e3"]
    assert masked["episode_ids"] == ["e0", "e1", "e2"]  # no gradient from the cut episode ...
    assert masked["advantages"] == trained["advantages"][:3]  # ... which still counts in its group
