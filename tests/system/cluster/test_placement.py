"""Role placement on a 3-node Ray cluster (ray.cluster_utils.Cluster, all on this machine): learner ranks in
one placement group on the learner node, rollout workers and tool-environment actors on theirs, and a
GRPO step across the nodes."""
import math

import pytest
import ray
from ray.cluster_utils import Cluster

from tests.integration.trainer.test_grpo import _config


@pytest.fixture(scope="module")
def three_nodes():
    from tests.conftest import stop_ray

    stop_ray()  # the cluster's head is the driver's Ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    cluster.add_node(num_cpus=2, resources={"learner": 2})
    cluster.add_node(num_cpus=2, resources={"rollout": 2})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield {n["Resources"].get("learner") and "learner" or n["Resources"].get("rollout") and "rollout" or "head":
           n["NodeID"] for n in ray.nodes() if n["Alive"]}
    ray.shutdown()
    cluster.shutdown()


def test_roles_land_on_their_nodes_and_a_grpo_step_runs(three_nodes, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    cfg = _config(tmp_path / "run", 2, steps=1, extra=[
        "learner.resources={learner: 1}", "rollout.resources={rollout: 1}", "env_actors.num_actors=1",
        "env_actors.resources={rollout: 0.5}", "rollout.num_cpus_per_worker=0.5", "env_actors.num_cpus_per_actor=0.25"])
    trainer = start_grpo(cfg, tiny_model_dir)
    try:
        learner_nodes = ray.get([a.node_id.remote() for a in trainer.learners.actors])
        worker_nodes = ray.get([w.node_id.remote() for w in trainer.pool.workers.values()])
        env_nodes = ray.get([a.node_id.remote() for a in trainer.pool.env_actors])
        metrics = trainer.step()
    finally:
        trainer.close()
    assert learner_nodes == [three_nodes["learner"]] * 2  # both ranks in one packed placement group
    assert worker_nodes == [three_nodes["rollout"]] and env_nodes == [three_nodes["rollout"]]
    assert metrics["version"] == 1 and metrics["episodes"] == 4 and math.isfinite(metrics["train/loss"])
