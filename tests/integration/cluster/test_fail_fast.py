"""Fail fast, show the error, on the session's Ray instance (one node, 8 CPUs, no GPU, no custom resources,
no autoscaler): a fleet that asks for what the cluster lacks fails within cluster.resource_wait_s naming it,
and a learner that dies while starting has its own error and the last lines of its log in the driver's."""
import os
import sys
import time

import pytest
import ray

from toolmaster.config import build_config

MODEL = "/nonexistent/model"  # never loaded: nothing gets that far


def _cfg(*overrides):
    return build_config({}, ["cluster.resource_wait_s=1", "learner.num_ranks=1", *overrides])


def _no_pending_placement_groups() -> bool:
    return not [pg for pg in ray.util.placement_group_table().values() if pg["state"] == "PENDING"]


def test_missing_resources_fail_within_the_wait_naming_them(ray_local):
    from toolmaster.learner.group import LearnerGroup
    from toolmaster.ray_utils import ClusterResourceError, check_cluster_resources, has_autoscaler
    from toolmaster.rollout.pool import RolloutPool

    assert not has_autoscaler()  # a local instance's monitor mirrors its nodes; it can add none
    cfg = _cfg("learner.resources={learner: 1}")
    start = time.time()
    with pytest.raises(ClusterResourceError) as err:  # the pre-launch check: no actor has started
        check_cluster_resources(cfg)
    assert 1 <= time.time() - start < 10
    message = str(err.value)
    assert "learner: each learner rank asks for 1, the largest node has 0" in message
    assert "The cluster has 1 node(s): [CPU 8" in message and "cluster.resource_wait_s" in message

    start = time.time()  # where the placement group waits (a cluster that lost its learner node)
    with pytest.raises(ClusterResourceError, match=r"the learner group \(1 ranks\) cannot be placed: the cluster "
                       r"lacks learner: each learner rank asks for 1, the largest node has 0\. Waited 1 s"):
        LearnerGroup(cfg, MODEL)
    assert time.time() - start < 10 and _no_pending_placement_groups()

    start = time.time()  # where rollout workers wait: GPUs
    with pytest.raises(ClusterResourceError, match=r"the rollout pool \(1 workers\) cannot be placed: the cluster "
                       r"lacks GPU: each rollout worker asks for 1, the largest node has 0"):
        RolloutPool(_cfg("rollout.num_gpus_per_worker=1"), MODEL)
    assert time.time() - start < 10


class RaisingLearner:  # stands in for learner/actor.py's Learner (whose imports take seconds)
    def __init__(self, *args):
        raise RuntimeError("deepspeed init failed: distinctive-constructor-error-7f3a")

    def ready(self) -> bool:
        return True


class ExitingLearner:
    def __init__(self, *args):
        print("CUDA error: distinctive-stderr-line-91c2 (the process dies without a Python exception)",
              file=sys.stderr, flush=True)
        os._exit(7)

    def ready(self) -> bool:
        return True


@pytest.mark.parametrize("learner, shown", [
    (RaisingLearner, "RuntimeError: deepspeed init failed: distinctive-constructor-error-7f3a"),
    (ExitingLearner, "CUDA error: distinctive-stderr-line-91c2")])
def test_a_failing_actors_own_error_reaches_the_driver(ray_local, monkeypatch, learner, shown):
    from toolmaster.learner import group
    from toolmaster.learner.group import LearnerRankLost

    monkeypatch.setattr(group, "Learner", learner)
    with pytest.raises(LearnerRankLost) as err:
        group.LearnerGroup(_cfg(), MODEL)
    message = str(err.value)
    assert message.startswith("learner rank 0 of 1 failed to start (ActorDiedError)") and shown in message
    if learner is ExitingLearner:  # Ray knows only that the process died: the line comes from its log
        assert "--- the last lines of the actor's log (" in message and ".err) ---" in message
    assert _no_pending_placement_groups()
