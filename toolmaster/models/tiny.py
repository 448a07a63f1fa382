"""Build the tiny Qwen2-architecture model and its locally trained tokenizer.

No model hub is reachable on laptops/CI, so the embedded default trains a byte-level BPE tokenizer on
protocol text (rendered toolworld trajectories from every split, so names of every split tokenize the
same way), initializes a small Qwen2ForCausalLM and gives it a short copy pre-training (models.pretrain).
The tokenizer uses exactly Qwen2's normalizer and pre-tokenizer: transformers rebuilds those for
model_type=qwen2, and any other choice silently changes ids after a save/load round trip.
"""
from __future__ import annotations

import json
from pathlib import Path

from toolmaster.protocol import CHAT_TEMPLATE, SPECIAL_TOKENS, TAG_TOKENS, render_text

# What the tiny model trains and samples with, beneath a run's own settings (configs/quickstart.yaml holds the
# same; `--tiny` and the tests use them): trained from scratch, its SFT needs a high learning rate, and its
# short episodes small budgets. The library defaults are a 7B model's.
TINY_SETTINGS = {"sft": {"lr": 2e-3, "max_tokens": 1024}, "synth": {"max_tokens": 1024}, "learner": {"lr": 1e-4},
                 "rollout": {"generation": {"max_new_tokens": 96}}, "eval": {"generation": {"max_new_tokens": 96}}}

QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""  # noqa: E501
)


def protocol_corpus(cfg, episodes_per_split: int = 150) -> list[str]:
    """Rendered teacher trajectories (with and without trials) over every toolworld name space."""
    from toolmaster.agent.loop import run_episodes
    from toolmaster.envs.toolworld import ToolWorld
    from toolmaster.envs.toolworld.names import SPLIT_RESIDUE
    from toolmaster.teacher.scripted import _PerToolTeacher
    from toolmaster.tools.base import ToolRunner

    env = ToolWorld(cfg.env.toolworld)
    runner = ToolRunner.from_config(cfg.sandbox)
    texts = []
    try:
        # the splits that own a name space: val draws test's names, and adding its text would re-roll the
        # tokenizer and with it the whole build (measured: SFT held-out 0.94 instead of 0.66)
        for split in SPLIT_RESIDUE:
            for trial in (True, False):
                tasks = env.tasks(split, episodes_per_split, start=10_000_000)  # far from any training index
                # the base model's corpus stays fixed whatever order the SFT data trials in (the per-tool
                # order it was built with): its vocabulary and copy pre-training are a fixed artifact, and a
                # 3-token vocabulary change re-rolls them (measured: copy loss 1.05 instead of 0.09, SFT-400
                # 0.02 instead of 0.79; docs/grpo.md, "Trial phase first")
                teacher = _PerToolTeacher(seed=cfg.model.seed, trial=trial, mistake_rate=0.5)
                for ep in run_episodes(teacher, tasks, env, runner, max_turns=cfg.env.max_turns, trial=trial):
                    texts.append(render_text(ep.messages, ep.tools))
    finally:
        runner.close()
    return texts


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(cfg, out_dir: str | Path, tie_embeddings: bool | None = None, progress=None) -> dict:
    """Write an HF model directory; returns facts about it (parameter count, vocab size, copy pre-training)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    m = cfg.model
    tie = m.tie_embeddings if tie_embeddings is None else tie_embeddings
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = protocol_corpus(cfg)
    tokenizer = train_tokenizer(corpus, m.vocab_size)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_kv_heads,
        max_position_embeddings=m.max_position_embeddings, tie_word_embeddings=tie, bos_token_id=pad,
        eos_token_id=im_end, pad_token_id=pad, rope_theta=10000.0, torch_dtype="float32",
    )
    torch.manual_seed(m.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=im_end, pad_token_id=pad, bos_token_id=pad)
    pretrain = {}
    if m.copy_pretrain_steps:
        from toolmaster.models.pretrain import pretrain_copy

        texts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in corpus]
        used = sorted({t for ids in texts for t in ids})
        pretrain = pretrain_copy(model, used, pad, m.copy_pretrain_steps, seed=m.seed, texts=texts,
                                 max_gap=m.copy_max_gap, progress=progress)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _mark_qwen2_tokenizer(out)
    facts = {"parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
             "tie_word_embeddings": tie, "hidden_size": m.hidden_size, "layers": m.num_layers,
             "head_dim": m.hidden_size // m.num_heads, **pretrain}
    (out / "toolmaster_model.json").write_text(json.dumps(facts, indent=2))
    return facts


def _mark_qwen2_tokenizer(out: Path) -> None:
    # vLLM and AutoTokenizer pick the class from tokenizer_config.json; say Qwen2 so they agree with HF.
    path = out / "tokenizer_config.json"
    data = json.loads(path.read_text())
    data["tokenizer_class"] = "Qwen2Tokenizer"
    data["chat_template"] = CHAT_TEMPLATE
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
