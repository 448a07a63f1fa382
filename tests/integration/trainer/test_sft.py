import json

from toolmaster.config import build_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.protocol import render_text
from toolmaster.trainer.sft import sft_example


def test_sft_mask_covers_exactly_assistant_content(tiny_model_dir, tmp_path, cfg):
    import datasets
    from transformers import AutoTokenizer

    from toolmaster.teacher.synth import synthesize

    synthesize(cfg.model_copy(update={"synth": cfg.synth.model_copy(update={"num_tasks": 5})}), tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for row in datasets.load_from_disk(str(tmp_path)):
        tools = json.loads(row["tools"])
        ids, mask = sft_example(tok, row["messages"], tools)
        assert tok.decode(ids) + "\n" == render_text(row["messages"], tools)
        on = tok.decode([t for t, m in zip(ids, mask) if m])
        expected = "".join(m["content"] + "<|im_end|>" for m in row["messages"] if m["role"] == "assistant")
        assert on == expected


def test_sft_on_the_learner_group(fleets, tiny_model_dir, tmp_path, cfg):
    import math

    import torch
    from transformers import AutoModelForCausalLM

    from toolmaster.config import build_config
    from toolmaster.teacher.synth import synthesize
    from toolmaster.trainer.sft import train_sft

    synthesize(build_config(TINY, ["synth.num_tasks=20"]), tmp_path / "data")
    run_cfg = build_config(TINY, [f"run_dir={tmp_path / 'run'}", "sft.steps=6", "sft.batch_size=4",
                                "learner.zero_stage=2"])
    out = train_sft(run_cfg, tiny_model_dir, str(tmp_path / "data"),
                    learners=fleets.get(run_cfg, tiny_model_dir).learners)
    losses = [h["loss"] for h in out["history"]]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]  # lr 2e-3 from scratch: the protocol's tokens are learned at once
    model = AutoModelForCausalLM.from_pretrained(out["checkpoint"], dtype=torch.float32)
    assert model.config.model_type == "qwen2"
    assert (tmp_path / "run" / "sft_curve.png").exists() and (tmp_path / "run" / "metrics.jsonl").exists()


def test_sft_learning_rate_schedule():
    from toolmaster.trainer.sft import sft_lr

    cfg = build_config(TINY, ["sft.steps=100", "sft.lr=1e-3", "sft.warmup_steps=10", "sft.min_lr_ratio=0.1"]).sft
    lrs = [sft_lr(cfg, s) for s in range(100)]
    assert lrs[0] == 1e-4 and abs(lrs[9] - 1e-3) < 1e-12  # linear warm-up to the peak
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # then never rises
    assert abs(lrs[-1] - 1e-4) < 1e-12  # and ends at min_lr_ratio × peak


def test_sft_refuses_empty_data_before_any_actor_starts(tiny_model_dir, tmp_path):
    """A synthesis that kept nothing (here: 2 turns cannot hold a trial and an execution) writes only its
    summary; SFT names why instead of failing inside the learner."""
    import pytest

    from toolmaster.teacher.synth import synthesize
    from toolmaster.trainer.sft import train_sft

    cfg = build_config(TINY, ["synth.num_tasks=4", "env.max_turns=2", f"run_dir={tmp_path / 'run'}"])
    summary = synthesize(cfg, tmp_path / "data")
    assert summary["kept"] == 0
    with pytest.raises(ValueError, match=r"synthesis kept 0 of 4 teacher episodes .*env.max_turns"):
        train_sft(cfg, tiny_model_dir, str(tmp_path / "data"))
    with pytest.raises(ValueError, match="no such file or folder"):
        train_sft(cfg, tiny_model_dir, str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .jsonl or .json file and no saved dataset"):
        train_sft(cfg, tiny_model_dir, str(tmp_path / "empty"))
    assert not (tmp_path / "run").exists()  # refused before the run directory or Ray
