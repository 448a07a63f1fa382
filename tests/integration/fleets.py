"""Fleets shared by the integration tests: one per shape a test needs (model architecture, engines, worker
and rank counts), built on first use on the session's Ray and reset by each run that takes one (drivers
reset the fleet they are given: base weights reloaded, fresh optimizer state, RNG reseeded, pool counters
and version back to 0)."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class FleetCache:
    MAX_ALIVE = 2  # each holds a vLLM engine (three processes) and two learner ranks

    def __init__(self):
        self._fleets: dict = {}  # fleet_key -> Fleet, least recently used first
        self.started = 0  # fleets built in this pytest session (the report at the end prints it)

    def get(self, cfg, model_dir: str):
        from toolmaster.trainer.fleet import build_fleet, fleet_key

        key = fleet_key(cfg, model_dir)
        fleet = self._fleets.pop(key, None)
        if fleet is not None and not fleet.learners.actors:  # a test killed a rank: the group shut down
            from toolmaster.learner.group import LearnerGroup

            fleet.learners = LearnerGroup(cfg, model_dir)
        if fleet is None:
            while len(self._fleets) >= self.MAX_ALIVE:
                self._fleets.pop(next(iter(self._fleets))).close()
            fleet = build_fleet(cfg, model_dir)
            self.started += 1
        self._fleets[key] = fleet
        return fleet

    def pool(self, cfg, model_dir: str):
        """A shared fleet's rollout pool serving ``model_dir`` as version 0 with ``cfg``'s episode settings."""
        pool = self.get(cfg, model_dir).pool
        pool.reset(model_dir, cfg)
        return pool

    def close(self) -> None:
        while self._fleets:
            self._fleets.popitem()[1].close()


FLEETS = FleetCache()
