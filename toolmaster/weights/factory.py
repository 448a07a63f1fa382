"""The transport a config names, built from the concrete classes (which import only the interface)."""
from __future__ import annotations

from toolmaster.weights.base import WeightTransport
from toolmaster.weights.gloo_group import GlooGroupTransport
from toolmaster.weights.nccl import NCCLTransport
from toolmaster.weights.object_store import ObjectStoreTransport

TRANSPORTS: dict[str, type[WeightTransport]] = {"object_store": ObjectStoreTransport, "nccl": NCCLTransport,
                                                "gloo_group": GlooGroupTransport}


def make_transport(name: str) -> WeightTransport:
    if name not in TRANSPORTS:
        raise ValueError(f"unknown weight transport {name!r}")
    return TRANSPORTS[name]()


def is_group_transport(name: str) -> bool:
    return make_transport(name).group
