"""Chaos on the shared fleet: a rollout worker's actor or its vLLM engine process dies while it
holds episodes; every step still trains on exactly B×G episodes, none failed, and the pool replaces the
worker."""
import random
import threading
import time

import pytest
import ray

from tests.integration.trainer.test_grpo import _config


def _engine_process(worker_pid: int):
    import psutil

    children = psutil.Process(worker_pid).children(recursive=True)
    named = [p for p in children if "EngineCore" in " ".join([p.name(), *p.cmdline()])]
    return (named or sorted(children, key=lambda p: p.memory_info().rss))[-1]


def _kill(handle, how: str) -> None:
    if how == "actor":
        ray.kill(handle, no_restart=True)
    else:  # the worker's vLLM engine process; the actor stays alive
        _engine_process(ray.get(handle.pid.remote())).kill()


def _kill_one_busy_worker(pool, step: int, how: str, killed: list, stop: threading.Event) -> None:
    """Wait until episodes are in flight, then kill (``how``) a worker that holds some."""
    rng = random.Random(step)
    while not stop.is_set():
        busy = sorted(set(pool.assignment.values()))
        if busy:
            wid = rng.choice(busy)
            handle = pool.workers.get(wid)
            if handle is None:
                continue
            held = [eid for eid, w in list(pool.assignment.items()) if w == wid]
            _kill(handle, how)
            killed.append((step, wid, held))
            return
        time.sleep(0.05)


def step_with_a_kill(trainer, step: int, killed: list, how: str = "actor") -> dict:
    """One GRPO step while a helper thread kills one worker that holds episodes."""
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_busy_worker, args=(trainer.pool, step, how, killed, stop))
    killer.start()
    try:
        return trainer.step()
    finally:
        stop.set()
        killer.join()


# the object-store variant is left to -m slow (the suite's budget): the pool's re-queueing is the same, and
# the group transport's rebuild, gating and catch-up are what this test adds
@pytest.mark.parametrize("transport", [pytest.param("object_store", marks=pytest.mark.slow), "gloo_group"])
def test_a_killed_worker_and_a_killed_engine_process_are_replaced(fleets, tmp_path, tiny_model_dir, transport):
    """Step 1: a busy worker's actor is killed. Step 2: a busy worker's vLLM engine process is SIGKILLed
    while its actor lives on, so the worker must be retired. Each step re-queues the dead worker's
    episodes and trains on exactly B×G records. Under gloo_group (NCCL's group semantics) the weight group
    is rebuilt over the live workers, and a replacement serves no episode before its engine holds the
    current version: every record is sampled by the step's version, and the replacements' engines match
    the learner."""
    from toolmaster.trainer.grpo import start_grpo

    kills, b, g = ["actor", "engine"], 2, 2
    cfg = _config(tmp_path / "run", 2, steps=len(kills), extra=["rollout.max_episodes_per_worker=2",
                                                               f"rollout.weight_transport={transport}",
                                                               "rollout.weight_sync_timeout_s=30"])
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    pool, first = trainer.pool, None
    killed, history = [], []
    try:
        first = min(pool.workers)
        for step, how in enumerate(kills):
            history.append(step_with_a_kill(trainer, step, killed, how))
            assert all(r.error is None for r in trainer.last_records), how
            assert {r.policy_version for r in trainer.last_records} == {step}
        if transport == "gloo_group":
            assert pool.sync.rebuilds >= 2  # built at the first publish, rebuilt after a replacement
            # the pool's own record: a worker's first episode went out only once it held the current version
            assert all(held >= current for held, current in pool.first_dispatch.values()), pool.first_dispatch
            pool.wait_for_workers(timeout_s=300)
            pool.catch_up()  # the last step's replacement joins the group and loads version 2
            replacements = [wid for wid in pool.workers if wid > first + 1]
            assert replacements and all(pool.held[wid] == 2 for wid in pool.workers)
            seq = max((r.token_ids for r in trainer.last_records), key=len)
            learner = trainer.learners.logprobs([seq])[0]
            for wid in replacements:  # it serves the trained weights, not the initial ones it started with
                engine = ray.get(pool.workers[wid].prompt_logprobs.remote(seq))
                assert max(abs(x - y) for x, y in zip(learner[1:], engine[1:])) < 1e-4
    finally:
        trainer.close()
    assert [k[0] for k in killed] == [0, 1]  # one kill in every step, while it held episodes
    assert all(k[2] for k in killed)
    for step, h in enumerate(history):
        expected = {f"s{step}-t{i}-g{j}" for i in range(b) for j in range(g)}
        assert h["episodes"] == b * g and len(h["episode_ids"]) == b * g and h["failed_episodes"] == 0
        assert set(h["episode_ids"]) == expected  # none lost, none duplicated
        assert h["version"] == step + 1
    assert history[-1]["workers_replaced"] == len(kills)
