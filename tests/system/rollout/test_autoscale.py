"""Autoscaling: the policy's decisions (unit), and the pool growing under queue pressure and draining back
when idle, through real rollout workers."""
import time

import pytest

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.rollout.autoscale import AutoscalePolicy


def _policy(**kw):
    overrides = [f"rollout.autoscale.{k}={v}" for k, v in {"enabled": True, "min_workers": 1, "max_workers": 3,
                                                          "up_cooldown_s": 0, "down_cooldown_s": 10, **kw}.items()]
    return AutoscalePolicy(build_config(TINY, overrides).rollout.autoscale)


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
        build_config(TINY, ["rollout.autoscale.min_workers=3", "rollout.autoscale.max_workers=2"])


def test_pool_grows_under_queue_pressure_and_drains_back_when_idle(ray_local, tiny_model_dir):
    """Through real workers on local Ray (tests/system/cluster/test_autoscaling_cluster.py adds nodes, -m slow)."""
    from toolmaster.envs import make_env
    from toolmaster.rollout.pool import RolloutPool

    cfg = build_config(TINY, ["rollout.max_episodes_per_worker=1", "rollout.generation.max_new_tokens=48",
                            "env.max_turns=4", "rollout.num_cpus_per_worker=0.5", "rollout.autoscale.enabled=true",
                            "rollout.autoscale.min_workers=1", "rollout.autoscale.max_workers=2",
                            "rollout.autoscale.down_cooldown_s=45"])  # no shrink between the two batches
    pool = RolloutPool(cfg, tiny_model_dir)
    try:
        assert len(pool.workers) == 1
        # 8 episodes, one at a time per worker: 7 queued beyond the one worker's capacity
        tasks = make_env(cfg.env).tasks("test", 8)
        records = pool.run(tasks[:4], group_size=2, step=0)
        assert sorted(r.episode_id for r in records) == sorted(f"s0-t{i}-g{g}" for i in range(4) for g in range(2))
        ups = [e for e in pool.events if e["action"] == "scale_up"]
        assert ups and ups[0]["workers_after"] == 2 and "queued" in ups[0]["reason"]
        # the added worker's engine may still be starting (how long depends on the machine's load): the next
        # batch waits for it, and both serve it
        pool.wait_for_workers(timeout_s=300)
        more = pool.run(tasks[4:], group_size=2, step=1)
        assert len({r.worker for r in more}) == 2  # the added worker served episodes
        deadline = time.time() + 60
        while len(pool.workers) > 1 and time.time() < deadline:
            pool.tick()  # idle: one worker drains and leaves after the cool-down
            time.sleep(0.5)
        assert len(pool.workers) == 1
        downs = [e for e in pool.events if e["action"] == "scale_down"]
        assert len(downs) == 1 and "idle" in downs[0]["reason"]
    finally:
        pool.shutdown()
