"""What a run asks of the cluster against what the cluster has, and the console's line per GRPO step
(no Ray: the cluster's nodes are given)."""
from toolmaster import console
from toolmaster.config import build_config
from toolmaster.ray_utils import fleet_demand, shortfall

HEAD = {"CPU": 8.0, "memory": 1e10, "node:127.0.0.1": 1.0}


def test_a_fleet_that_fits_lacks_nothing():
    assert shortfall(fleet_demand(build_config()), [HEAD]) == []


def test_a_custom_resource_no_node_has_is_named_with_what_the_largest_node_has():
    cfg = build_config({}, ["learner.resources={learner: 1}", "rollout.num_gpus_per_worker=1"])
    missing = shortfall(fleet_demand(cfg), [HEAD, {"CPU": 4.0, "learner": 0.5}])
    assert missing == ["learner: each learner rank asks for 1, the largest node has 0.5",
                       "GPU: each rollout worker asks for 1, the largest node has 0"]


def test_resources_on_different_nodes_and_totals_too_small():
    cfg = build_config({}, ["learner.resources={learner: 1}", "learner.num_gpus_per_rank=1", "learner.num_ranks=3"])
    nodes = [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "learner": 1.0}]
    assert shortfall(fleet_demand(cfg), nodes) == [
        "each learner rank asks for CPU 0.5, GPU 1, learner 1 on one node; no node has them together",
        "GPU: 3 in all (3 learner rank(s) × 1), the cluster has 1",
        "learner: 3 in all (3 learner rank(s) × 1), the cluster has 1"]
    cfg = build_config({}, ["learner.resources={learner: 1}", "learner.num_ranks=2"])
    assert shortfall(fleet_demand(cfg), [HEAD, {"CPU": 1.0, "learner": 1.0}]) == [
        "learner: 2 in all (2 learner rank(s) × 1), the cluster has 1"]


def test_the_wait_settings_live_in_the_cluster_section():
    cfg = build_config({}, ["cluster.resource_wait_s=5", "cluster.autoscaler=absent"])
    assert (cfg.cluster.resource_wait_s, cfg.cluster.autoscaler_wait_s, cfg.cluster.autoscaler) == (5, 900, "absent")
    assert build_config().cluster.resource_wait_s == 60


def test_the_console_line_of_a_step():
    metrics = {"reward": 0.51234, "success": 0.5, "train/loss": -0.012345, "train/kl": 0.00042,
               "throughput/generated_tokens_per_s": 1234.4, "throughput/train_tokens_per_s": 5678.9,
               "time/rollout": 12.34, "time/train": 4.56, "time/sync": 0.78}
    assert console.step_line(3, 10, metrics) == (
        "step 3/10 · reward 0.512 · success 0.50 · loss -0.01235 · KL 0.00042 · tok/s 1,234 gen, 5,679 learn · "
        "time rollout 12.3 s, learn 4.6 s, publish 0.8 s")
    # a step without updates has no loss; an evaluated step shows its held-out score
    line = console.step_line(4, 10, {**metrics, "train/loss": None, "eval/success": 0.625, "time/eval": 3.0})
    assert "loss – ·" in line and line.endswith("held-out success 0.625 (eval 3.0 s)")


def test_an_autoscaler_is_told_from_the_monitors_mirror_of_the_nodes(monkeypatch):
    import json

    import ray.experimental.internal_kv as kv

    from toolmaster.ray_utils import has_autoscaler

    def status(mapping):
        return json.dumps({"autoscaler_report": {"node_type_mapping": mapping}, "load_metrics_report": {}}).encode()

    store = {}
    monkeypatch.setattr(kv, "_internal_kv_get", lambda key: store.get(key))
    store["__autoscaling_status"] = status({"ab12": "node_ab12", "cd34": "node_cd34"})  # `ray start`, ray.init()
    assert not has_autoscaler()
    store["__autoscaling_status"] = status({"ab12": "ray.head.default"})  # a config's node types
    assert has_autoscaler()
    store.clear()  # the monitor has not reported: no autoscaler after the short wait
    assert not has_autoscaler(wait_s=0)
    store["__autoscaler_v2_enabled"] = b"1"
    assert has_autoscaler(wait_s=0)
    assert has_autoscaler("present") and not has_autoscaler("absent")
