"""Rollout autoscaling on Ray's fake multi-node autoscaling cluster (the cluster autoscaler adds and removes
real raylet nodes on this machine): queue pressure → the pool asks for a worker that does not fit → a node
is added → the new worker serves episodes → the queue drains → the worker is drained → the node is removed.

AutoscalingCluster runs `ray stop --force` and takes port 6379, so nothing else may run Ray beside it.
"""
import json
import os
import sys
import threading
import time

import pytest
import ray
from ray.cluster_utils import AutoscalingCluster

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY

pytestmark = pytest.mark.slow  # ≈ 3 min; run with -m slow


class FakeAutoscalingCluster(AutoscalingCluster):
    """Ray 2.60's wheel lacks the fake provider's example.yaml that the base class reads; this is that config."""

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        config = {
            "cluster_name": "toolmaster-fake", "max_workers": 4, "head_node_type": "ray.head.default",
            # nodes are told apart by their node id (they share this machine's IP)
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True},
            "available_node_types": {**worker_node_types, "ray.head.default": {
                "resources": dict(head_resources), "node_config": {}, "max_workers": 0}},
            "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1, "auth": {}, "docker": {}, "file_mounts": {},
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
            "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        }
        config.update(config_kwargs)
        return config


@pytest.fixture
def autoscaling_cluster(monkeypatch):
    from tests.conftest import stop_ray

    stop_ray()  # the cluster's head is the driver's Ray
    # the `ray` CLI of this environment, and nodes on the machine's address (the loopback-only setting
    # keeps added nodes from joining)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    cluster = FakeAutoscalingCluster(
        head_resources={"CPU": 2},
        worker_node_types={"rollout_node": {"resources": {"CPU": 1, "rollout": 1}, "node_config": {},
                                            "min_workers": 0, "max_workers": 2}})
    cluster.start()
    try:
        ray.init(address="auto", log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()


def _alive_nodes() -> int:
    return sum(n["Alive"] for n in ray.nodes())


def test_nodes_and_workers_follow_the_queue(autoscaling_cluster, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    cfg = build_config(TINY, [
        f"run_dir={tmp_path / 'run'}", "grpo.steps=1", "grpo.prompts_per_step=12", "grpo.group_size=3",
        "env.max_turns=4", "rollout.generation.max_new_tokens=48", "rollout.max_episodes_per_worker=1",
        "rollout.resources={rollout: 1}", "rollout.num_cpus_per_worker=0.5", "rollout.autoscale.enabled=true",
        "rollout.autoscale.min_workers=1", "rollout.autoscale.max_workers=2", "rollout.autoscale.down_cooldown_s=1",
        "learner.num_cpus_per_rank=0.5"])
    assert _alive_nodes() == 1  # the head only: rollout workers need a node type that does not exist yet
    trainer = start_grpo(cfg, tiny_model_dir)  # its first worker waited for the first added node
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((_alive_nodes(), len(trainer.pool.workers)))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        metrics = trainer.step()  # 36 episodes (≈ 3 s each), one at a time per worker: the queue outlasts a node start
        deadline = time.time() + 90
        while _alive_nodes() > 2 and time.time() < deadline:  # the drained worker's node goes idle and leaves
            time.sleep(1)
    finally:
        stop.set()
        sampler.join()
        trainer.close()
    nodes, workers = [n for n, _ in samples], [w for _, w in samples]
    assert max(nodes) == 3 and max(workers) == 2  # rose: head + 2 rollout nodes, 2 workers
    assert nodes[-1] == 2 and workers[-1] == 1  # fell: the added worker was drained and its node removed
    records = trainer.last_records
    assert len(records) == 36 and len({r.worker for r in records}) == 2  # the added worker served episodes
    assert len({r.node for r in records}) == 2  # ... on the node added for it
    logged = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    actions = [e["action"] for e in logged["scaling_events"]]
    assert actions == ["scale_up", "scale_down"] and "queued" in logged["scaling_events"][0]["reason"]
    assert metrics["scaling_events"] == logged["scaling_events"]
