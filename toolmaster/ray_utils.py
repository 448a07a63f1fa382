"""Connecting to Ray: the job's cluster when there is one (``ray job submit`` sets RAY_ADDRESS), else a
local instance."""
from __future__ import annotations

import os


def init_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local instance on loopback
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
