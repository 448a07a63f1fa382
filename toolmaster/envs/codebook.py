"""codebook: an RL sanity check whose best policy is known.

Every task lists the same K coded answers in a new order ("Answer with one of these codes: k31, k07, …");
exactly one of them — the same one in every task, fixed by the seed — is rewarded. A policy that answers
uniformly among the listed codes succeeds 1/K of the time; the optimum is 1.0. GRPO from such a policy
must find it: a regression test that loss, advantages, loss masks and weight sync together climb.
"""
from __future__ import annotations

import random

from toolmaster.envs.base import RuleGradedEnvironment, Task
from toolmaster.envs.toolworld import normalize_answer
from toolmaster.envs.toolworld.names import distinct_codes


class Codebook(RuleGradedEnvironment):
    name = "codebook"
    metric = "success"
    splits = ("train", "val", "test")

    def __init__(self, cfg):
        self.cfg = cfg
        self.codes = distinct_codes(random.Random(f"codebook:{cfg.seed}"), "train", "k", 2, cfg.num_codes)
        self.rewarded = self.codes[0]

    def tasks(self, split: str = "train", num: int | None = None, start: int = 0) -> list[Task]:
        self.require_split(split)
        if num is None:
            raise ValueError("codebook is unlimited: pass the number of tasks")
        out = []
        for i in range(start, start + num):
            order = list(self.codes)
            random.Random(f"codebook:{self.cfg.seed}:{split}:{i}").shuffle(order)
            out.append(Task(id=f"codebook-{split}-{self.cfg.seed}-{i}", tools=(), reference=self.rewarded,
                            question="Answer with one of these codes: " + ", ".join(order) + ".",
                            metadata={"split": split, "codes": order}))
        return out

    def size(self, split: str) -> None:
        self.require_split(split)
        return None

    def is_correct(self, task, final_message, answer, last_observation) -> bool:
        return answer is not None and normalize_answer(answer) == normalize_answer(task.reference)
