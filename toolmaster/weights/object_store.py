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
        from safetensors.torch import save_file

        state = handle["ref"]
        if isinstance(state, ray.ObjectRef):
            state = await state
        target = os.path.join(scratch_dir, f"v{handle['version']}")
        os.makedirs(target, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(target, "model.safetensors"))
        await engine.load_weights(target, handle["version"])
        for name in os.listdir(scratch_dir):  # keep only the version being served
            if name != f"v{handle['version']}":
                shutil.rmtree(os.path.join(scratch_dir, name), ignore_errors=True)
