"""GPU transport: learner rank 0 broadcasts the weights over NCCL straight into every rollout engine.

Built on vLLM's weight-transfer API (``weight_transfer_config={"backend": "nccl"}`` on each engine and
``NCCLTrainerWeightTransferEngine`` on the learner): one NCCL group of the learner's rank 0 (rank 0)
and the engines (ranks 1..W), a four-phase round (init once; start, update, finish per version). The
engines are reached through their Ray actors, so the driver still never touches a tensor. Needs CUDA:
not run on the CPU machines this project is tested on. The group has a fixed size, so a replaced or
added worker cannot join it; elastic pools use the object-store transport.
"""
from __future__ import annotations

import ray

from toolmaster.weights.base import WeightTransport


class _RayEnginesClient:
    """vLLM's ``VLLMWeightSyncClient`` protocol over our rollout-worker actors (one engine each, TP 1)."""

    def __init__(self, workers: list):
        self.workers = workers

    def _all(self, method: str, payload=None, per_worker=None):
        refs = [w.weight_transfer_rpc.remote(method, per_worker(i) if per_worker else payload)
                for i, w in enumerate(self.workers)]
        ray.get(refs)

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        # vLLM's trainer assumes one engine at rank 1; engine i takes rank 1 + i of the group
        self._all("init_weight_transfer_engine", per_worker=lambda i: {**init_info, "rank_offset": 1 + i})

    def start_weight_update(self) -> None:
        self._all("start_weight_update")

    def update_weights(self, update_info) -> None:
        self._all("update_weights", update_info)

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._all("finish_weight_update", weight_version)


class _StateSource:
    """The gathered state dict of one version as vLLM's ``WeightSource`` (metadata + iteration)."""

    def __init__(self):
        self.state: dict = {}

    def metadata(self):
        from vllm.distributed.weight_transfer.base import ParamMeta
        return [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in self.state.items()]

    def __iter__(self):
        return iter(self.state.items())

    def held_names(self):
        return list(self.state)

    def iter_groups(self):
        for item in self.state.items():
            yield [item]


class NCCLTransport(WeightTransport):
    name = "nccl"

    def __init__(self):
        self.trainer = None
        self.source = _StateSource()

    def connect(self, workers: list, master_address: str, master_port: int) -> None:
        """Learner rank 0, once: open the NCCL group with every engine (they join inside the same call)."""
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo, NCCLTrainerWeightTransferEngine

        info = NCCLTrainerInitInfo(master_address=master_address, master_port=master_port,
                                   world_size=1 + len(workers), rank=0)
        self.trainer = NCCLTrainerWeightTransferEngine.trainer_init(info, client=_RayEnginesClient(workers),
                                                                    source=self.source)

    def publish(self, state_dict, version: int):
        if self.trainer is None:
            raise RuntimeError("the NCCL transport must be connected to the rollout workers before publishing")
        self.source.state = {k: v.cuda(non_blocking=True) for k, v in state_dict.items()}
        self.trainer.send_weights()  # the engines receive and load during this call
        self.source.state = {}
        return {"version": version, "delivered": True}

    async def apply(self, handle, engine, scratch_dir: str) -> None:
        if not handle.get("delivered"):
            raise RuntimeError("NCCL weights arrive during publish; this handle was never sent")
        engine.version = handle["version"]
