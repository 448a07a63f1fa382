"""`toolmaster plan` and the checks that refuse a config before Ray or any actor starts."""
import json
import shutil

import pytest

from toolmaster.cli import main
from toolmaster.config import ConfigError, build_config, load_config
from toolmaster.models.tiny import TINY_SETTINGS as TINY
from toolmaster.plan import ModelShape, check_learner_plan, check_model_dir, learner_plan


@pytest.mark.parametrize("config", ["configs/qwen2.5-7b-1node.yaml", "configs/qwen2.5-7b-multinode.yaml"])
def test_shipped_7b_configs_fit_80gb_gpus(config, capsys):
    assert main(["plan", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "7.62 B parameters" in out and "DOES NOT FIT" not in out
    assert "learner: FITS" in out and "rollout: FITS" in out


def test_an_oversized_config_is_refused_with_the_numbers(capsys):
    overrides = ["learner.dtype=float32", "learner.gradient_checkpointing=false"]
    assert main(["plan", "--config", "configs/qwen2.5-7b-1node.yaml", *overrides]) == 1
    out = capsys.readouterr().out
    assert "learner: DOES NOT FIT: 234.1 GB at peak per rank (train step 234.1 GB" in out
    cfg = load_config("configs/qwen2.5-7b-1node.yaml", overrides)
    with pytest.raises(ConfigError, match=r"memory plan does not fit \(learner\): 234.1 GB"):
        check_learner_plan(cfg, cfg.model.path)


def test_plan_items_follow_zero_stage_precision_and_checkpointing():
    shape = ModelShape.from_config(json.loads(open("configs/models/qwen2.5-7b-instruct.json").read()))
    assert abs(shape.params - 7.62e9) < 0.01e9  # Qwen2.5-7B's published size

    def plan(*overrides):
        return learner_plan(build_config(TINY, list(overrides)), shape, 16384)

    base = plan("learner.num_ranks=4", "learner.zero_stage=3", "learner.dtype=bfloat16")
    psi = shape.params
    assert base["weights"] == pytest.approx(psi * 2 / 4 / 1e9)
    assert base["optimizer"] == pytest.approx(psi * 12 / 4 / 1e9)  # fp32 master + Adam m, v
    z2 = plan("learner.num_ranks=4", "learner.zero_stage=2", "learner.dtype=bfloat16")
    assert z2["weights"] == pytest.approx(4 * base["weights"])  # ZeRO-2 does not partition the weights
    ckpt = plan("learner.num_ranks=4", "learner.zero_stage=3", "learner.dtype=bfloat16",
                "learner.gradient_checkpointing=true")
    assert ckpt["activations"] < base["activations"] / 10
    off = plan("learner.num_ranks=4", "learner.zero_stage=3", "learner.dtype=bfloat16",
               "learner.offload_optimizer=true")
    assert off["optimizer"] == 0 and off["cpu_offloaded_optimizer"] == pytest.approx(base["optimizer"])
    # publish and checkpoint gather the full model: every ZeRO-3 rank, and rank 0's copy besides
    resident = sum(base[k] for k in ("weights", "gradients", "optimizer", "buffers", "reference"))
    assert base["publish_gather"] == pytest.approx(resident + psi * 2 / 1e9)
    assert base["publish_gather_rank0"] == pytest.approx(resident + 2 * psi * 2 / 1e9)
    assert base["peak"] == max(base["total"], base["publish_gather_rank0"])
    z2_resident = sum(z2[k] for k in ("weights", "gradients", "optimizer", "buffers", "reference"))
    assert z2["publish_gather_rank0"] == pytest.approx(z2_resident + psi * 2 / 1e9)  # ZeRO-2 holds them already


STB = ["--config", "configs/stabletoolbench-gpu.yaml", "--model-config", "configs/models/qwen2.5-7b-instruct.json"]


def test_a_context_the_kv_cache_cannot_hold_is_refused(capsys):
    """StableToolBench's 32k context: on a GPU the engine sizes its cache from gpu_memory_utilization (27 full
    sequences on 80 GB); a fixed 1 GB cache (the old default for every engine) cannot hold one."""
    assert main(["plan", *STB]) == 0
    assert "rollout: FITS: KV cache 50.77 GB (rollout.gpu_memory_gb=80 × 0.85" in capsys.readouterr().out
    assert main(["plan", *STB, "rollout.engine.kv_cache_gb=1"]) == 1
    assert "rollout: DOES NOT FIT: KV cache 1.07 GB (rollout.engine.kv_cache_gb=1) holds 0.6 full-length " \
           "(32768-token) sequences" in capsys.readouterr().out
    cfg = load_config("configs/stabletoolbench-gpu.yaml", ["rollout.engine.kv_cache_gb=1"])
    with pytest.raises(ConfigError, match=r"memory plan does not fit \(rollout\)"):
        check_learner_plan(cfg, "Qwen/Qwen2.5-7B-Instruct")  # planned from configs/models


def _worker_engine_args(monkeypatch, cfg, model_dir, cuda: bool) -> dict:
    """The keywords a rollout worker's VLLMEngine passes to vLLM's AsyncEngineArgs (vLLM faked: only the
    call is recorded)."""
    import sys
    import types

    import torch

    from toolmaster.rollout.engine_args import weight_transfer_backend
    from toolmaster.rollout.vllm_engine import VLLMEngine

    seen = {}

    class Args:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    class Stop(Exception):
        pass

    def from_engine_args(args):
        raise Stop  # nothing past the engine's start matters here

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(AsyncEngineArgs=Args))
    monkeypatch.setitem(sys.modules, "vllm.v1.engine.async_llm", types.SimpleNamespace(
        AsyncLLM=types.SimpleNamespace(from_engine_args=from_engine_args)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    with pytest.raises(Stop):
        VLLMEngine(model_dir, cfg.rollout.engine, cfg.rollout.generation, seed=0,
                   weight_transfer=weight_transfer_backend(cfg))
    return {k: v for k, v in seen.items() if k not in ("model", "seed")}


@pytest.mark.parametrize("overrides, cuda", [
    ([], False),                                                                        # CPU: a fixed 1 GB cache
    (["rollout.num_gpus_per_worker=1", "rollout.engine.max_model_len=1024"], True),     # GPU: utilization sizes it
    (["rollout.num_gpus_per_worker=1", "rollout.engine.kv_cache_gb=3"], True),          # GPU, explicit budget
])
def test_the_plan_computes_exactly_the_engine_arguments_the_worker_passes(monkeypatch, tiny_model_dir, overrides,
                                                                          cuda):
    from toolmaster.plan import planned_engine_args

    cfg = build_config(TINY, overrides)
    shape = ModelShape.from_config(json.loads(open(f"{tiny_model_dir}/config.json").read()))
    worker = _worker_engine_args(monkeypatch, cfg, tiny_model_dir, cuda)
    assert worker == planned_engine_args(cfg, shape)
    assert ("kv_cache_memory_bytes" in worker) == (not cuda or "rollout.engine.kv_cache_gb=3" in overrides)


def test_a_missing_or_broken_model_fails_before_ray_starts(tmp_path, tiny_model_dir, capsys, monkeypatch):
    def no_ray():  # whatever ran before (a shared Ray instance may be up), this command must not start Ray
        raise AssertionError("Ray was started")

    for module in ("toolmaster.ray_utils", "toolmaster.trainer.grpo", "toolmaster.trainer.sft"):
        monkeypatch.setattr(f"{module}.init_ray", no_ray)

    assert main(["grpo", "--model", "/nonexistent", f"run_dir={tmp_path / 'r'}"]) == 2
    assert "--model = '/nonexistent': not a directory" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # no Ray, no wandb, no run directory
    assert main(["sft", "--model", str(tmp_path), "--data", str(tmp_path), f"run_dir={tmp_path / 'r'}"]) == 2
    assert "not a model directory (no config.json)" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "vocab_size": 100}))
    with pytest.raises(ConfigError,
                       match="tokenizer mismatch, the tokenizer has .* tokens but the model's vocab_size is 100"):
        check_model_dir(str(broken))
    # a model directory without Adam moments cannot seed grpo.optimizer_state=checkpoint
    assert main(["grpo", "--model", tiny_model_dir, f"run_dir={tmp_path / 'r'}",
                 "grpo.optimizer_state=checkpoint"]) == 2
    assert "holds no optimizer state" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_microbatch_budget_below_the_longest_sequence_is_refused(tiny_model_dir, capsys, tmp_path):
    cfg = build_config(TINY, ["learner.max_tokens_per_microbatch=512"])
    with pytest.raises(ConfigError, match=r"max_tokens_per_microbatch = 512 is smaller than the longest allowed "
                                          r"sequence \(sft.max_tokens = 1024\)"):
        check_learner_plan(cfg, tiny_model_dir, longest_sequence=cfg.sft.max_tokens, what="sft.max_tokens")
    assert main(["grpo", "--model", tiny_model_dir, f"run_dir={tmp_path / 'r'}",
                 "learner.max_tokens_per_microbatch=512"]) == 2
    assert "longest allowed sequence (the rollout context length = 2048)" in capsys.readouterr().err
