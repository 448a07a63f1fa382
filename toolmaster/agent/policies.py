"""Reference policies for the agent loop: the reference answer, and no answer (the metric's floor).

A model policy is a vLLM engine (rollout.vllm_engine), run on rollout-worker actors."""
from __future__ import annotations


class OraclePolicy:
    """Answers every task with its reference answer at once (checks the scoring path)."""

    def generate(self, requests) -> list[str]:
        return [f"<answer>{r.task.reference}</answer>" for r in requests]


class EmptyPolicy:
    """Answers nothing (the floor of every metric)."""

    def generate(self, requests) -> list[str]:
        return ["<answer></answer>" for _ in requests]


def make_policy(name: str):
    """The in-process reference policies; a model is evaluated on the rollout fleet (evaluation.runner)."""
    if name == "oracle":
        return OraclePolicy()
    if name == "empty":
        return EmptyPolicy()
    raise ValueError(f"unknown in-process policy {name!r}; choose oracle or empty (a model runs on rollout workers)")
