"""Seeded sampling on the real engine: per-episode seeds reproduce an episode on a busy engine whose step
budget cannot hold every prompt at once (on CPU a split prefill of a seeded request killed the engine)."""
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.rollout.vllm_engine import episode_seed


def test_episode_seeds_differ_by_episode_and_turn():
    assert episode_seed(0, "s0-t0-g0", 0) == episode_seed(0, "s0-t0-g0", 0)
    assert len({episode_seed(0, f"s0-t0-g{g}", t) for g in range(8) for t in range(4)}) == 32
    assert episode_seed(0, "s0-t0-g0", 0) != episode_seed(1, "s0-t0-g0", 0)


def test_a_busy_engine_samples_each_episode_reproducibly(fleets, tiny_model_dir):
    cfg = build_config(TINY, ["rollout.generation.max_new_tokens=16", "env.max_turns=2", "rollout.num_workers=1"])
    tasks = make_env(cfg.env).tasks("train", 12)  # 24 prompts of ≈ 300 tokens arrive at once: > 2048 per step
    pool = fleets.pool(cfg, tiny_model_dir)
    specs = [(f"e{i}-g{g}", task) for i, task in enumerate(tasks) for g in range(2)]
    first = pool.run_specs(specs)
    again = pool.run_specs(list(reversed(specs)))  # the same episodes, batched in another order
    pool.cfg.rollout.max_episodes_per_worker = 3  # and in small batches: the cap changes speed only
    capped = pool.run_specs(specs[:6])
    by_id = {r.episode_id: r.token_ids for r in again}
    assert sum(len(r.token_ids) for r in first) > 2048 * 2
    same = [r.token_ids == by_id[r.episode_id] for r in first]
    assert all(same), f"{same.count(False)} of {len(same)} episodes sampled differently"
    assert [r.token_ids for r in capped] == [r.token_ids for r in first[:6]]
    assert any(first[2 * i].token_ids != first[2 * i + 1].token_ids for i in range(12))  # G episodes differ
