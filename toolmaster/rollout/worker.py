"""RolloutWorker: a Ray actor that owns one vLLM async engine and runs many multi-turn episodes at once."""
from __future__ import annotations

import asyncio
import os
import tempfile
import time


def untied_export(model_dir: str, out_dir: str) -> str:
    """vLLM's CPU reload path does not refresh a *tied* lm_head, so engines always serve an untied copy
    (config ``tie_word_embeddings=false`` and an explicit ``lm_head.weight``)."""
    import json
    import shutil

    config = json.load(open(os.path.join(model_dir, "config.json")))
    if not config.get("tie_word_embeddings"):
        return model_dir
    from safetensors.torch import load_file, save_file

    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(model_dir):
        if not name.endswith(".safetensors") and os.path.isfile(os.path.join(model_dir, name)):
            shutil.copy(os.path.join(model_dir, name), out_dir)
    state = {}
    for name in os.listdir(model_dir):
        if name.endswith(".safetensors"):
            state.update(load_file(os.path.join(model_dir, name)))
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    save_file(state, os.path.join(out_dir, "model.safetensors"))
    config["tie_word_embeddings"] = False
    json.dump(config, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    return out_dir


def _segment(traj) -> dict:
    return {"token_ids": traj.token_ids, "loss_mask": traj.loss_mask, "logprobs": traj.logprobs}


def _joined(segments: list):
    """One record's token fields over all of an agent's segments (metrics read these; the learner trains each
    segment as its own sequence, rollout record ``segments``)."""
    from toolmaster.rollout.trajectory import Trajectory

    if not segments:
        return None
    joined = Trajectory(segments[0].episode_id, policy_version=min(t.policy_version for t in segments))
    for t in segments:
        joined.token_ids += t.token_ids
        joined.loss_mask += t.loss_mask
        joined.logprobs += t.logprobs
        joined.generate_seconds += t.generate_seconds
    return joined


def _scratch_root() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class RolloutWorker:
    """An async Ray actor: each ``run_episode`` call is one coroutine, so up to the pool's per-worker limit
    of episodes share the engine at once."""

    def __init__(self, worker_id: int, model_dir: str, cfg_dict: dict, env_actors: list | None = None):
        from toolmaster.config import Config
        from toolmaster.envs import make_env
        from toolmaster.rollout.vllm_engine import VLLMEngine
        from toolmaster.tools.base import ToolRunner
        from toolmaster.weights import make_transport

        import ray

        self.worker_id = worker_id
        self.node = ray.get_runtime_context().get_node_id()
        self.cfg = Config.model_validate(cfg_dict)
        self.scratch = tempfile.mkdtemp(prefix=f"toolmaster-rollout-{worker_id}-", dir=_scratch_root())
        serve_dir = untied_export(model_dir, os.path.join(self.scratch, "served"))
        transport = self.cfg.rollout.weight_transport
        self.engine = VLLMEngine(serve_dir, self.cfg.rollout.engine, self.cfg.rollout.generation,
                                 seed=self.cfg.grpo.seed,  # episodes seed their own turns: any worker samples the same
                                 weight_transfer=transport if transport != "object_store" else None)
        from toolmaster.rollout import reaper
        self._reaper = reaper.watch(os.getpid())  # the engine's processes die with this worker, however it dies
        self.env = make_env(self.cfg.env)
        if env_actors:
            from toolmaster.envs.actor import RemoteToolRunner
            self.runner = RemoteToolRunner(env_actors, self.cfg.env.model_dump())
        else:
            self.runner = ToolRunner.from_config(self.cfg.sandbox)
        self.transport = make_transport(self.cfg.rollout.weight_transport)
        self.endpoint = None
        from toolmaster.envs.agent import EndpointEnv
        if isinstance(self.env, EndpointEnv):  # outside agent code (envs/agent.py) talks to this endpoint
            from toolmaster.rollout.endpoint import AgentEndpoint
            self.endpoint = AgentEndpoint(self.engine, self.env.endpoint_model)
        self.weights_dir = os.path.join(self.scratch, "weights")
        self.in_flight = self.peak_in_flight = self.completed = 0
        self._update_lock = asyncio.Lock()  # binds to the actor's event loop on first use

    def ready(self) -> int:
        return self.worker_id

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return self.node

    def stats(self) -> dict:
        return {"version": self.engine.version, "episodes_in_flight": self.in_flight,
                "peak_episodes_in_flight": self.peak_in_flight, "episodes_completed": self.completed}

    async def update_weights(self, handle: dict) -> float | None:
        """Serve ``handle``'s version unless a newer one is already served (None: the engine died). Updates
        run one at a time: a joining worker's catch-up can overlap the next publish."""
        from toolmaster.rollout.vllm_engine import EngineDead

        start = time.time()
        async with self._update_lock:
            if handle["version"] > self.engine.version:
                if handle.get("preloaded"):  # the engine started from this version's checkpoint
                    self.engine.version = handle["version"]
                else:
                    try:
                        await self.transport.apply(handle, self.engine, self.weights_dir)
                    except EngineDead:
                        return None  # the pool replaces this worker
        return time.time() - start

    async def weight_transfer_rpc(self, method: str, payload=None) -> None:
        await self.engine.weight_transfer(method, payload)

    async def run_episode(self, episode_id: str, task, generation: dict | None = None) -> dict:
        """One episode: its record with the trajectory, the policy version that sampled it and timings.
        ``generation`` (GenerationConfig fields) replaces the worker's sampling settings for this episode."""
        from toolmaster.agent.loop import run_episode
        from toolmaster.config import GenerationConfig

        if generation is not None:
            self.engine.set_episode_generation(episode_id, GenerationConfig(**generation))
        start = time.perf_counter()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        segments = None
        try:
            if self.endpoint is not None:  # a custom agent: it talks to this worker's endpoint
                from toolmaster.agent.custom import run_custom_episode
                ep, segments = await run_custom_episode(self.endpoint, self.env, task, episode_id,
                                                        GenerationConfig(**generation) if generation else None)
            else:
                ep = await run_episode(self.engine, task, self.env, self.runner, episode_id=episode_id,
                                       max_turns=self.cfg.env.max_turns, trial=self.cfg.synth.trial,
                                       reward_weights=self.cfg.rewards)
        finally:
            self.in_flight -= 1
        traj = self.engine.pop_trajectory(episode_id) if segments is None else _joined(segments)
        if ep.error is not None and self.engine.dead:  # not the episode's fault: the pool replaces this worker
            return {"episode_id": episode_id, "worker_unhealthy": True, "worker": self.worker_id,
                    "error": {"kind": "engine_dead", "message": ep.error["message"]}}
        if ep.error is not None:
            ep.rewards = {"total": self.cfg.rollout.failed_episode_reward}
        self.completed += 1
        seconds = time.perf_counter() - start
        generate = traj.generate_seconds if traj else 0.0
        extra = {"segments": [_segment(t) for t in segments]} if segments and len(segments) > 1 else {}
        return {**ep.to_record(), **extra, "messages": ep.messages,
                "token_ids": traj.token_ids if traj else [], "loss_mask": traj.loss_mask if traj else [],
                "logprobs": traj.logprobs if traj else [],
                "policy_version": traj.policy_version if traj else self.engine.version, "worker": self.worker_id,
                "node": self.node,
                "timings": {"episode": seconds, "generate": generate, **ep.timings}}

    async def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        return await self.engine.prompt_logprobs(token_ids)

    async def next_token_logprob(self, token_ids: list[int]) -> tuple[int, float]:
        return await self.engine.next_token_logprob(token_ids)

    def shutdown(self) -> None:
        import shutil
        self.runner.close()
        self.engine.shutdown()
        self._reaper.terminate()
        shutil.rmtree(self.scratch, ignore_errors=True)
