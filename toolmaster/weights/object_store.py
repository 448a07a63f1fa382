"""Default transport: weights travel through Ray's object store, each worker reloads them locally.

Works on CPU and across nodes without a shared disk. The worker writes the tensors as safetensors into
its own scratch directory (/dev/shm when present) and calls vLLM's ``reload_weights`` on it, which keeps
vLLM's CPU weight repacking intact; the engine always serves an untied export (see rollout.worker), so
lm_head is reloaded too (the engine pauses, drains, reloads and drops its prefix cache: see
rollout.vllm_engine).
"""
from __future__ import annotations

import os
import shutil

import ray

from toolmaster.weights.base import WeightTransport


class ObjectStoreTransport(WeightTransport):
    name = "object_store"

    def publish(self, state_dict, version: int):
        return {"version": version, "ref": ray.put(state_dict)}

    async def apply(self, handle, engine, scratch_dir: str) -> None:
        state = handle["ref"]
        if isinstance(state, ray.ObjectRef):
            state = await state
        await load_state(state, handle["version"], engine, scratch_dir)


async def load_state(state: dict, version: int, engine, scratch_dir: str) -> None:
    """Serve ``state`` as ``version``: safetensors in the worker's scratch, then vLLM's reload (every transport
    that receives tensors in the worker's process loads them this way)."""
    from safetensors.torch import save_file

    target = os.path.join(scratch_dir, f"v{version}")
    os.makedirs(target, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(target, "model.safetensors"))
    await engine.load_weights(target, version)
    for name in os.listdir(scratch_dir):  # keep only the version being served
        if name != f"v{version}":
            shutil.rmtree(os.path.join(scratch_dir, name), ignore_errors=True)


def checkpoint_handle(model_dir: str, version: int) -> dict:
    """A checkpoint directory as a published version, so a running pool can switch to another model of the
    same architecture (evaluating several checkpoints on one fleet). Tied checkpoints get an explicit
    lm_head, as engines serve untied exports."""
    from safetensors.torch import load_file

    state = {}
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors"):
            state.update(load_file(os.path.join(model_dir, name)))
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    return {"version": version, "ref": ray.put(state)}
