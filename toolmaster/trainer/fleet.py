"""The actors a run trains with: the rollout pool (vLLM workers, tool-environment actors) and the learner
group (DeepSpeed ranks). ``build_fleet`` makes the real ones; drivers take a fleet, so one fleet can serve
several runs (``reset`` between them) and driver logic runs against fakes in unit tests."""
from __future__ import annotations

from dataclasses import dataclass

from toolmaster.learner.group import LearnerGroup
from toolmaster.ray_utils import check_cluster_resources, init_ray
from toolmaster.rollout.pool import RolloutPool


@dataclass
class Fleet:
    pool: RolloutPool
    learners: LearnerGroup

    def reset(self, model_dir: str, cfg, version: int = 0) -> None:
        """Start the next run on ``model_dir`` (served as ``version``) with ``cfg``'s learner and episode
        settings; engines, ranks and placement stay (``fleet_key`` says which configs may share a fleet)."""
        self.learners.reset(model_dir, cfg)
        self.pool.reset(model_dir, cfg, version)
        connect_weight_group(self.pool, self.learners, cfg)

    def close(self) -> None:
        self.pool.shutdown()
        self.learners.shutdown()


def build_fleet(cfg, model_dir: str, version: int = 0) -> Fleet:
    """Learner ranks and rollout workers on ``model_dir``; a run resumed at ``version`` starts its engines
    from that version's checkpoint."""
    init_ray()
    check_cluster_resources(cfg)  # what every actor asks for, against the cluster, before any starts
    learners = LearnerGroup(cfg, model_dir)
    pool = RolloutPool(cfg, model_dir)
    connect_weight_group(pool, learners, cfg)
    if version:  # the engines loaded the checkpoint, which is this version
        pool.update_weights({"version": version, "ref": None, "preloaded": True})
    return Fleet(pool, learners)


def connect_weight_group(pool: RolloutPool, learners: LearnerGroup, cfg) -> None:
    """Under a group transport the pool sends weights through a group with learner rank 0 (built at the
    first publish, rebuilt when membership changes: weights/group.py); otherwise through handles."""
    from toolmaster.weights.factory import is_group_transport
    from toolmaster.weights.group import GroupSync

    name = cfg.rollout.weight_transport
    same = (pool.sync is not None and pool.sync.transport == name and pool.sync.sender == learners.sender
            and pool.sync.timeout_s == cfg.rollout.weight_sync_timeout_s)
    if not same:
        pool.set_sync(GroupSync(name, learners.sender, cfg.rollout.weight_sync_timeout_s)
                      if is_group_transport(name) else None)


def fleet_key(cfg, model_dir: str) -> str:
    """What a fleet is built from and a reset cannot change: the model architecture (tied or not: engines
    serve untied exports), engines, worker and rank counts, resources, NCCL or not and sandbox (tool-environment
    actors follow the run)."""
    import json
    from pathlib import Path

    arch = json.loads((Path(model_dir) / "config.json").read_text())
    arch.pop("tie_word_embeddings", None)
    r, lc = cfg.rollout, cfg.learner
    return json.dumps({"arch": arch, "engine": r.engine.model_dump(), "workers": r.num_workers,
                       "worker_resources": [r.num_cpus_per_worker, r.num_gpus_per_worker, r.resources],
                       # object_store and gloo_group engines are alike (the pool switches between them)
                       "transport": r.weight_transport == "nccl", "autoscale": r.autoscale.model_dump(),
                       "sandbox": cfg.sandbox.model_dump(),
                       "ranks": [lc.num_ranks, lc.num_cpus_per_rank, lc.num_gpus_per_rank, lc.resources,
                                 lc.backend]}, sort_keys=True)
