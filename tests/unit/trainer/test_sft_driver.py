"""The SFT driver against a recording learner group: data order, schedule and checkpoints, no actors."""
import pytest

from tests.fakes import RecordingLearners
from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.teacher.synth import synthesize
from toolmaster.trainer.sft import sft_lr, train_sft


def test_sft_feeds_the_learners_in_a_fixed_order_with_its_schedule(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr("toolmaster.trainer.sft.init_ray", lambda: None)  # nothing here needs Ray
    synthesize(build_config(TINY, ["synth.num_tasks=12"]), tmp_path / "data")
    cfg = build_config(TINY, [f"run_dir={tmp_path / 'run'}", "sft.steps=4", "sft.batch_size=3", "sft.warmup_steps=2",
                            "sft.lr=1e-3", "sft.checkpoint_every=2"])
    learners = RecordingLearners()
    out = train_sft(cfg, tiny_model_dir, str(tmp_path / "data"), learners=learners)
    model_dir, run_cfg = learners.reset_to
    assert model_dir == tiny_model_dir and run_cfg.learner.lr == 1e-3  # the learners start on sft.lr
    assert [kind for _, kind in learners.batches] == ["sft"] * 4
    assert [b["lr"] for b, _ in learners.batches] == pytest.approx([sft_lr(cfg.sft, s) for s in range(4)])
    assert all(len(b["token_ids"]) == 3 and b["total_tokens"] == sum(map(sum, b["loss_mask"]))
               for b, _ in learners.batches)
    assert [p.rsplit("/", 1)[-1].startswith(".step-") or "step-" in p for p in learners.saved] == [True, True]
    assert len(out["history"]) == 4

    again = RecordingLearners()
    train_sft(cfg.model_copy(update={"run_dir": str(tmp_path / "run2")}), tiny_model_dir, str(tmp_path / "data"),
              learners=again)
    assert [b["token_ids"] for b, _ in again.batches] == [b["token_ids"] for b, _ in learners.batches]
