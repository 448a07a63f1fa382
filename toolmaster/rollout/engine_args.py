"""The arguments a rollout worker's vLLM engine starts with; ``toolmaster plan`` reads the same ones, so the
memory it reports is the memory the engine is given. Importable without vLLM."""
from __future__ import annotations

GiB = 1 << 30
CPU_KV_CACHE_GB = 1.0  # vLLM on CPU has no memory profiler to size the cache: a fixed budget


def engine_args(engine_cfg, max_len: int, on_gpu: bool, weight_transfer: str | None = None) -> dict:
    """vLLM ``AsyncEngineArgs`` keywords (besides model and seed). On a GPU, ``gpu_memory_utilization`` sizes the
    KV cache (vLLM profiles what the weights and activations leave); an explicit ``kv_cache_gb`` overrides it,
    and on CPU it is the only budget."""
    args = {"dtype": engine_cfg.dtype, "max_model_len": max_len, "enforce_eager": engine_cfg.enforce_eager,
            "max_num_seqs": engine_cfg.max_num_seqs, "gpu_memory_utilization": engine_cfg.gpu_memory_utilization,
            "disable_log_stats": True}
    kv_gb = engine_cfg.kv_cache_gb if engine_cfg.kv_cache_gb is not None else (None if on_gpu else CPU_KV_CACHE_GB)
    if kv_gb is not None:
        args["kv_cache_memory_bytes"] = int(kv_gb * GiB)
    if not on_gpu:
        # Every turn samples with its own seed. When a seeded request's prefill is split over engine steps,
        # vLLM rewinds that request's generator after the partial step, which CPU generators cannot do (the
        # engine dies: "CPU Generator does not use offset"). On CPU, prefills are therefore never split.
        args.update(enable_chunked_prefill=False, max_num_batched_tokens=max(max_len, 2048))
    if weight_transfer:
        args["weight_transfer_config"] = {"backend": weight_transfer}
    return args


def weight_transfer_backend(cfg) -> str | None:
    """vLLM's weight-transfer backend for the config's weight transport (None: the transport loads the weights
    itself, from disk or from tensors it received)."""
    return "nccl" if cfg.rollout.weight_transport == "nccl" else None
