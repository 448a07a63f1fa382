"""RolloutWorker: a Ray actor that owns one vLLM async engine and runs many multi-turn episodes at once."""
from __future__ import annotations

import asyncio
import os
import tempfile
import time

from toolmaster.rollout.engine_args import weight_transfer_backend
from toolmaster.rollout.record import RolloutRecord, TokenSequence
from toolmaster.rollout.settings import EpisodeSettings


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
        import ray

        from toolmaster.config import Config
        from toolmaster.rollout.vllm_engine import VLLMEngine
        from toolmaster.weights import make_transport

        self.worker_id = worker_id
        self.node = ray.get_runtime_context().get_node_id()
        self.cfg = Config.model_validate(cfg_dict)
        self.scratch = tempfile.mkdtemp(prefix=f"toolmaster-rollout-{worker_id}-", dir=_scratch_root())
        serve_dir = untied_export(model_dir, os.path.join(self.scratch, "served"))
        self.engine = VLLMEngine(serve_dir, self.cfg.rollout.engine, self.cfg.rollout.generation,
                                 seed=self.cfg.grpo.seed,  # episodes seed their own turns: any worker samples the same
                                 weight_transfer=weight_transfer_backend(self.cfg))
        from toolmaster.rollout import reaper
        self._reaper = reaper.watch(os.getpid())  # the engine's processes die with this worker, however it dies
        # tools run on the pool's ToolEnv actors (one runner per environment, since the actors score with
        # the environment's config), or without them in this worker's own sandbox pool
        self.env_actors = env_actors or []
        self._local_runner = None
        if not self.env_actors:  # built here, not on the first episode: sandbox start-up stays off the rollout path
            self._local()
        self._envs: dict[str, tuple] = {}  # settings.env_key -> (environment, tool runner)
        self.transport = make_transport(self.cfg.rollout.weight_transport)
        self._groups: dict = {}  # transport name -> its group transport (NCCL, gloo_group)
        self.endpoint = None  # started for the first episode of an endpoint environment (envs/agent.py)
        self.weights_dir = os.path.join(self.scratch, "weights")
        self.in_flight = self.peak_in_flight = self.completed = 0
        self._update_lock = asyncio.Lock()  # binds to the actor's event loop on first use

    def ready(self) -> int:
        return self.worker_id

    def version(self) -> int:
        """The version the engine serves (what a worker that joins under a group transport reports)."""
        return self.engine.version

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

    def _group(self, name: str):
        if name not in self._groups:
            from toolmaster.weights import make_transport
            self._groups[name] = make_transport(name)
        return self._groups[name]

    async def join_group(self, transport: str, spec: dict, rank: int) -> None:
        """Join a group transport's weight group as ``rank`` (weights/group.py builds it)."""
        await self._group(transport).join(spec, rank, self.engine)

    async def receive_weights(self, transport: str, meta: list, version: int) -> int | None:
        """Take part in the group's broadcast of ``version``; the version served afterwards (None: the
        engine died). The version moves only once the weights are loaded."""
        from toolmaster.rollout.vllm_engine import EngineDead

        async with self._update_lock:
            try:
                await self._group(transport).receive(meta, version, self.engine, self.weights_dir)
            except EngineDead:
                return None
        return self.engine.version

    async def leave_group(self, transport: str) -> None:
        await self._group(transport).leave(self.engine)

    def _env(self, settings: EpisodeSettings) -> tuple:
        """The environment (and its tool runner) an episode's settings name; built once per worker."""
        found = self._envs.get(settings.env_key)
        if found is None:
            from toolmaster.envs import make_env
            from toolmaster.envs.actor import RemoteToolRunner

            env = make_env(settings.env)
            runner = (RemoteToolRunner(self.env_actors, settings.env.model_dump()) if self.env_actors
                      else self._local())
            found = self._envs[settings.env_key] = (env, runner)
        return found

    def _local(self):
        if self._local_runner is None:
            from toolmaster.tools.base import ToolRunner
            self._local_runner = ToolRunner.from_config(self.cfg.sandbox)
        return self._local_runner

    def _endpoint(self, env):
        if self.endpoint is None:
            from toolmaster.rollout.endpoint import AgentEndpoint
            self.endpoint = AgentEndpoint(self.engine, env.endpoint_model)
        return self.endpoint

    async def run_episode(self, episode_id: str, task, settings: EpisodeSettings) -> RolloutRecord:
        """One episode: its record with the trajectory, the policy version that sampled it and timings."""
        from toolmaster.agent.loop import run_episode
        from toolmaster.envs.agent import EndpointEnv

        env, runner = self._env(settings)
        self.engine.set_episode_generation(episode_id, settings.generation, seed=settings.seed)
        start = time.perf_counter()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        segments = None
        try:
            if isinstance(env, EndpointEnv):  # a custom agent: it talks to this worker's endpoint
                from toolmaster.agent.custom import run_custom_episode
                ep, segments = await run_custom_episode(self._endpoint(env), env, task, episode_id,
                                                        settings.generation, settings.client_sampling)
            else:
                ep = await run_episode(self.engine, task, env, runner, episode_id=episode_id,
                                       max_turns=settings.env.max_turns, trial=settings.trial,
                                       reward_weights=settings.rewards, system_prompt=settings.env.system_prompt)
        finally:
            self.in_flight -= 1
        traj = self.engine.pop_trajectory(episode_id)  # also drops the episode's sampling settings
        if segments is not None:
            traj = _joined(segments)
        if ep.error is not None and self.engine.dead:  # not the episode's fault: the pool replaces this worker
            return RolloutRecord(episode_id, worker=self.worker_id, worker_unhealthy=True,
                                 error={"kind": "engine_dead", "message": ep.error["message"]})
        if ep.error is not None:
            ep.rewards = {"total": settings.failed_episode_reward}
        self.completed += 1
        seconds = time.perf_counter() - start
        generate = traj.generate_seconds if traj else 0.0
        many = segments and len(segments) > 1
        return RolloutRecord(
            **{**ep.to_record(), "timings": {"episode": seconds, "generate": generate, **ep.timings}},
            messages=ep.messages, token_ids=traj.token_ids if traj else [], loss_mask=traj.loss_mask if traj else [],
            logprobs=traj.logprobs if traj else [],
            policy_version=traj.policy_version if traj else self.engine.version, worker=self.worker_id,
            node=self.node,
            segments=[TokenSequence(t.token_ids, t.loss_mask, t.logprobs) for t in segments] if many else [])

    async def reset(self, handle: dict, env_actors: list, transport: str) -> None:
        """Serve ``handle``'s weights as its version whatever is served now (a shared fleet starting the
        next run from its base model), run tools on ``env_actors`` and take weights by ``transport`` (a
        shared fleet's runs may differ in it); counters start again."""
        if env_actors != self.env_actors:
            self.env_actors, self._envs = env_actors, {}
        from toolmaster.weights import make_transport
        from toolmaster.weights.object_store import ObjectStoreTransport

        if transport != self.transport.name:
            self.transport = make_transport(transport)

        async with self._update_lock:  # a checkpoint, through the object store whatever the run's transport
            await ObjectStoreTransport().apply(handle, self.engine, self.weights_dir)
        self.peak_in_flight = self.completed = 0

    async def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        return await self.engine.prompt_logprobs(token_ids)

    async def next_token_logprob(self, token_ids: list[int]) -> tuple[int, float]:
        return await self.engine.next_token_logprob(token_ids)

    def shutdown(self) -> None:
        import shutil
        if self._local_runner is not None:
            self._local_runner.close()
        self.engine.shutdown()
        self._reaper.terminate()
        shutil.rmtree(self.scratch, ignore_errors=True)
