"""Reach: which greedy failures the training sampler solves at least once (what GRPO can learn from)."""
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.evaluation.reach import sample_failures
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def test_reach_on_the_real_fleet(fleets, tiny_model_dir):
    cfg = build_config(TINY, ["rollout.generation.max_new_tokens=16", "env.max_turns=2", "rollout.num_workers=1"])
    tasks = make_env(cfg.env).tasks("test", 3)
    pool = fleets.pool(cfg, tiny_model_dir)
    greedy = [r.to_dict() for r in pool.run_specs([(f"g{i}", t) for i, t in enumerate(tasks)],
                                                  generation=cfg.eval.generation.model_dump())]
    reach = sample_failures(pool, tasks, greedy, samples=2, generation=cfg.rollout.generation.model_dump())
    # an untrained model fails every task greedily and in every sample
    assert (reach["failures"], reach["reachable"], reach["sampled_success"]) == (3, 0, 0.0)
