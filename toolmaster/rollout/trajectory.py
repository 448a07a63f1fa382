"""The exact token record of one episode, as the learner consumes it."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Trajectory:
    """``token_ids`` is the sequence the policy saw and wrote; ``loss_mask`` is 1 exactly on tokens the policy
    sampled (0 on the prompt, tool observations and any token the loop added); ``logprobs`` holds the
    sampling logprob of each masked token (0.0 elsewhere)."""

    episode_id: str
    token_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    policy_version: int = 0
    rendered_chars: int = 0  # how much of the rendered conversation the ids cover
    generate_seconds: float = 0.0  # time spent waiting on the engine
    turns: int = 0  # assistant turns sampled so far (each seeds its own sampling)
    last_finish: str = "stop"  # why the engine ended the last turn: "stop" (end token or stop string) or "length"

    def extend(self, ids: list[int], sampled: bool, logprobs: list[float] | None = None) -> None:
        self.token_ids.extend(ids)
        self.loss_mask.extend([1 if sampled else 0] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))
