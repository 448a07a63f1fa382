"""RolloutWorker: a Ray actor that owns one vLLM engine and runs multi-turn episodes with the real tools."""
from __future__ import annotations

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


def _scratch_root() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class RolloutWorker:
    def __init__(self, worker_id: int, model_dir: str, cfg_dict: dict, env_actors: list | None = None):
        from toolmaster.config import Config
        from toolmaster.envs import make_env
        from toolmaster.rollout.vllm_engine import VLLMPolicy
        from toolmaster.tools.base import ToolRunner
        from toolmaster.weights import make_transport

        self.worker_id = worker_id
        self.cfg = Config.model_validate(cfg_dict)
        self.scratch = tempfile.mkdtemp(prefix=f"toolmaster-rollout-{worker_id}-", dir=_scratch_root())
        serve_dir = untied_export(model_dir, os.path.join(self.scratch, "served"))
        self.policy = VLLMPolicy(serve_dir, self.cfg.rollout.generation, seed=self.cfg.grpo.seed + 1000 * worker_id)
        self.env = make_env(self.cfg.env)
        if env_actors:
            from toolmaster.envs.actor import RemoteToolRunner
            self.runner = RemoteToolRunner(env_actors)
        else:
            self.runner = ToolRunner.from_config(self.cfg.sandbox)
        self.transport = make_transport(self.cfg.rollout.weight_transport)
        self.weights_dir = os.path.join(self.scratch, "weights")

    def ready(self) -> int:
        return self.worker_id

    def update_weights(self, handle: dict) -> float:
        start = time.time()
        if handle["version"] > self.policy.version:
            if not handle.get("preloaded"):  # preloaded: the engine started from this version's checkpoint
                self.transport.apply(handle, self.policy.llm, self.weights_dir)
            self.policy.version = handle["version"]
        return time.time() - start

    def run(self, specs: list) -> list[dict]:
        """``specs`` are (episode_id, task) pairs; returns one record per episode with its trajectory."""
        from toolmaster.agent.loop import run_episodes

        start = time.time()
        ids, tasks = [s[0] for s in specs], [s[1] for s in specs]
        episodes = run_episodes(self.policy, tasks, self.env, self.runner, max_turns=self.cfg.env.max_turns,
                                trial=self.cfg.synth.trial, reward_weights=self.cfg.rewards, episode_ids=ids)
        out = []
        for ep in episodes:
            traj = self.policy.pop_trajectory(ep.episode_id)
            out.append({**ep.to_record(), "token_ids": traj.token_ids if traj else [],
                        "loss_mask": traj.loss_mask if traj else [], "logprobs": traj.logprobs if traj else [],
                        "policy_version": traj.policy_version if traj else self.policy.version,
                        "worker": self.worker_id, "seconds": time.time() - start})
        return out

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        """The engine's logprob of each token given its prefix (position 0 is 0), for parity checks."""
        from vllm import SamplingParams

        result = self.policy.llm.generate([{"prompt_token_ids": token_ids}],
                                          SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)[0]
        return [0.0] + [lp[t].logprob for t, lp in zip(token_ids[1:], result.prompt_logprobs[1:])]

    def next_token_logprob(self, token_ids: list[int]) -> tuple[int, float]:
        """Greedy next token and its logprob, computed through the engine's prefix cache (unlike
        prompt_logprobs): after a sync this catches KV blocks cached under old weights."""
        from vllm import SamplingParams

        out = self.policy.llm.generate([{"prompt_token_ids": token_ids}],
                                       SamplingParams(max_tokens=1, temperature=0.0, logprobs=0), use_tqdm=False)[0]
        token = out.outputs[0].token_ids[0]
        return token, out.outputs[0].logprobs[0][token].logprob

    def shutdown(self) -> None:
        import shutil
        self.runner.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
