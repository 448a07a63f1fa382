"""The gloo_group transport on real torch.distributed gloo process groups, one process per rank (no Ray):
the staged weights arrive bit-exact in every member (any dtype, over several buckets) and are served as the
version; membership is fixed (a process outside the group cannot receive); a member that died or never
takes part makes the sender fail within the group's timeout instead of hanging."""
import asyncio
import multiprocessing as mp
import os
import socket
import time

import pytest
import torch

from toolmaster.weights import gloo_group
from toolmaster.weights.base import StaleVersion
from toolmaster.weights.gloo_group import GlooGroupTransport


def _state():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(300, 70, generator=g).to(torch.bfloat16),
            "b.bias": torch.randn(5, generator=g), "c.idx": torch.arange(7, dtype=torch.int64)}


class FakeEngine:
    def __init__(self):
        self.version, self.loaded = 0, None

    async def load_weights(self, path, version):
        from safetensors.torch import load_file

        self.loaded = load_file(os.path.join(path, "model.safetensors"))
        self.version = version


def _spec(world, timeout_s=5.0):
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return {"address": "127.0.0.1", "port": port, "world_size": world, "timeout_s": timeout_s}


def _member(spec, rank, meta, version, scratch, out, behaviour):
    gloo_group.BUCKET_BYTES = 16 << 10  # several buckets
    t, engine = GlooGroupTransport(), FakeEngine()
    asyncio.run(t.join(spec, rank, engine))
    if behaviour == "die":
        os._exit(0)
    if behaviour == "idle":
        time.sleep(spec["timeout_s"] + 3)
        return
    try:
        asyncio.run(t.receive(meta, version, engine, scratch))
        same = all(torch.equal(engine.loaded[k], v) for k, v in _state().items())
        out.put((rank, engine.version, same))
    except Exception as err:
        out.put((rank, "error", repr(err)[:300]))


def _run(tmp_path, behaviours, timeout_s=5.0):
    gloo_group.BUCKET_BYTES = 16 << 10
    ctx = mp.get_context("fork")
    spec, out = _spec(1 + len(behaviours), timeout_s), ctx.Queue()
    sender = GlooGroupTransport()
    handle = sender.publish(_state(), 3)
    procs = [ctx.Process(target=_member, args=(spec, 1 + i, handle["meta"], 3, str(tmp_path / f"w{i}"), out, b))
             for i, b in enumerate(behaviours)]
    for p in procs:
        p.start()
    try:
        sender.open(spec)
        if "die" in behaviours:
            time.sleep(1.0)
        start = time.time()
        error = None
        try:
            sender.send(3)
        except RuntimeError as err:
            error = err
        took = time.time() - start
        results = [out.get(timeout=timeout_s + 10) for b in behaviours if b == "ok"]
    finally:
        for p in procs:
            p.join(timeout_s + 10)
            if p.is_alive():
                p.kill()
    return error, took, sorted(results), sender


def test_the_broadcast_delivers_exact_weights_and_serves_the_version(tmp_path):
    error, _, results, sender = _run(tmp_path, ["ok", "ok"])
    assert error is None and results == [(1, 3, True), (2, 3, True)]
    with pytest.raises(StaleVersion, match="holds 3"):
        sender.send(4)  # a version it never staged


def test_a_dead_member_makes_the_sender_fail_not_hang(tmp_path):
    error, took, results, _ = _run(tmp_path, ["ok", "die"])
    assert error is not None and took < 5.0 + 2  # connection closed by the peer, or the group's timeout
    assert len(results) == 1  # the live member either got the weights or failed: never a hang


def test_a_member_that_never_takes_part_times_out(tmp_path):
    error, took, _, _ = _run(tmp_path, ["idle"], timeout_s=2.0)
    assert error is not None and "Timed out" in str(error) and took < 2.0 + 2
