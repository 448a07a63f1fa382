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


class _Sender:
    """Learner rank 0's part in weight sync without DeepSpeed: the model's weights, nudged per version,
    published through the run's transport (gloo_group: a real group with the pool's workers)."""

    def __init__(self, model_dir: str):
        import tempfile

        from safetensors.torch import load_file

        from toolmaster.rollout.worker import untied_export
        self.base = load_file(f"{untied_export(model_dir, tempfile.mkdtemp())}/model.safetensors")
        self.transports = {}

    def _transport(self, name):
        from toolmaster.weights import make_transport
        return self.transports.setdefault(name, make_transport(name))

    def stage(self, version: int, transport: str) -> dict:
        import torch
        g = torch.Generator().manual_seed(version)
        state = {k: v + 0.05 * torch.randn(v.shape, generator=g).to(v.dtype) for k, v in self.base.items()}
        return self._transport(transport).publish(state, version)

    def transport_call(self, name, method, *args):
        return getattr(self._transport(name), method)(*args)


@pytest.mark.parametrize("transport", [pytest.param("object_store", marks=pytest.mark.slow), "gloo_group"])
def test_pool_grows_under_queue_pressure_and_drains_back_when_idle(ray_local, tiny_model_dir, transport):
    """Through real workers on local Ray (tests/system/cluster/test_autoscaling_cluster.py adds nodes, -m slow),
    with a publish after the pool grew and one after it shrank. Under gloo_group (NCCL's group semantics) the
    added worker joins the weight group by a rebuild and serves no episode before it holds the current
    version, and the group is rebuilt over the one worker left."""
    import ray

    from toolmaster.envs import make_env
    from toolmaster.rollout.pool import RolloutPool
    from toolmaster.weights.group import GroupSync

    cfg = build_config(TINY, ["rollout.max_episodes_per_worker=1", "rollout.generation.max_new_tokens=48",
                            "env.max_turns=4", "rollout.num_cpus_per_worker=0.5", "rollout.autoscale.enabled=true",
                            "rollout.autoscale.min_workers=1", "rollout.autoscale.max_workers=2",
                            "rollout.autoscale.down_cooldown_s=75",  # no shrink before both engines were compared
                            f"rollout.weight_transport={transport}"])
    pool = RolloutPool(cfg, tiny_model_dir)
    sender = ray.remote(num_cpus=0)(_Sender).remote(tiny_model_dir)
    if transport == "gloo_group":
        pool.set_sync(GroupSync(transport, sender, timeout_s=30))

    def publish(version):
        pool.update_weights(ray.get(sender.stage.remote(version, transport)))

    try:
        assert len(pool.workers) == 1
        # 8 episodes, one at a time per worker: 7 queued beyond the one worker's capacity
        tasks = make_env(cfg.env).tasks("test", 8)
        records = pool.run(tasks[:4], group_size=2, step=0)
        assert sorted(r.episode_id for r in records) == sorted(f"s0-t{i}-g{g}" for i in range(4) for g in range(2))
        ups = [e for e in pool.events if e["action"] == "scale_up"]
        assert ups and ups[0]["workers_after"] == 2 and "queued" in ups[0]["reason"]
        publish(1)  # the added worker may still be starting: then it catches up before its first episode
        # the added worker's engine may still be starting (how long depends on the machine's load): the next
        # batch waits for it, and both serve it
        pool.wait_for_workers(timeout_s=300)
        more = pool.run(tasks[4:], group_size=2, step=1)
        assert len({r.worker for r in more}) == 2  # the added worker served episodes
        assert {r.policy_version for r in more} == {1}
        seq = max((r.token_ids for r in more), key=len)  # both engines serve version 1's weights
        a, b = ray.get([w.prompt_logprobs.remote(seq) for w in pool.workers.values()])
        assert max(abs(x - y) for x, y in zip(a[1:], b[1:])) < 1e-4
        if transport == "gloo_group":
            assert pool.first_dispatch[max(pool.workers)] == (1, 1)  # its first episode: only once it held v1
            assert set(pool.sync.members) == set(pool.workers)
        deadline = time.time() + 90
        while len(pool.workers) > 1 and time.time() < deadline:
            pool.tick()  # idle: one worker drains and leaves after the cool-down
            time.sleep(0.5)
        assert len(pool.workers) == 1
        downs = [e for e in pool.events if e["action"] == "scale_down"]
        assert len(downs) == 1 and "idle" in downs[0]["reason"]
        publish(2)
        assert pool.held == dict.fromkeys(pool.workers, 2)
        if transport == "gloo_group":  # the group was rebuilt over the worker left
            assert set(pool.sync.members) == set(pool.workers) and pool.sync.rebuilds >= 2
    finally:
        pool.shutdown()
        ray.kill(sender)
