"""Reward functions: plain functions of a finished episode, combined with weights from config.

Correctness is graded by the environment (``Episode.grade`` in [0, 1], e.g. a judge's Solved 1 / Unsure 0.5 /
Unsolved 0); the others read the episode's counters. Correctness is the *outcome*; the others are
*shaping* terms, which GRPO centres within a group but never rescales (toolmaster.trainer.advantages), so
their weight is their true size next to correctness.
"""
from __future__ import annotations

OUTCOME = "correctness"


def correctness(episode) -> float:
    grade = episode.reward_grade if episode.reward_grade is not None else episode.grade
    return float(grade or 0.0)


def format_penalty(episode) -> float:
    """Minus the share of turns that did not parse (0 for a clean episode, down to -1).

    A penalty on malformed turns only, never a bonus for answering: a bonus for "ended with an answer" is
    earned by answering at once without trials, and when correctness is equal within a group GRPO turns
    that bonus into the whole advantage (measured: trial calls 1.8 → 0.06 per episode, success unchanged).
    """
    turns = episode.stats.get("turns", 0)
    return -min(1.0, episode.stats.get("parse_errors", 0) / turns) if turns else 0.0


def turn_cost(episode) -> float:
    return -float(episode.stats.get("turns", 0))


def trial_cost(episode) -> float:
    return -float(episode.stats.get("trial_calls", 0))


def verbosity_cost(episode) -> float:
    """Minus the assistant's characters in thousands: a brevity pressure (DAPO-style length shaping)."""
    return -sum(len(m["content"]) for m in episode.messages if m["role"] == "assistant") / 1000.0


REWARD_FUNCTIONS = {"verbosity_cost": verbosity_cost, "correctness": correctness, "format": format_penalty,
                    "turn_cost": turn_cost, "trial_cost": trial_cost}


def score_episode(episode, weights=None) -> dict:
    """Each weighted component and their sum under ``total``; ``weights`` is a RewardConfig or a dict."""
    if weights is None:
        weights = {"correctness": 1.0}
    elif not isinstance(weights, dict):
        weights = weights.model_dump()
    parts = {name: REWARD_FUNCTIONS[name](episode) for name, w in weights.items() if w}
    parts["total"] = sum(weights[name] * value for name, value in parts.items())
    return parts
