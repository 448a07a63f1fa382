"""What a config will need, checked before Ray or any actor starts: the model directory is one, the
micro-batch budget holds the longest sequence, and (``toolmaster plan``) per-GPU memory of learner ranks and
rollout engines from the model's config.json alone (no weights loaded).

Learner memory per rank, with Ψ parameters, N ranks, b bytes per element of the learner dtype (2 for
bfloat16, 4 for float32), T the micro-batch token budget:
  weights      Ψ·b (ZeRO-3: Ψ·b/N)
  gradients    Ψ·b/N (ZeRO-2 and 3 partition them)
  optimizer    Adam m and v in fp32 (8Ψ) and ZeRO's fp32 partition of the weights (4Ψ, a separate copy in
               fp32 too); /N; 0 on the GPU with offload
  buffers      DeepSpeed's communication buckets, 2·min(bucket, Ψ)·b
  reference    Ψ·b when kl_beta > 0 (a frozen copy; LoRA reuses the base)
  activations  T·L·(8h + 2·kv + 4·I)·b saved for backward; with gradient checkpointing T·L·h·b (layer
               inputs) plus one layer's T·(8h + 2·kv + 4·I)·b while it is recomputed
  logprobs     the last hidden states T·h·4 plus one chunk of logits C·V·4·3 (logits, log-softmax, gradient)
Publishing weights and saving a checkpoint gather the full model outside the step (``Learner.state_dict``):
every rank holds the gathered parameters (ZeRO-3: +Ψ·b; ZeRO-2 already holds them) and rank 0 a full copy
(+Ψ·b), over the resident weights, gradients, optimizer and buffers. A rank's peak is the larger of the
step and the gather.
Rollout engine per GPU: weights Ψ·b_engine; the KV cache of one token is L·2·kv·b_engine. The engine's
arguments come from ``rollout.engine_args`` (what the worker passes to vLLM): an explicit KV-cache budget,
or on a GPU what is left of gpu_memory_utilization × memory after weights and ``_ENGINE_OVERHEAD_GB``. A
context whose one full-length sequence does not fit that cache is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from toolmaster.config import ConfigError
from toolmaster.rollout.engine_args import engine_args, weight_transfer_backend

_GB = 1e9
BUCKET_ELEMENTS = int(5e7)  # DeepSpeed reduce/all-gather bucket size the learner configures (deepspeed_config)
_ENGINE_OVERHEAD_GB = 2.0  # vLLM's activation workspace and CUDA context, beside weights and KV cache
_KNOWN_MODELS = Path(__file__).resolve().parent.parent / "configs" / "models"


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    max_positions: int

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        heads = config["num_attention_heads"]
        return cls(hidden=config["hidden_size"], layers=config["num_hidden_layers"], heads=heads,
                   kv_heads=config.get("num_key_value_heads", heads),
                   head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                   intermediate=config["intermediate_size"], vocab=config["vocab_size"],
                   tied=bool(config.get("tie_word_embeddings", False)),
                   max_positions=config.get("max_position_embeddings", 0))

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def params(self) -> int:
        """Parameter count of a Qwen2/Llama-style decoder (attention projections with biases, SwiGLU MLP)."""
        h, q = self.hidden, self.heads * self.head_dim
        attention = h * q + q + 2 * (h * self.kv_dim + self.kv_dim) + q * h
        layer = attention + 3 * h * self.intermediate + 2 * h
        return self.vocab * h * (1 if self.tied else 2) + self.layers * layer + h

    @property
    def activation_elements_per_token_layer(self) -> int:
        return 8 * self.hidden + 2 * self.kv_dim + 4 * self.intermediate


def model_config_path(model: str | None, explicit: str | None = None) -> Path:
    """config.json of ``explicit``, of the model directory ``model``, or of a known model named like its last
    path component (configs/models/, for planning a cluster run on a machine without the weights)."""
    if explicit:
        path = Path(explicit)
        return path / "config.json" if path.is_dir() else path
    if model and (Path(model) / "config.json").exists():
        return Path(model) / "config.json"
    if model and (_KNOWN_MODELS / f"{Path(model).name.lower()}.json").exists():
        return _KNOWN_MODELS / f"{Path(model).name.lower()}.json"
    raise ConfigError(f"model.path = {model!r} has no config.json here; pass --model-config FILE "
                      f"(known: {sorted(p.stem for p in _KNOWN_MODELS.glob('*.json'))})")


def check_model_dir(path: str | None, setting: str = "--model") -> None:
    """A directory transformers and vLLM can load: config.json, weights, a tokenizer that fits the vocabulary."""
    if not path:
        raise ConfigError(f"{setting}: no model given")
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"{setting} = {path!r}: not a directory")
    if not (p / "config.json").exists():
        raise ConfigError(f"{setting} = {path!r}: not a model directory (no config.json)")
    if not any(p.glob("*.safetensors")) and not any(p.glob("pytorch_model*.bin")):
        raise ConfigError(f"{setting} = {path!r}: no weights (*.safetensors or pytorch_model*.bin)")
    if not (p / "tokenizer.json").exists() and not (p / "tokenizer_config.json").exists():
        raise ConfigError(f"{setting} = {path!r}: no tokenizer (tokenizer.json / tokenizer_config.json)")
    from transformers import AutoTokenizer

    vocab = json.loads((p / "config.json").read_text()).get("vocab_size")
    tokens = len(AutoTokenizer.from_pretrained(path))
    if vocab is not None and tokens > vocab:
        raise ConfigError(f"{setting} = {path!r}: tokenizer mismatch, the tokenizer has {tokens} tokens but the "
                          f"model's vocab_size is {vocab}")


def longest_rollout_sequence(cfg, shape: ModelShape) -> int:
    """The longest sequence a rollout can produce: the engine's context length."""
    return cfg.rollout.engine.max_model_len or shape.max_positions


def learner_plan(cfg, shape: ModelShape, longest: int) -> dict:
    """Per-rank learner memory in GB, by item (see the module docstring for the formulas)."""
    lc = cfg.learner
    n, b, psi = lc.num_ranks, 2 if lc.dtype == "bfloat16" else 4, shape.params
    lora = lc.lora.rank > 0
    trainable = psi if not lora else _lora_params(cfg, shape)
    tokens = lc.max_tokens_per_microbatch or longest * max(
        1, (cfg.grpo.prompts_per_step * cfg.grpo.group_size) // n)  # budget off: the whole shard in one pass
    per_token_layer = shape.activation_elements_per_token_layer
    if lc.gradient_checkpointing:
        activations = tokens * (shape.layers * shape.hidden + per_token_layer) * b
    else:
        activations = tokens * shape.layers * per_token_layer * b
    chunk = lc.logprob_chunk_tokens or tokens
    optimizer_bytes = 12 * trainable / n  # ZeRO keeps its own fp32 partition copy even when training in fp32
    items = {
        "weights": psi * b / (n if lc.zero_stage == 3 and not lora else 1),
        "gradients": trainable * b / n,
        "optimizer": 0.0 if lc.offload_optimizer else optimizer_bytes,
        "buffers": 2 * min(BUCKET_ELEMENTS, trainable) * b,
        "reference": psi * b if lc.kl_beta > 0 and not lora else 0.0,
        "activations": activations,
        "logprobs": tokens * shape.hidden * 4 + min(chunk, tokens) * shape.vocab * 4 * 3,
    }
    plan = {k: v / _GB for k, v in items.items()}
    plan["total"] = sum(plan.values())
    resident = sum(plan[k] for k in ("weights", "gradients", "optimizer", "buffers", "reference"))
    full = psi * b / _GB
    gathered = full if lc.zero_stage == 3 and not lora else 0.0
    plan["publish_gather"] = resident + gathered  # every rank while the weights are gathered
    plan["publish_gather_rank0"] = resident + gathered + full  # and rank 0's copy of the full state dict
    plan["peak"] = max(plan["total"], plan["publish_gather_rank0"])
    plan["cpu_offloaded_optimizer"] = optimizer_bytes / _GB if lc.offload_optimizer else 0.0
    plan["microbatch_tokens"] = tokens
    return plan


def _lora_params(cfg, shape: ModelShape) -> int:
    h, q, r = shape.hidden, shape.heads * shape.head_dim, cfg.learner.lora.rank
    sizes = {"q_proj": (h, q), "k_proj": (h, shape.kv_dim), "v_proj": (h, shape.kv_dim), "o_proj": (q, h),
             "gate_proj": (h, shape.intermediate), "up_proj": (h, shape.intermediate),
             "down_proj": (shape.intermediate, h)}
    return shape.layers * sum(r * (i + o) for name, (i, o) in sizes.items() if name in cfg.learner.lora.target_modules)


def planned_engine_args(cfg, shape: ModelShape) -> dict:
    """What a rollout worker passes to vLLM for this config (its GPUs from rollout.num_gpus_per_worker)."""
    return engine_args(cfg.rollout.engine, longest_rollout_sequence(cfg, shape), cfg.rollout.num_gpus_per_worker > 0,
                       weight_transfer_backend(cfg))


def rollout_plan(cfg, shape: ModelShape) -> dict:
    e = cfg.rollout.engine
    b = 4 if e.dtype == "float32" else 2
    args = planned_engine_args(cfg, shape)
    max_len = args["max_model_len"]
    weights = shape.params * b / _GB
    kv_per_token = shape.layers * 2 * shape.kv_dim * b
    plan = {"weights": weights, "kv_per_sequence": kv_per_token * max_len / _GB, "max_model_len": max_len,
            "kv_full_batch": kv_per_token * max_len * e.max_num_seqs / _GB, "engine_args": args}
    if "kv_cache_memory_bytes" in args:
        plan["kv_available"], plan["kv_source"] = args["kv_cache_memory_bytes"] / _GB, "kv_cache_gb"
    elif cfg.rollout.gpu_memory_gb:
        budget = cfg.rollout.gpu_memory_gb * e.gpu_memory_utilization
        plan["kv_available"] = budget - weights - _ENGINE_OVERHEAD_GB
        plan["kv_source"] = "gpu_memory_utilization"
    if "kv_available" in plan:
        plan["full_length_sequences"] = plan["kv_available"] * _GB / (kv_per_token * max_len)
    return plan


def verdicts(cfg, shape: ModelShape) -> dict:
    """{check: (fits, reason)}: the micro-batch budget, and each role whose GPU memory is declared."""
    out = {}
    longest = longest_rollout_sequence(cfg, shape)
    budget = cfg.learner.max_tokens_per_microbatch
    if budget:
        out["micro-batch"] = (budget >= longest, f"learner.max_tokens_per_microbatch={budget} against the longest "
                                                 f"rollout sequence ({longest} tokens)")
    if cfg.learner.gpu_memory_gb:
        lp = learner_plan(cfg, shape, longest)
        out["learner"] = (lp["peak"] <= cfg.learner.gpu_memory_gb,
                          f"{lp['peak']:.1f} GB at peak per rank (train step {lp['total']:.1f} GB, weight gather at "
                          f"publish/checkpoint {lp['publish_gather_rank0']:.1f} GB on rank 0) of "
                          f"learner.gpu_memory_gb={cfg.learner.gpu_memory_gb:g}")
    r = rollout_plan(cfg, shape)
    if "full_length_sequences" in r:
        e = cfg.rollout.engine
        source = (f"rollout.engine.kv_cache_gb={e.kv_cache_gb:g}" if e.kv_cache_gb is not None else
                  "1 GB (vLLM on CPU)" if r["kv_source"] == "kv_cache_gb" else
                  f"rollout.gpu_memory_gb={cfg.rollout.gpu_memory_gb:g} × {e.gpu_memory_utilization:g} less "
                  f"{r['weights']:.1f} GB weights and {_ENGINE_OVERHEAD_GB:g} GB overhead")
        fits = r["full_length_sequences"] >= 1
        if fits and e.kv_cache_gb is not None and cfg.rollout.gpu_memory_gb:
            fits = r["weights"] + r["kv_available"] + _ENGINE_OVERHEAD_GB <= cfg.rollout.gpu_memory_gb
        out["rollout"] = (fits, f"KV cache {r['kv_available']:.2f} GB ({source}) holds "
                                f"{r['full_length_sequences']:.1f} full-length ({r['max_model_len']}-token) sequences")
    return out


def check_learner_plan(cfg, model_dir: str, longest_sequence: int | None = None, what: str = "") -> None:
    """Refuse, before launch, a micro-batch budget below the longest sequence, bfloat16 without a backend for
    it, and a memory plan over the declared GPU memory."""
    lc = cfg.learner
    shape = ModelShape.from_config(json.loads(model_config_path(model_dir).read_text()))
    if longest_sequence is None:
        longest_sequence, what = longest_rollout_sequence(cfg, shape), "the rollout context length"
    if lc.max_tokens_per_microbatch and longest_sequence > lc.max_tokens_per_microbatch:
        raise ConfigError(f"learner.max_tokens_per_microbatch = {lc.max_tokens_per_microbatch} is smaller than the "
                          f"longest allowed sequence ({what} = {longest_sequence}); raise it or lower {what}")
    if lc.dtype == "bfloat16":
        _check_bf16(lc)
    for role, (fits, reason) in verdicts(cfg, shape).items():
        if not fits and role != "micro-batch":  # checked above against this run's own longest sequence
            raise ConfigError(f"memory plan does not fit ({role}): {reason}; see `toolmaster plan`")


def _check_bf16(lc) -> None:
    import torch

    if lc.num_gpus_per_rank and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        raise ConfigError("learner.dtype = 'bfloat16': this machine's GPUs cannot do bfloat16")


def render(cfg, shape: ModelShape, source: str) -> str:
    longest = longest_rollout_sequence(cfg, shape)
    lp, rp = learner_plan(cfg, shape, longest), rollout_plan(cfg, shape)
    lc = cfg.learner
    lines = [f"model: {source}: {shape.params / 1e9:.2f} B parameters, {shape.layers} layers, hidden {shape.hidden}, "
             f"vocab {shape.vocab}",
             f"learner rank ({lc.num_ranks} ranks, ZeRO-{lc.zero_stage}, {lc.dtype}, micro-batch "
             f"{lp['microbatch_tokens']} tokens, "
             f"gradient checkpointing {'on' if lc.gradient_checkpointing else 'off'}, "
             f"optimizer offload {'on' if lc.offload_optimizer else 'off'}):"]
    for key in ("weights", "gradients", "optimizer", "buffers", "reference", "activations", "logprobs", "total"):
        lines.append(f"  {key:<12} {lp[key]:8.2f} GB")
    lines.append(f"  publish/checkpoint gather: {lp['publish_gather']:.2f} GB per rank, "
                 f"{lp['publish_gather_rank0']:.2f} GB on rank 0; peak {lp['peak']:.2f} GB")
    if lp["cpu_offloaded_optimizer"]:
        lines.append(f"  (optimizer states on CPU: {lp['cpu_offloaded_optimizer']:.2f} GB per rank)")
    lines += [f"rollout engine ({cfg.rollout.engine.dtype}, max_model_len {rp['max_model_len']}, "
              f"max_num_seqs {cfg.rollout.engine.max_num_seqs}):",
              f"  weights      {rp['weights']:8.2f} GB",
              f"  KV cache     {rp['kv_per_sequence']:8.2f} GB per full-length sequence, "
              f"{rp['kv_full_batch']:.2f} GB for max_num_seqs of them"]
    for role, (fits, reason) in verdicts(cfg, shape).items():
        lines.append(f"{role}: {'FITS' if fits else 'DOES NOT FIT'}: {reason}")
    if not lc.gpu_memory_gb and not cfg.rollout.gpu_memory_gb:
        lines.append("no verdict: set learner.gpu_memory_gb / rollout.gpu_memory_gb to check against your GPUs")
    lines.append("formulas: toolmaster/plan.py (module docstring)")
    return "\n".join(lines)
