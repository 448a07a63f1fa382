"""One episode as the rollout pool returns it: outcome, counters and the exact token trajectory.

The driver and the advantage functions read these fields; an evaluation report stores ``to_dict()``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TokenSequence:
    """Token ids the policy saw, 1 where the policy sampled the token, and the sampler's logprobs."""
    token_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]


@dataclass
class RolloutRecord:
    episode_id: str
    task_id: str | None = None
    finish_reason: str = "error"  # answer | give_up | max_turns | context_limit | error
    correct: bool = False
    grade: float | None = None  # the environment's score in [0, 1]; None: not gradable
    answer: str | None = None
    judgments: dict = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # protocol.EpisodeStats.summary()
    rewards: dict = field(default_factory=dict)  # reward components and their weighted "total"
    timings: dict = field(default_factory=dict)  # seconds: episode, generate, tools, score
    error: dict | None = None  # {"kind": "<stage>_error", "message"}: the episode raised (agent.loop)
    turns: int = 0
    messages: list[dict] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)  # the whole episode (an agent's segments joined)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    policy_version: int = 0  # the weights version the episode started on
    worker: int | None = None
    node: str | None = None
    # a custom agent whose client broke its history's prefix: each part is trained as its own sequence
    segments: list[TokenSequence] = field(default_factory=list)
    worker_unhealthy: bool = False  # the worker's engine died: the pool replaces it and redoes the episode

    @property
    def failed(self) -> bool:
        """The episode raised (tool, grader, judge): its reward says nothing about the policy."""
        return self.error is not None

    @property
    def sequences(self) -> list[TokenSequence]:
        return self.segments or [TokenSequence(self.token_ids, self.loss_mask, self.logprobs)]

    @property
    def sampled_tokens(self) -> int:
        return sum(self.loss_mask)

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.segments:
            del out["segments"]
        del out["worker_unhealthy"]
        return out
