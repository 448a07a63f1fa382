"""A small random-weight Qwen2 model on a real tokenizer: the path a real model takes (151,665-token
vocabulary, the official chat template, every tokenizer file) at a size this machine trains in seconds.

Its weights are random, so what it samples is noise; tests drive it through the real engines to check the
token bookkeeping (chat template, masks, checkpoints), not what it learns.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from toolmaster.config_base import ConfigError

# files a tokenizer may be made of (fast or slow, BPE or sentencepiece): each is carried along
TOKENIZER_PREFIXES = ("tokenizer", "special_tokens", "chat_template", "added_tokens", "vocab.", "merges.", "spiece.")


def tokenizer_file_names(model_dir: str | Path) -> list[str]:
    return sorted(p.name for p in Path(model_dir).iterdir() if p.is_file() and p.name.startswith(TOKENIZER_PREFIXES))


def build_real_shape_model(cfg, out_dir: str | Path, tokenizer_dir: str | Path, tie_embeddings: bool | None = None
                           ) -> dict:
    """An HF model directory: ``cfg.model``'s small Qwen2 shape with ``tokenizer_dir``'s vocabulary (padded to
    a multiple of 128, as Qwen pads its embeddings), special tokens and chat template; random weights."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    source = Path(tokenizer_dir)
    if not source.is_dir() or not tokenizer_file_names(source):
        raise ConfigError(f"--tokenizer {tokenizer_dir}: not a folder holding tokenizer files")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if not tokenizer.chat_template or tokenizer.eos_token_id is None:
        raise ConfigError(f"--tokenizer {tokenizer_dir}: a chat model's tokenizer needs a chat_template and an "
                          "eos token")
    m = cfg.model
    tie = m.tie_embeddings if tie_embeddings is None else tie_embeddings
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = Qwen2Config(
        vocab_size=-(-len(tokenizer) // 128) * 128, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_kv_heads,
        max_position_embeddings=m.max_position_embeddings, tie_word_embeddings=tie, bos_token_id=pad,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=pad, rope_theta=10000.0, torch_dtype="float32")
    torch.manual_seed(m.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=pad, bos_token_id=pad)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in tokenizer_file_names(source):  # the published files as they are, byte for byte
        shutil.copyfile(source / name, out / name)
    facts = {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": config.vocab_size,
             "tokenizer_tokens": len(tokenizer), "tokenizer": str(source), "tie_word_embeddings": tie,
             "hidden_size": m.hidden_size, "layers": m.num_layers, "head_dim": m.hidden_size // m.num_heads}
    (out / "toolmaster_model.json").write_text(json.dumps(facts, indent=2))
    return facts
