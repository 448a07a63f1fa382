"""Memory options of the learner on the real DeepSpeed engine: activation checkpointing and optimizer offload
change where memory goes, not the update; bfloat16 trains with fp32 master weights and publishes bf16."""
import torch

from tests.integration.learner.test_microbatch import _batch
from toolmaster.models.tiny import TINY_SETTINGS as TINY


def test_checkpointing_and_offload_keep_the_update_and_bf16_trains(fleets, tiny_model_dir):
    from toolmaster.config import build_config

    options = {"plain": [], "checkpointing": ["learner.gradient_checkpointing=true"],
               "offload": ["learner.offload_optimizer=true"], "bf16": ["learner.dtype=bfloat16"]}
    states = {}
    for name, overrides in options.items():
        run_cfg = build_config(TINY, overrides)
        group = fleets.get(run_cfg, tiny_model_dir).learners
        group.reset(tiny_model_dir, run_cfg)
        losses = [group.train_step(_batch(0), "sft")["loss"], group.train_step(_batch(1), "grpo")["loss"]]
        assert all(torch.isfinite(torch.tensor(losses)))
        states[name] = group._all("state_dict")[0]
    plain = states["plain"]
    for name in ("checkpointing", "offload"):
        assert max((plain[k] - v).abs().max().item() for k, v in states[name].items()) < 1e-6, name
    bf16 = states["bf16"]
    assert all(v.dtype == torch.bfloat16 for v in bf16.values())  # what a bf16 engine loads
    # bf16 compute: close to the fp32 update, not equal to it
    worst = max((plain[k] - v.float()).abs().max().item() for k, v in bf16.items())
    assert 0 < worst < 0.05
