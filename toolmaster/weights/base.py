"""The transport interface: the learner side publishes a version, each rollout engine applies it.

A published version is a small picklable handle; a worker that joins later applies the newest handle.
"""
from __future__ import annotations

from abc import ABC, abstractmethod


class WeightTransport(ABC):
    name: str

    @abstractmethod
    def publish(self, state_dict, version: int):
        """Driver/learner side: turn rank 0's full state dict into a handle workers can apply."""

    @abstractmethod
    async def apply(self, handle, engine, scratch_dir: str) -> None:
        """Rollout-worker side: load the weights behind ``handle`` into a live ``VLLMEngine``."""
