"""GPU transport: learner rank 0 broadcasts the weights over NCCL straight into every rollout engine.

Built on vLLM's weight-transfer API (``weight_transfer_config={"backend": "nccl"}`` on each engine,
``NCCLTrainerWeightTransferEngine`` on the learner), with the pool's group logic (``weights/group.py``):
the driver, not the trainer engine, drives the engines' phases (init; start, update, finish per version;
shutdown), so it can rebuild the group over the live workers and watch each send. vLLM's NCCL group has a
fixed membership from ``init_weight_transfer_engine``: a rebuild is ``shutdown_weight_transfer_engine`` on
every engine and the trainer, then a fresh init on a new port. Needs CUDA: not run on the CPU machines this
project is tested on (the same group logic runs there over ``gloo_group``); see docs/weight-sync.md.
"""
from __future__ import annotations

import threading

from toolmaster.weights.base import GroupTransport


class _DriverDrivesEngines:
    """vLLM's ``VLLMWeightSyncClient``, empty: the driver calls the engines' phases itself (group.py)."""

    def init_weight_transfer_engine(self, init_info: dict) -> None: ...

    def start_weight_update(self) -> None: ...

    def update_weights(self, update_info) -> None: ...

    def finish_weight_update(self, weight_version: str | None = None) -> None: ...


class _StateSource:
    """The staged state dict of one version as vLLM's ``WeightSource`` (metadata + iteration)."""

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


def _update_info(meta: list) -> dict:
    return {"names": [m[0] for m in meta], "dtype_names": [m[1] for m in meta], "shapes": [m[2] for m in meta]}


class NCCLTransport(GroupTransport):
    name = "nccl"

    def __init__(self):
        super().__init__()
        self.trainer = None
        self.spec: dict | None = None
        self.source = _StateSource()

    # learner rank 0
    def open(self, spec: dict) -> None:
        from vllm.distributed.weight_transfer.nccl_common import trainer_init
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

        self.close()
        self.trainer = NCCLTrainerWeightTransferEngine(client=_DriverDrivesEngines(), source=self.source)
        # blocks in the TCPStore rendezvous until every engine called init_weight_transfer_engine
        self.trainer.model_update_group = trainer_init({"master_address": spec["address"],
                                                         "master_port": spec["port"],
                                                         "world_size": spec["world_size"]})
        self.spec = spec

    def send(self, version: int) -> None:
        """The broadcast runs on a thread this call waits for at most ``timeout_s``: pynccl has no timeout of
        its own, so on expiry the communicator is aborted (vLLM's ``destroy``: ncclCommAbort) and the
        group dropped; the driver rebuilds it."""
        if self.trainer is None:
            raise RuntimeError("nccl: no group to send to (open it first)")
        self.source.state = {k: v.cuda(non_blocking=True) for k, v in self.staged_state(version).items()}
        error: list = []

        def run():
            try:
                self.trainer.send_weights()
            except BaseException as err:  # surfaced below
                error.append(err)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(self.spec["timeout_s"])
        self.source.state = {}
        if thread.is_alive():
            self.close()
            raise TimeoutError(f"nccl: the broadcast of version {version} exceeded {self.spec['timeout_s']} s")
        if error:
            self.close()
            raise error[0]

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.shutdown()  # vLLM: destroy → ncclCommAbort on a daemon thread, bounded (5 s)
        self.trainer = self.spec = None

    # rollout worker (its engine was built with weight_transfer_config={"backend": "nccl"})
    async def join(self, spec: dict, rank: int, engine) -> None:
        from vllm.distributed.weight_transfer.nccl_common import NCCLWeightTransferInitInfo, worker_init_payload

        await self.leave(engine)
        # one engine per worker (TP 1): vLLM adds the engine's own rank (0) to rank_offset
        info = NCCLWeightTransferInitInfo(master_address=spec["address"], master_port=spec["port"],
                                          rank_offset=rank, world_size=spec["world_size"], packed=True)
        await engine.weight_transfer("init_weight_transfer_engine", worker_init_payload(info))
        self.spec = spec

    async def receive(self, meta: list, version: int, engine, scratch_dir: str) -> None:
        await engine.weight_transfer("start_weight_update")
        try:
            await engine.weight_transfer("update_weights", _update_info(meta))
        finally:
            await engine.weight_transfer("finish_weight_update")
        engine.version = max(engine.version, version)  # only now: the weights arrived (issue 34)

    async def leave(self, engine) -> None:
        if self.spec is not None:
            self.spec = None
            await engine.weight_transfer("shutdown_weight_transfer_engine")
