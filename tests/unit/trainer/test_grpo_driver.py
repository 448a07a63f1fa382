"""The GRPO driver against a scripted pool and a recording learner group: advantages, dynamic sampling,
per-episode settings, held-out evaluation cadence, keep-best and saved rollouts, in milliseconds."""
import json

import pytest

from tests.fakes import RecordingLearners, ScriptedPool
from toolmaster.config import build_config
from toolmaster.envs import make_env
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.trainer.grpo import GRPOTrainer
from toolmaster.trainer.run_dir import RunDir


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def _trainer(tmp_path, outcome, *overrides):
    cfg = build_config(TINY, [f"run_dir={tmp_path / 'run'}", "grpo.prompts_per_step=2", "grpo.group_size=4",
                            "grpo.steps=4", *overrides])
    pool, learners = ScriptedPool(outcome), RecordingLearners()
    trainer = GRPOTrainer(cfg, make_env(cfg.env), pool, learners, RunDir(cfg, "grpo"), model_dir=str(tmp_path / "base"))
    return trainer, pool, learners


def _half_right(task, episode_id, settings):
    return episode_id.endswith(("g0", "g1"))


def test_a_step_trains_on_group_normalized_advantages_and_publishes_the_next_version(tmp_path):
    trainer, pool, learners = _trainer(tmp_path, _half_right, "grpo.updates_per_step=2")
    metrics = trainer.step()
    trainer.close()
    assert metrics["version"] == 1 and pool.handles == [{"version": 1, "ref": None}]
    assert metrics["episodes"] == 8 and metrics["success"] == 0.5 and metrics["train/updates"] == 2
    batch = [a for b, kind in learners.batches for a in b["advantages"] if kind == "grpo"]
    assert len(batch) == 8 and sorted(batch) == pytest.approx([-1.0] * 4 + [1.0] * 4, rel=1e-5)  # (r − mean) / std
    assert all(kind == "grpo" and b["lr"] > 0 for b, kind in learners.batches)


def test_each_episode_carries_the_runs_settings_and_evaluation_is_greedy(tmp_path):
    trainer, pool, _ = _trainer(tmp_path, _half_right, "env.max_turns=3", "rewards.format=0.5",
                                "synth.trial=false", "grpo.eval_every=1", "grpo.eval_tasks=3", "grpo.seed=7")
    trainer.step()
    trainer.close()
    train, evaluation = pool.calls[1], pool.calls[2]  # the start model's evaluation came first
    s = train["settings"]
    assert (s.env.max_turns, s.rewards.format, s.trial, s.seed) == (3, 0.5, False, 7)
    assert s.generation.temperature == 1.0 and evaluation["settings"].generation.temperature == 0.0
    assert pool.calls[0]["episode_ids"] == [f"eval-v0-{i}" for i in range(3)]


def test_dynamic_sampling_refills_with_new_tasks_until_b_groups_vary(tmp_path):
    trainer, pool, learners = _trainer(tmp_path, lambda t, e, s: e.startswith("s0-r1-") and e.endswith("g0"),
                                       "grpo.filter_groups=true", "grpo.max_sampling_rounds=3")
    metrics = trainer.step()
    trainer.close()
    assert metrics["sampling_rounds"] == 2 and metrics["groups_kept"] == 2 and metrics["groups_dropped"] == 2
    assert [c["episode_ids"][0] for c in pool.calls] == ["s0-t0-g0", "s0-r1-t0-g0"]
    assert set(metrics["trained_episode_ids"]) == {f"s0-r1-t{i}-g{g}" for i in range(2) for g in range(4)}
    first_round, refill = metrics["task_ids"], [t.id for t in trainer._tasks(0, 1)]
    assert first_round == refill  # the kept tasks are the refill's, new positions in the data
    assert len(learners.batches[0][0]["advantages"]) + len(learners.batches[1][0]["advantages"]) == 8


def test_nothing_informative_trains_nothing_and_publishes_nothing(tmp_path):
    trainer, pool, learners = _trainer(tmp_path, lambda t, e, s: True, "grpo.filter_groups=true",
                                       "grpo.max_sampling_rounds=1")
    metrics = trainer.step()
    trainer.close()
    assert metrics["train/updates"] == 0 and metrics["version"] == 0 and not pool.handles and not learners.batches


def test_keep_best_names_the_first_top_evaluation_and_cadence_follows_eval_every(tmp_path):
    scores = {0: 0.0, 2: 1.0, 4: 1.0}  # version -> held-out success

    def outcome(task, episode_id, settings):
        if episode_id.startswith("eval-v"):
            return scores[int(episode_id[6:].split("-")[0])] > 0.5
        return episode_id.endswith("g0")

    trainer, _, learners = _trainer(tmp_path, outcome, "grpo.eval_every=2", "grpo.eval_tasks=2",
                                    "grpo.keep_best=true", "grpo.eval_split=val", "grpo.updates_per_step=1")
    for _ in range(4):
        trainer.step()
    trainer.close()
    rows = RunDir.read(tmp_path / "run")
    assert sorted(r["step"] for r in rows if "eval/success" in r) == [0, 2, 4]
    assert trainer.best["step"] == 2 and trainer.best["score"] == 1.0  # a tie keeps the earlier model
    assert (tmp_path / "run" / "checkpoints" / "best").resolve().name == "step-000002"
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["best"] == trainer.best


def test_saved_rollouts_say_what_each_episode_trained(tmp_path):
    trainer, _, _ = _trainer(tmp_path, _half_right, "grpo.save_rollouts=true")
    metrics = trainer.step()
    trainer.close()
    saved = [json.loads(line) for line in (tmp_path / "run" / "rollouts" / "step-000001.jsonl").open()]
    assert [e["episode_id"] for e in saved] == metrics["episode_ids"]
    assert all(e["advantage"] is not None and e["trained_turns"] == [0] for e in saved)
