"""Policies for the agent loop: reference answers, empty answers, and a model served by vLLM.

(The Ray trainer moves model rollouts onto vLLM rollout-worker actors; this in-process engine is the
simple local path.)
"""
from __future__ import annotations


class OraclePolicy:
    """Answers every task with its reference answer at once (checks the scoring path)."""

    def generate(self, requests) -> list[str]:
        return [f"<answer>{r.task.reference}</answer>" for r in requests]


class EmptyPolicy:
    """Answers nothing (the floor of every metric)."""

    def generate(self, requests) -> list[str]:
        return ["<answer></answer>" for _ in requests]


def make_policy(name: str, model_dir: str | None = None, generation=None, seed: int = 0):
    if name == "oracle":
        return OraclePolicy()
    if name == "empty":
        return EmptyPolicy()
    if name == "model":
        if not model_dir:
            raise ValueError("policy 'model' needs a model directory (--model DIR or eval.model=DIR)")
        from toolmaster.rollout.vllm_engine import VLLMPolicy
        return VLLMPolicy(model_dir, generation, seed)
    raise ValueError(f"unknown policy {name!r}; choose model, oracle or empty")
