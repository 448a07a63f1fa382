"""When the rollout pool should grow or shrink: a pure policy over queue depth and episode latency.

The pool asks after every finished episode; the answer is a target size with the reason, which the pool
logs as a scaling event. Growing is fast (queue pressure for ``up_cooldown_s``), shrinking is slow (no
queue and idle capacity for ``down_cooldown_s``), the usual asymmetry that avoids flapping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingDecision:
    target: int
    reason: str


class AutoscalePolicy:
    def __init__(self, cfg):
        self.cfg = cfg  # rollout.autoscale
        self._last_change = -math.inf

    def decide(self, now: float, workers: int, queued: int, in_flight: int, episodes_per_worker: int,
               mean_episode_s: float | None) -> ScalingDecision:
        c = self.cfg
        clamp = max(c.min_workers, min(c.max_workers, workers))
        if clamp != workers:
            return ScalingDecision(clamp, f"keep within [{c.min_workers}, {c.max_workers}]")
        capacity = workers * episodes_per_worker
        if queued > 0 and workers < c.max_workers and now - self._last_change >= c.up_cooldown_s:
            # enough workers to start the whole queue now, but never more than max
            wanted = min(c.max_workers, workers + math.ceil(queued / episodes_per_worker))
            latency = f", mean episode {mean_episode_s:.1f}s" if mean_episode_s else ""
            self._last_change = now
            return ScalingDecision(wanted, f"{queued} episodes queued beyond capacity {capacity}{latency}")
        idle = capacity - in_flight
        if (queued == 0 and workers > c.min_workers and idle >= episodes_per_worker
                and now - self._last_change >= c.down_cooldown_s):
            self._last_change = now
            return ScalingDecision(workers - 1, f"no queue and {idle} idle episode slots")
        return ScalingDecision(workers, "steady")
