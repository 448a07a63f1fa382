"""toolworld: the embedded default environment (see generator for how tasks are built)."""
from __future__ import annotations

from toolmaster.envs.base import RuleGradedEnvironment, Task
from toolmaster.envs.toolworld.generator import generate_task


def normalize_answer(text: str | None) -> str:
    return (text or "").strip().strip("'\"").strip().lower()


class ToolWorld(RuleGradedEnvironment):
    name = "toolworld"
    metric = "success"
    splits = ("train", "val", "test", "test_ood")

    def __init__(self, cfg):
        self.cfg = cfg

    def tasks(self, split: str = "train", num: int | None = None, start: int = 0) -> list[Task]:
        self.require_split(split)
        if num is None:
            raise ValueError("toolworld is unlimited: pass the number of tasks")
        return [generate_task(self.cfg, split, i) for i in range(start, start + num)]

    def size(self, split: str) -> None:
        self.require_split(split)
        return None  # generated on demand

    def is_correct(self, task, final_message, answer, last_observation) -> bool:
        return answer is not None and normalize_answer(answer) == normalize_answer(task.reference)


__all__ = ["ToolWorld", "normalize_answer"]
