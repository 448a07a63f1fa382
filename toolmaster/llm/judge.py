"""StableToolBench's pass judgment: an LLM labels each final answer Solved (1), Unsure (0.5) or Unsolved (0)."""
from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

LABEL_SCORES = {"solved": 1.0, "unsure": 0.5, "unsolved": 0.0}
_LABEL = re.compile(r"\b(unsolved|unsure|solved)\b", re.IGNORECASE)

JUDGE_PROMPT = (
    "You grade whether an assistant's final answer solves a user's query that needed tool calls. "
    "Solved: the answer gives everything the query asks for, concretely. Unsolved: it refuses, gives up, "
    "is empty, or misses what was asked. Unsure: it answers partly, or you cannot tell whether it is right. "
    "Think briefly, then end with one line: 'Label: Solved', 'Label: Unsure' or 'Label: Unsolved'."
)


def tool_trace(episode, chars_per_message: int = 300) -> str:
    """The episode's turns and observations after the prompt, each cut short, for the judge to read."""
    return "\n".join(m["content"][:chars_per_message] for m in episode.messages[2:]
                     if m["role"] in ("assistant", "tool"))


def parse_label(text: str) -> float | None:
    """The score of the last label in the judge's reply; None when it names none."""
    found = _LABEL.findall(text or "")
    return LABEL_SCORES[found[-1].lower()] if found else None


class PassJudge:
    def __init__(self, cfg):
        """``cfg`` is a JudgeConfig (an endpoint plus how many judgments to average)."""
        from toolmaster.llm.client import ChatClient

        self.client = ChatClient(cfg)
        self.runs = cfg.runs or 1

    def score(self, query: str, answer: str | None, tool_trace: str = "") -> float:
        """Mean score over ``runs`` judgments; no answer (no Finish) is Unsolved without asking."""
        if not answer:
            return 0.0
        user = f"Query: {query}\n\nTool calls and results (abridged):\n{tool_trace[:3000]}\n\nFinal answer: {answer}"
        scores = []
        for _ in range(self.runs):
            label = parse_label(self.client.chat([{"role": "system", "content": JUDGE_PROMPT},
                                                  {"role": "user", "content": user}]))
            if label is not None:
                scores.append(label)
        if not scores:
            log.warning("the judge named no label in %d judgment(s); counted Unsolved", self.runs)
            return 0.0
        return sum(scores) / len(scores)
