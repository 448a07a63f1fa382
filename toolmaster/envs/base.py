"""The environment interface: tasks (question, tools, reference) and how an episode is scored."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from toolmaster.config_base import ConfigError
from toolmaster.tools.spec import Tool


@dataclass(frozen=True)
class Task:
    id: str
    question: str
    tools: tuple[Tool, ...]
    reference: str
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def schemas(self) -> list[dict]:
        return [t.schema for t in self.tools]

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)


class Environment(ABC):
    name: str
    metric: str  # the benchmark's own metric name, e.g. "success" (0–1) or "accuracy" (0–100)
    splits: tuple[str, ...]

    @abstractmethod
    def tasks(self, split: str, num: int | None = None, start: int = 0) -> list[Task]:
        """Tasks of a split; ``num=None`` means all of a finite split."""

    def size(self, split: str) -> int | None:
        """Tasks in a split; None for a generated (unbounded) one."""
        self.require_split(split)
        return len(self.tasks(split))

    @abstractmethod
    def grade(self, task: Task, episode) -> float | None:
        """The episode's score in [0, 1] (1 = correct); None when it cannot be graded (no judge configured)."""

    def reward_grade(self, task: Task, episode) -> float | None:
        """The grade the training reward uses; the reported grade by default. A benchmark whose reporting
        rule is lenient (ToolHop credits the gold answer anywhere in the reply) trains on a strict one, or a
        policy learns to list candidates."""
        return episode.grade

    def judgments(self, task: Task, episode) -> dict[str, float]:
        """Scores beside the grade, each in [0, 1] (reported as ``<name>_rate``); none by default."""
        return {}

    def report_figures(self, tasks: list[Task], records: list[dict]) -> dict:
        """Figures an evaluation report adds beside the metric (e.g. the judge that graded it); none by default."""
        return {}

    metric_scale = 1.0  # 100.0 for benchmarks that report percentages

    def metric_value(self, grades: list[float]) -> float:
        return self.metric_scale * sum(grades) / len(grades) if grades else 0.0

    @staticmethod
    def _slice(pool: list[Task], num: int | None, start: int) -> list[Task]:
        end = len(pool) if num is None else min(len(pool), start + num)
        return pool[start:end]

    def require_split(self, split: str, setting: str = "split") -> None:
        """A config error naming ``setting`` when this environment has no ``split`` (the drivers check the
        configured splits before any actor starts)."""
        if split not in self.splits:
            raise ConfigError(f"{setting} = {split!r}: {self.name} has no such split; splits: {list(self.splits)}")


class RuleGradedEnvironment(Environment):
    """An environment graded by a correctness rule on the episode's outcome (right 1, wrong 0)."""

    @abstractmethod
    def is_correct(self, task: Task, final_message: str | None, answer: str | None,
                   last_observation: str | None) -> bool:
        """The environment's own correctness rule for a finished episode."""

    def grade(self, task: Task, episode) -> float:
        return float(self.is_correct(task, episode.final_message, episode.answer, episode.last_observation))
