"""From episode rewards to what the learner weighs: advantages, informative groups, loss weights.

Plain functions of the driver's records (rewards and token lists, never model tensors).

Why the outcome and the shaping terms are normalized differently: with group-std normalization any
reward term that varies while correctness does not becomes a full-size advantage (a 0.1 format bonus in a
group that is all wrong is normalized to ±1). Measured here, GRPO then optimized the bonus — turns 8.5 →
2.1, trial calls 1.8 → 0.06, success unchanged. So only the outcome (correctness) is divided by its group
std; shaping terms are centred within the group and keep their configured size, so a group whose
correctness does not vary gets advantages no larger than the shaping weights.
"""
from __future__ import annotations

import math

from toolmaster.rewards import OUTCOME
from toolmaster.rollout.record import RolloutRecord


def group_advantages(rewards: list[float], group_size: int, std_normalize: bool = True,
                     eps: float = 1e-6) -> list[float]:
    """(r − mean)/(std + ε) within each consecutive group of ``group_size``, population std (no std:
    Dr.GRPO). Float64, as torch's two-pass std computes it; the learner takes the result in float32."""
    out = []
    for lo in range(0, len(rewards), group_size):
        group = rewards[lo: lo + group_size]
        mean = sum(group) / len(group)
        centered = [r - mean for r in group]
        if std_normalize:
            std = math.sqrt(sum(c * c for c in centered) / len(group))
            centered = [c / (std + eps) for c in centered]
        out.extend(centered)
    return out


def _outcome(record: RolloutRecord, weights: dict) -> float:
    return weights.get(OUTCOME, 0.0) * record.rewards.get(OUTCOME, 0.0)


def _live(records: list[RolloutRecord], lo: int, group_size: int, include_failed: bool) -> list[int]:
    return [i for i in range(lo, min(lo + group_size, len(records))) if include_failed or not records[i].failed]


def episode_advantages(records: list[RolloutRecord], group_size: int, weights: dict, std_normalize: bool = True,
                       include_failed: bool = False) -> list[float]:
    """Per episode: the group-normalized outcome plus the group-centred (unscaled) shaping terms. Failed
    episodes get 0 and take no part in their group's statistics unless ``include_failed``."""
    out = [0.0] * len(records)
    for lo in range(0, len(records), group_size):
        idx = _live(records, lo, group_size, include_failed)
        outcome = [_outcome(records[i], weights) for i in idx]
        shaping = [records[i].rewards["total"] - o for i, o in zip(idx, outcome)]
        a = group_advantages(outcome, len(idx), std_normalize) if idx else []
        s = group_advantages(shaping, len(idx), std_normalize=False) if idx else []
        for i, x, y in zip(idx, a, s):
            out[i] = x + y
    return out


def informative(records: list[RolloutRecord], weights: dict, include_failed: bool = False) -> bool:
    """A group teaches something when its outcome varies (DAPO's dynamic-sampling criterion): in a group
    all right or all wrong the outcome advantage is zero and only shaping would be left."""
    outcomes = [_outcome(records[i], weights) for i in _live(records, 0, len(records), include_failed)]
    return bool(outcomes) and max(outcomes) > min(outcomes)


def mask_after_first_error(record: RolloutRecord) -> list[int]:
    """The loss mask of an unsuccessful episode ended at its first failed execution call: the turns after it keep no
    gradient. Why: an agent whose call failed retries, and its retries repeat the right moves (the rule it
    noted, the tool it needs) with the wrong detail. With the whole failure trained on, a rule applied once in
    a success and five times in a failure gets a net push *down*, and the policy unlearns what it got right
    (measured: 1-hop/prefix tasks 0.23 -> 0.12 under GRPO, docs/grpo.md "Failure credit"). Up to its first
    failed call an unsuccessful episode differs from the successes only where it went wrong. A final wrong
    answer keeps its gradient too: it decides the outcome, and without it answering is only ever pushed up
    (measured: wrong answers 1 -> 10 of 200). Successes, episodes that never failed an execution call and
    multi-segment records keep their whole mask."""
    turn = record.stats.get("first_failed_execution_turn")
    if record.correct or turn is None or record.segments:
        return record.loss_mask
    turns = assistant_turns(record.loss_mask)
    last = max(turns, default=-1)
    answered = record.finish_reason == "answer"
    return [m if t <= turn or (answered and t == last) else 0 for m, t in zip(record.loss_mask, turns)]


def assistant_turns(loss_mask: list[int]) -> list[int]:
    """Per token, the assistant turn it belongs to (−1 before the first): each run of sampled tokens is one
    turn, since observations (mask 0) separate the turns."""
    out, turn = [], -1
    for i, m in enumerate(loss_mask):
        turn += bool(m and (i == 0 or not loss_mask[i - 1]))
        out.append(turn)
    return out


def episode_credit(records: list[RolloutRecord], batch: dict) -> list[dict]:
    """What the step did with each sampled episode, for ``grpo.save_rollouts``: the conversation, its
    rewards and counters, and — when it was trained — its advantage and the assistant turns that carried
    gradient (after ``grpo.failure_credit``). Episodes dropped by filtering or failed have advantage None."""
    trained = {}
    for eid, adv, mask in zip(batch["episode_ids"], batch["advantages"], batch["loss_mask"]):
        turns = trained.setdefault(eid, (adv, set()))[1]
        turns.update(t for t, m in zip(assistant_turns(mask), mask) if m)
    out = []
    for r in records:
        adv, turns = trained.get(r.episode_id, (None, set()))
        out.append({"episode_id": r.episode_id, "task_id": r.task_id, "policy_version": r.policy_version,
                    "advantage": adv, "trained_turns": sorted(turns), "correct": r.correct,
                    "finish_reason": r.finish_reason, "rewards": r.rewards, "stats": r.stats,
                    "error": r.error, "messages": r.messages})
    return out


def loss_weights(lengths: list[int], aggregation: str) -> list[float]:
    """Per-sequence weights of the summed per-token loss, so that the batch's loss is

    - ``token_mean``: the mean over every sampled token of the batch (DAPO); a long episode weighs more;
    - ``sequence_mean``: the mean over sequences of each one's token mean (GRPO as published); each
      episode weighs the same, so long failed episodes cannot outweigh short correct ones.
    """
    total = sum(lengths)
    if total == 0:
        return [0.0] * len(lengths)
    if aggregation == "token_mean":
        return [1.0 / total] * len(lengths)
    if aggregation == "sequence_mean":
        live = sum(1 for n in lengths if n)
        return [1.0 / (live * n) if n else 0.0 for n in lengths]
    raise ValueError(f"unknown loss aggregation {aggregation!r}")
