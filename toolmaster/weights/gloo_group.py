"""CPU transport with NCCL's group semantics, on real ``torch.distributed`` gloo process groups.

Learner rank 0 hosts a TCPStore and is rank 0 of a standalone ``ProcessGroupGloo`` (apart from the
learners' own default group); each rollout worker joins as rank 1..W. Membership is fixed when the group is
built (a newcomer joins only by a rebuild), the weights are a real broadcast from rank 0 (packed into byte
buckets, any dtype), and every collective times out after the group's ``timeout_s``: a member that died
makes the sender fail at once (connection closed) or after the timeout, never hang. A worker receives the
tensors in its own process and serves them through the object-store transport's path (safetensors in its
scratch, vLLM's ``reload_weights``). It exists so that the pool's group logic (rebuild, newcomer gating,
watchdog: ``weights/group.py``) runs on CPU exactly as it runs over NCCL.
"""
from __future__ import annotations

import asyncio
import datetime

from toolmaster.weights.base import GroupTransport

BUCKET_BYTES = 64 << 20


def _buckets(meta: list) -> list[list[int]]:
    """Indices of ``meta`` grouped into buckets of at most BUCKET_BYTES (a larger tensor gets its own)."""
    import torch

    out, size = [[]], 0
    for i, (_, dtype, shape) in enumerate(meta):
        n = torch.Size(shape).numel() * torch.empty(0, dtype=getattr(torch, dtype)).element_size()
        if out[-1] and size + n > BUCKET_BYTES:
            out.append([])
            size = 0
        out[-1].append(i)
        size += n
    return out


def _group(spec: dict, rank: int):
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=spec["timeout_s"])
    store = dist.TCPStore(spec["address"], spec["port"], spec["world_size"], is_master=rank == 0,
                          timeout=timeout, wait_for_workers=False)
    return store, dist.ProcessGroupGloo(store, rank, spec["world_size"], timeout)


def _broadcast(pg, tensor) -> None:
    import torch.distributed as dist

    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    pg.broadcast([tensor], opts).wait()


class GlooGroupTransport(GroupTransport):
    name = "gloo_group"

    def __init__(self):
        super().__init__()
        self.store = self.pg = None
        self.spec: dict | None = None

    # learner rank 0
    def open(self, spec: dict) -> None:
        self.close()
        self.store, self.pg = _group(spec, 0)
        self.spec = spec

    def send(self, version: int) -> None:
        import torch

        if self.pg is None:
            raise RuntimeError("gloo_group: no group to send to (open it first)")
        state = self.staged_state(version)
        items = list(state.items())
        for bucket in _buckets([(k, str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in items]):
            flat = torch.cat([items[i][1].detach().contiguous().view(-1).view(torch.uint8) for i in bucket])
            _broadcast(self.pg, flat)

    def close(self) -> None:
        self.store = self.pg = self.spec = None

    # rollout worker
    async def join(self, spec: dict, rank: int, engine) -> None:
        await self.leave(engine)
        self.store, self.pg = await asyncio.to_thread(_group, spec, rank)
        self.spec = spec

    def _receive(self, meta: list) -> dict:
        import torch

        state = {}
        for bucket in _buckets(meta):
            sizes = [torch.Size(meta[i][2]).numel() * torch.empty(0, dtype=getattr(torch, meta[i][1])).element_size()
                     for i in bucket]
            flat = torch.empty(sum(sizes), dtype=torch.uint8)
            _broadcast(self.pg, flat)
            for i, part in zip(bucket, torch.split(flat, sizes)):
                name, dtype, shape = meta[i]
                state[name] = part.clone().view(getattr(torch, dtype)).reshape(shape)  # clone: aligned
        return state

    async def receive(self, meta: list, version: int, engine, scratch_dir: str) -> None:
        from toolmaster.weights.object_store import load_state

        if self.pg is None:
            raise RuntimeError("gloo_group: this worker is in no group")
        state = await asyncio.to_thread(self._receive, meta)
        if version > engine.version:  # a member that already serves it (a catch-up round) only takes part
            await load_state(state, version, engine, scratch_dir)

    async def leave(self, engine) -> None:
        self.close()
