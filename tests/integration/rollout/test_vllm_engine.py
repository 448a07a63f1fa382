"""Seeded sampling on the real engine: per-episode seeds reproduce an episode on a busy engine whose step
budget cannot hold every prompt at once (on CPU a split prefill of a seeded request killed the engine)."""
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.rollout.vllm_engine import episode_seed


def test_episode_seeds_differ_by_episode_and_turn():
    assert episode_seed(0, "s0-t0-g0", 0) == episode_seed(0, "s0-t0-g0", 0)
    assert len({episode_seed(0, f"s0-t0-g{g}", t) for g in range(8) for t in range(4)}) == 32
    assert episode_seed(0, "s0-t0-g0", 0) != episode_seed(1, "s0-t0-g0", 0)


def test_a_busy_engine_samples_each_episode_reproducibly(ray_local, tiny_model_dir):
    from toolmaster.rollout.pool import RolloutPool

    cfg = build_config({}, ["rollout.generation.max_new_tokens=16", "env.max_turns=2", "rollout.num_workers=1"])
    tasks = make_env(cfg.env).tasks("train", 12)  # 24 prompts of ≈ 300 tokens arrive at once: > 2048 per step
    pool = RolloutPool(cfg, tiny_model_dir)
    try:
        specs = [(f"e{i}-g{g}", task) for i, task in enumerate(tasks) for g in range(2)]
        first = pool.run_specs(specs)
        again = pool.run_specs(list(reversed(specs)))  # the same episodes, batched in another order
        pool.cfg.rollout.max_episodes_per_worker = 3  # and in small batches: the cap changes speed only
        capped = pool.run_specs(specs[:6])
    finally:
        pool.shutdown()
    by_id = {r["episode_id"]: r["token_ids"] for r in again}
    assert sum(len(r["token_ids"]) for r in first) > 2048 * 2
    same = [r["token_ids"] == by_id[r["episode_id"]] for r in first]
    assert all(same), f"{same.count(False)} of {len(same)} episodes sampled differently"
    assert [r["token_ids"] for r in capped] == [r["token_ids"] for r in first[:6]]
    assert any(first[2 * i]["token_ids"] != first[2 * i + 1]["token_ids"] for i in range(12))  # G episodes differ


def test_min_p_truncates_the_sampler_through_the_engine(ray_local, tiny_model_dir):
    """``rollout.generation.min_p`` reaches vLLM's sampler: at min_p=1 only the most likely token survives,
    so temperature-1 sampling writes the greedy text; at min_p=0 it does not. The recorded logprobs stay the
    raw policy's (vLLM's raw_logprobs), which the learner's importance ratio compares against."""
    from toolmaster.rollout.pool import RolloutPool

    cfg = build_config({}, ["rollout.generation.max_new_tokens=12", "env.max_turns=1", "rollout.num_workers=1"])
    tasks = make_env(cfg.env).tasks("train", 4)
    pool = RolloutPool(cfg, tiny_model_dir)
    try:
        specs = [(f"e{i}", task) for i, task in enumerate(tasks)]

        def run(name, **generation):
            return pool.run_specs([(f"{name}-{eid}", t) for eid, t in specs],
                                  generation={"max_new_tokens": 12, **generation})
        greedy = run("greedy", temperature=0.0)
        truncated = run("minp1", temperature=1.0, min_p=1.0)
        free = run("free", temperature=1.0, min_p=0.0)
    finally:
        pool.shutdown()
    assert [r["token_ids"] for r in truncated] == [r["token_ids"] for r in greedy]
    assert [r["token_ids"] for r in free] != [r["token_ids"] for r in greedy]  # the untrained model is near-uniform
    # raw logprobs: an untrained model's greedy tokens are far from probability 1
    assert max(lp for r in truncated for lp, m in zip(r["logprobs"], r["loss_mask"]) if m) < -1.0
