"""A dead learner rank stops the run with a clear error; `--resume` continues from the last checkpoint (on the
shared fleet, whose learner group is started again: tests/integration/fleets.py)."""
import ray

from tests.integration.trainer.test_grpo import _config


def test_a_dead_learner_rank_stops_the_run_and_resume_continues(fleets, tmp_path, tiny_model_dir):
    import pytest

    from toolmaster.learner.group import LearnerRankLost
    from toolmaster.trainer.grpo import start_grpo

    cfg = _config(tmp_path / "run", 2, steps=4)  # a checkpoint every 2 steps
    trainer = start_grpo(cfg, tiny_model_dir, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        trainer.step()
        trainer.step()  # checkpoint after step 2
        ray.kill(trainer.learners.actors[1])
        # raised as soon as rank 1's call fails, not after rank 0 gives up waiting in the collective
        with pytest.raises(LearnerRankLost, match="learner rank 1 of 2 died during train_step"):
            trainer.step()
    finally:
        trainer.close()
    resumed = start_grpo(cfg, tiny_model_dir, resume=True, fleet=fleets.get(cfg, tiny_model_dir))
    try:
        assert resumed.step_index == 2 and resumed.version == 2
        assert resumed.step()["task_ids"] == [t.id for t in resumed._tasks(2)]
    finally:
        resumed.close()
