"""Toolworld curriculum: the driver picks the difficulty of the next training tasks from recent success.

GRPO learns only from groups whose outcome varies; a policy that solves everything or nothing gets no
signal. The curriculum keeps the recent training success inside ``[target_low, target_high]`` by moving
one level along ``env.toolworld.curriculum.levels`` (easiest first; each level sets hops, distractors and
quirk rate) after ``window`` steps outside the band. Decisions use only steps taken at the current level.
"""
from __future__ import annotations

import dataclasses

from toolmaster.envs.toolworld.generator import generate_task


class Curriculum:
    def __init__(self, toolworld_cfg, state: dict | None = None):
        self.base, self.cfg = toolworld_cfg, toolworld_cfg.curriculum
        self.level = self.cfg.start_level
        self.recent: list[float] = []
        if state:
            self.level, self.recent = state["level"], list(state["recent"])

    def knobs(self) -> dict:
        level = self.cfg.levels[self.level].model_dump(exclude_none=True)
        knobs = {**self.base.model_dump(include={"min_hops", "max_hops", "distractors", "quirk_rate"}), **level}
        knobs["min_hops"] = min(knobs["min_hops"], knobs["max_hops"])
        return knobs

    def tasks(self, split: str, num: int, start: int) -> list:
        """Tasks at the current level; ids carry the level (the same index at two levels is two tasks)."""
        cfg = self.base.model_copy(update=self.knobs())
        return [dataclasses.replace(t, id=f"{t.id}-L{self.level}")
                for t in (generate_task(cfg, split, i) for i in range(start, start + num))]

    def update(self, success: float) -> dict:
        """Record one step's training success; move a level when the window's mean leaves the band."""
        self.recent = (self.recent + [success])[-self.cfg.window:]
        before = self.level
        if len(self.recent) == self.cfg.window:
            mean = sum(self.recent) / len(self.recent)
            if mean > self.cfg.target_high and self.level + 1 < len(self.cfg.levels):
                self.level += 1
            elif mean < self.cfg.target_low and self.level > 0:
                self.level -= 1
        if self.level != before:
            self.recent = []
        return {"curriculum/level": self.level, "curriculum/moved": self.level - before,
                **{f"curriculum/{k}": v for k, v in self.knobs().items()}}

    def state(self) -> dict:
        return {"level": self.level, "recent": self.recent}
