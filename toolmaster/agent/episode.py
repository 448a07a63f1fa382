"""The record of one episode: the conversation, its outcome and its counters."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Episode:
    episode_id: str
    task_id: str
    messages: list[dict]
    tools: list[dict]
    answer: str | None = None
    finish_reason: str = "running"  # answer | give_up | max_turns | context_limit | error | running
    last_observation: str | None = None
    stats: dict = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # names of the well-formed tool calls, in order
    correct: bool = False
    grade: float | None = None  # the environment's score in [0, 1]; None: not gradable (no judge)
    reward_grade: float | None = None  # the score the correctness reward uses (Environment.reward_grade)
    judgments: dict = field(default_factory=dict)  # further scores in [0, 1] by name, e.g. {"success": 0.5}
    rewards: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # seconds: tools (tool calls), score (correctness + rewards)
    error: dict | None = None  # an exception ended it: {"kind": "<stage>_error", "message"}; see agent.loop

    @property
    def done(self) -> bool:
        return self.finish_reason != "running"

    @property
    def final_message(self) -> str | None:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "assistant"), None)

    def to_record(self) -> dict:
        return {"episode_id": self.episode_id, "task_id": self.task_id, "answer": self.answer,
                "finish_reason": self.finish_reason, "correct": self.correct, "grade": self.grade,
                "judgments": self.judgments,
                "calls": self.calls, "stats": self.stats,
                "rewards": self.rewards, "timings": self.timings, "error": self.error,
                "turns": sum(m["role"] == "assistant" for m in self.messages)}
