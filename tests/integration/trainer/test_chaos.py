"""Chaos on the shared fleet: a rollout worker (its actor or its process) or its vLLM engine process dies
while it holds episodes; every step still trains on exactly B×G episodes, and the pool replaces the worker."""
import os
import random
import signal
import threading
import time

import ray

from tests.integration.trainer.test_grpo import _config


def _kill_one_busy_worker(pool, step: int, killed: list, stop: threading.Event) -> None:
    """Wait until episodes are in flight, then kill a worker that holds some: its actor (even steps) or its
    process (odd steps)."""
    rng = random.Random(step)
    while not stop.is_set():
        busy = sorted(set(pool.assignment.values()))
        if busy:
            wid = rng.choice(busy)
            handle = pool.workers.get(wid)
            if handle is None:
                continue
            held = [eid for eid, w in list(pool.assignment.items()) if w == wid]
            if step % 2:
                os.kill(ray.get(handle.pid.remote()), signal.SIGKILL)
            else:
                ray.kill(handle, no_restart=True)
            killed.append((step, wid, held))
            return
        time.sleep(0.05)


def step_with_a_kill(trainer, step: int, killed: list) -> dict:
    """One GRPO step while a helper thread kills one worker that holds episodes."""
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_busy_worker, args=(trainer.pool, step, killed, stop))
    killer.start()
    try:
        return trainer.step()
    finally:
        stop.set()
        killer.join()


def test_a_worker_killed_in_every_step(fleets, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    steps, b, g = 2, 2, 2  # an actor kill, then a process kill of its replacement
    cfg = _config(tmp_path / "run", 2, steps=steps, extra=["rollout.max_episodes_per_worker=2"])
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    killed, history = [], []
    try:
        for step in range(steps):
            history.append(step_with_a_kill(trainer, step, killed))
    finally:
        trainer.close()
    assert [k[0] for k in killed] == list(range(steps))  # one kill in every step, while it held episodes
    assert all(k[2] for k in killed)
    for step, h in enumerate(history):
        expected = {f"s{step}-t{i}-g{j}" for i in range(b) for j in range(g)}
        assert h["episodes"] == b * g and len(h["episode_ids"]) == b * g
        assert set(h["episode_ids"]) == expected  # none lost, none duplicated
        assert h["version"] == step + 1
    assert history[-1]["workers_replaced"] == steps


def _engine_process(worker_pid: int):
    import psutil

    children = psutil.Process(worker_pid).children(recursive=True)
    named = [p for p in children if "EngineCore" in " ".join([p.name(), *p.cmdline()])]
    return (named or sorted(children, key=lambda p: p.memory_info().rss))[-1]


def test_a_killed_engine_process_is_replaced(fleets, tmp_path, tiny_model_dir):
    """SIGKILL of a busy worker's vLLM engine process (the actor stays alive): the worker is retired and
    replaced, its episodes re-queued, and the step has exactly B×G records, none failed."""
    from toolmaster.trainer.grpo import start_grpo

    steps, b, g = 1, 2, 2
    cfg = _config(tmp_path / "run", 2, steps=steps, extra=["rollout.max_episodes_per_worker=2"])
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    killed, history = [], []

    def kill_engine(step: int, stop: threading.Event) -> None:
        while not stop.is_set():
            busy = sorted(set(trainer.pool.assignment.values()))
            handle = trainer.pool.workers.get(busy[0]) if busy else None
            if handle is not None:
                engine = _engine_process(ray.get(handle.pid.remote()))
                engine.kill()
                killed.append((step, busy[0], engine.pid))
                return
            time.sleep(0.05)

    try:
        for step in range(steps):
            stop = threading.Event()
            killer = threading.Thread(target=kill_engine, args=(step, stop))
            killer.start()
            try:
                history.append(trainer.step())
            finally:
                stop.set()
                killer.join()
            assert all(r.error is None for r in trainer.last_records)
    finally:
        trainer.close()
    assert [k[0] for k in killed] == list(range(steps))
    for step, h in enumerate(history):
        assert set(h["episode_ids"]) == {f"s{step}-t{i}-g{j}" for i in range(b) for j in range(g)}
        assert h["episodes"] == b * g and h["failed_episodes"] == 0
    assert history[-1]["workers_replaced"] == steps
