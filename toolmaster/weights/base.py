"""The transport interface: the learner side publishes a version, each rollout engine applies it.

A published version is a small picklable handle; a worker that joins later applies the newest handle.

A ``GroupTransport`` (NCCL, gloo_group) moves the weights through a process group of learner rank 0 (group
rank 0) and the rollout workers (ranks 1..W) whose membership is fixed when it is built: a worker joins only
when the group is rebuilt. ``publish`` only stages the weights on rank 0; the driver's transport-agnostic
group logic (``weights/group.py``) builds the group, sends and watches the send.
"""
from __future__ import annotations

from abc import ABC, abstractmethod


class WeightTransport(ABC):
    name: str
    group = False  # True: weights travel through a process group the driver builds (GroupTransport)

    @abstractmethod
    def publish(self, state_dict, version: int):
        """Driver/learner side: turn rank 0's full state dict into a handle workers can apply."""

    @abstractmethod
    async def apply(self, handle, engine, scratch_dir: str) -> None:
        """Rollout-worker side: load the weights behind ``handle`` into a live ``VLLMEngine``."""


class StaleVersion(RuntimeError):
    """A send asked for a version the sender no longer holds (a newer one was staged since)."""


def weight_meta(state_dict: dict) -> list[tuple[str, str, list[int]]]:
    """(name, dtype name, shape) of every tensor, in the order the sender sends them."""
    return [(k, str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in state_dict.items()]


class GroupTransport(WeightTransport):
    """Learner side (rank 0 only): ``publish`` stages, then per group ``endpoint`` → ``open`` (blocks until
    every member joined) → ``send`` per version → ``close``. Worker side: ``join`` → ``receive`` → ``leave``.
    Every blocking call is bounded by the group's ``timeout_s``."""

    group = True

    def __init__(self):
        self.staged: tuple[int, dict] | None = None

    def publish(self, state_dict, version: int):
        self.staged = (version, state_dict)
        return {"version": version, "group": self.name, "meta": weight_meta(state_dict)}

    async def apply(self, handle, engine, scratch_dir: str) -> None:
        raise RuntimeError(f"{self.name} weights arrive through the group (RolloutPool.update_weights), "
                           "not by applying a handle")

    def staged_state(self, version: int) -> dict:
        if self.staged is None or self.staged[0] != version:
            held = None if self.staged is None else self.staged[0]
            raise StaleVersion(f"asked to send version {version}; the sender holds {held}")
        return self.staged[1]

    @staticmethod
    def endpoint() -> tuple[str, int]:
        """Where rank 0 hosts the group's rendezvous: this node's address and a free port."""
        import socket

        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    @abstractmethod
    def open(self, spec: dict) -> None:
        """Rank 0: build the group ``spec`` describes (address, port, world_size, timeout_s) as its rank 0."""

    @abstractmethod
    def send(self, version: int) -> None:
        """Rank 0: broadcast the staged ``version`` to every member; raises on a lost member or a timeout."""

    @abstractmethod
    def close(self) -> None:
        """Rank 0: leave and drop the group (idempotent)."""

    @abstractmethod
    async def join(self, spec: dict, rank: int, engine) -> None:
        """Worker: join the group ``spec`` describes as ``rank``."""

    @abstractmethod
    async def receive(self, meta: list, version: int, engine, scratch_dir: str) -> None:
        """Worker: take part in the broadcast of ``version`` and serve it (a worker that already serves it
        still receives: a broadcast needs every member)."""

    @abstractmethod
    async def leave(self, engine) -> None:
        """Worker: drop the group (idempotent)."""
