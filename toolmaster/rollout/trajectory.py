"""The exact token record of one episode, as the learner consumes it."""
from __future__ import annotations

from dataclasses import dataclass, field

from toolmaster.protocol.template import ChatFormat, prompt_delta


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
    generate_seconds: float = 0.0  # time spent waiting on the engine
    turns: int = 0  # assistant turns sampled so far (each seeds its own sampling)
    last_finish: str = "stop"  # why the engine ended the last turn: "stop" (end token or stop string) or "length"

    def extend(self, ids: list[int], sampled: bool, logprobs: list[float] | None = None) -> None:
        self.token_ids.extend(ids)
        self.loss_mask.extend([1 if sampled else 0] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))

    def add_prompt(self, tokenizer, chat: ChatFormat, messages: list[dict], tools: list[dict] | None,
                   room: int | None = None) -> bool:
        """Append what the policy did not sample before its next turn (loss mask 0): the whole prompt first,
        then, after each sampled turn, from its end-of-turn token through the next generation prompt.
        When that would leave fewer than ``room`` tokens, append nothing and return False: the record ends
        at its last sampled turn, with no observation the policy never answered."""
        text = prompt_delta(chat, messages, tools, continuing=bool(self.token_ids))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if room is not None and len(self.token_ids) + len(ids) > room:
            return False
        self.extend(ids, sampled=False)
        return True
