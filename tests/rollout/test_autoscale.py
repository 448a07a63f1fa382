"""Autoscaling: the policy's decisions (unit), and the pool on Ray's fake multi-node autoscaling cluster:
queue pressure → workers pending → nodes added → workers there serve episodes → idle → workers and nodes
removed."""
import time

import pytest

from toolmaster.config import build_config
from toolmaster.rollout.autoscale import AutoscalePolicy


def _policy(**kw):
    overrides = [f"rollout.autoscale.{k}={v}" for k, v in {"enabled": True, "min_workers": 1, "max_workers": 3,
                                                          "up_cooldown_s": 0, "down_cooldown_s": 10, **kw}.items()]
    return AutoscalePolicy(build_config({}, overrides).rollout.autoscale)


def test_policy_grows_on_queue_and_shrinks_slowly_when_idle():
    p = _policy()
    up = p.decide(0.0, workers=1, queued=5, in_flight=2, episodes_per_worker=2, mean_episode_s=3.0)
    assert up.target == 3 and "5 episodes queued" in up.reason  # capped at max_workers
    assert p.decide(1.0, 3, 0, 6, 2, 3.0).target == 3  # busy, nothing queued: steady
    assert p.decide(2.0, 3, 0, 0, 2, 3.0).target == 3  # idle, but inside the down cool-down
    down = p.decide(11.0, 3, 0, 0, 2, 3.0)
    assert down.target == 2 and "idle" in down.reason
    assert p.decide(12.0, 2, 0, 0, 2, 3.0).target == 2  # one step at a time, after another cool-down
    assert p.decide(22.0, 2, 0, 0, 2, 3.0).target == 1
    assert p.decide(40.0, 1, 0, 0, 2, 3.0).target == 1  # never below min_workers


def test_bounds_are_validated():
    from toolmaster.config import ConfigError

    with pytest.raises(ConfigError, match="min_workers 3 > max_workers 2"):
        build_config({}, ["rollout.autoscale.min_workers=3", "rollout.autoscale.max_workers=2"])


class _FakeCluster:
    """Ray's fake multi-node autoscaling cluster, with the base config its 2.60 wheel does not ship."""

    def __init__(self, head: dict, node_types: dict, idle_timeout_minutes: float):
        from ray.cluster_utils import AutoscalingCluster

        base = {"cluster_name": "toolmaster-fake", "max_workers": sum(t["max_workers"] for t in node_types.values()),
                "upscaling_speed": 10.0, "idle_timeout_minutes": idle_timeout_minutes,
                "provider": {"type": "fake_multinode"}, "auth": {"ssh_user": "ubuntu"},
                "head_node_type": "ray.head.default", "file_mounts": {}, "cluster_synced_files": [],
                "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
                "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
                "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": []}

        class Cluster(AutoscalingCluster):
            def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **kw):
                config = dict(base, available_node_types=dict(worker_node_types))
                config["available_node_types"]["ray.head.default"] = {"resources": head_resources, "node_config": {},
                                                                      "max_workers": 0}
                return config

        self.cluster = Cluster(head_resources=head, worker_node_types=node_types)


def _rollout_nodes(ray):
    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("rollout"))


def test_pool_grows_with_the_queue_and_shrinks_when_idle_on_a_fake_autoscaling_cluster(tiny_model_dir, monkeypatch):
    import os
    import sys

    import ray

    from toolmaster.envs import make_env
    from toolmaster.rollout.pool import RolloutPool

    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    # the fake provider starts each node with `ray start --address=...`, which this setting refuses
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    fake = _FakeCluster({"CPU": 2}, {"rollout_node": {"resources": {"CPU": 1, "rollout": 1}, "node_config": {},
                                                      "min_workers": 0, "max_workers": 3}}, idle_timeout_minutes=0.05)
    fake.cluster.start()
    try:
        ray.init("auto", log_to_driver=False)
        cfg = build_config({}, ["rollout.resources={rollout: 1}", "rollout.num_cpus_per_worker=0.5",
                                "rollout.max_episodes_per_worker=1", "rollout.generation.max_new_tokens=48",
                                "env.max_turns=4", "rollout.autoscale.enabled=true", "rollout.autoscale.min_workers=1",
                                "rollout.autoscale.max_workers=3", "rollout.autoscale.down_cooldown_s=1"])
        pool = RolloutPool(cfg, tiny_model_dir)  # its first worker already needs a rollout node
        assert _rollout_nodes(ray) == 1 and len(pool.workers) == 1
        tasks = make_env(cfg.env).tasks("test", 12)
        records = pool.run(tasks, group_size=2, step=0)  # 24 episodes, one at a time per worker: pressure
        assert len({r["episode_id"] for r in records}) == 24
        ups = [e for e in pool.events if e["action"] == "scale_up"]
        assert ups and max(e["workers_after"] for e in ups) == 3
        assert len({r["worker"] for r in records}) >= 2  # workers on the added nodes served episodes
        peak_nodes = _rollout_nodes(ray)
        deadline = time.time() + 120
        while (len(pool.workers) > 1 or _rollout_nodes(ray) > 1) and time.time() < deadline:
            pool.tick()  # idle: drain one worker per cool-down; Ray removes the idle nodes
            time.sleep(1)
        assert peak_nodes == 3
        assert len(pool.workers) == 1 and _rollout_nodes(ray) == 1
        assert [e["action"] for e in pool.events].count("scale_down") == 2
        pool.shutdown()
    finally:
        ray.shutdown()
        fake.cluster.shutdown()
