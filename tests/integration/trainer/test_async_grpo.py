"""Async GRPO: step s+1's episodes are generated while step s trains; staleness is bounded."""
from tests.integration.trainer.test_grpo import _config


def test_async_steps_use_one_version_old_episodes_and_no_older(fleets, tmp_path, tiny_model_dir):
    from toolmaster.trainer.grpo import start_grpo

    cfg = _config(tmp_path / "run", 2, steps=4, extra=["grpo.async_rollouts=true", "grpo.max_staleness=1"])
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        history = [trainer.step() for _ in range(3)]
        trainer.cfg.grpo.max_staleness = 0  # the last step may train on current-version episodes only
        history.append(trainer.step())
    finally:
        trainer.close()
    for step, h in enumerate(history):
        trained_from = step  # the version the learner held when it trained step `step`
        assert h["version"] == step + 1 and h["episodes"] == 4 and len(set(h["episode_ids"])) == 4
        assert all(trained_from - v <= (1 if step < 3 else 0) for v in h["policy_versions"])
        assert "rollout_hidden_fraction" in h and h["time/rollout_generate"] > 0
    # steps 1 and 2 trained on episodes sampled by the previous version (prefetched during the step before)
    assert history[1]["policy_versions"][0] == 0 and history[2]["policy_versions"][0] == 1
    assert history[1]["staleness_max"] == 1 and history[1]["stale_resampled"] == 0
    # with max_staleness 0 the prefetched (version 2) episodes were all sampled again on version 3
    assert history[3]["stale_resampled"] == 4 and history[3]["policy_versions"] == [3]
