"""One learner rank: a DeepSpeed engine (ZeRO stage 2 or 3) inside a Ray actor.

All ranks of a group run the same calls in lockstep (DeepSpeed's collectives require it); each gets its
own shard of the batch. With ``lora.rank > 0`` only low-rank adapters (peft) train; published weights and
checkpoints are the merged model, so rollout engines and checkpoints never need peft. Losses are divided by the
*global* normalizer (masked-token count, or the driver's per-sequence weights) times the world size, because
DeepSpeed averages gradients over ranks: the result is the mean over the whole batch, whatever the number of
ranks or micro-batches.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from toolmaster.learner.losses import TokenLogprobs, grpo_loss, logprob_chunks, sft_loss, token_logprobs
from toolmaster.learner.microbatch import plan_microbatches
from toolmaster.learner.placement import actor_placement
from toolmaster.models.real_shape import tokenizer_file_names
from toolmaster.plan import BUCKET_ELEMENTS


def _pad(seqs: list[list], value) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in seqs])


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _rng_state() -> dict:
    import random

    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def deepspeed_config(learner_cfg: dict) -> dict:
    """The DeepSpeed config a learner rank runs with, from the learner section."""
    zero = {"stage": learner_cfg["zero_stage"], "reduce_bucket_size": BUCKET_ELEMENTS,
            "allgather_bucket_size": BUCKET_ELEMENTS}
    if learner_cfg.get("offload_optimizer"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": learner_cfg.get("backend") == "nccl"}
    return {
        "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
        "gradient_clipping": learner_cfg.get("grad_clip", 1.0),
        "zero_optimization": zero, "bf16": {"enabled": learner_cfg.get("dtype") == "bfloat16"},
        # the optimizer is torch's AdamW (with offload too: DeepSpeedCPUAdam needs a compiled op)
        "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30, "wall_clock_breakdown": False,
    }


def with_lora(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                            target_modules=list(lora["target_modules"]), bias="none"))


def merged_lora_state(peft_model) -> dict:
    """The base model's state dict with each adapter folded into its layer (W + ΔW), without modifying the
    live model; what vLLM serves and the checkpoint holds."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    state = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            state[f"{name}.weight"] = module.base_layer.weight + delta
    for key, value in base.state_dict().items():
        if "lora_" not in key:
            state.setdefault(key.replace(".base_layer", ""), value)
    return state


class Learner:
    def __init__(self, rank: int, world_size: int, master_addr: str, master_port: int, model_dir: str,
                 learner_cfg: dict, seed: int = 0):
        os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": "0",
                           "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port)})
        self.placement = actor_placement(learner_cfg.get("device", "auto"))
        os.environ["DS_ACCELERATOR"] = self.placement.accelerator  # before DeepSpeed picks its accelerator
        import deepspeed
        from transformers import AutoModelForCausalLM  # noqa: F401 — loaded before the memory baseline

        self._start_rss_mb = _rss_mb()  # libraries loaded, no model yet: what memory() measures from
        self.rank, self.world_size = rank, world_size
        deepspeed.init_distributed(dist_backend=learner_cfg.get("backend", "gloo"))
        self.engine = self.ref = None
        self.transport = None  # built on first publish, kept: some transports hold connections
        self.reset(model_dir, learner_cfg, seed)

    def reset(self, model_dir: str, learner_cfg: dict, seed: int = 0) -> None:
        """A fresh learner on ``model_dir``: weights, optimizer and RNG as a new actor would have them. The
        process group stays, so a shared fleet starts its next run without new ranks."""
        import gc

        import deepspeed
        from transformers import AutoModelForCausalLM

        if self.engine is not None:
            self.engine.destroy()
            self.engine = self.ref = self.policy = None
            gc.collect()
        torch.manual_seed(seed)
        self.cfg = learner_cfg
        # loaded in the learner's dtype (DeepSpeed's bf16 mode keeps its own fp32 master copy): a 7B model in
        # fp32 would take 28 GB of host memory per rank before it reaches the GPU
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self._dtype, attn_implementation="sdpa")
        self.tied = bool(model.config.tie_word_embeddings)
        if learner_cfg.get("gradient_checkpointing"):
            model.config.use_cache = False
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lora = learner_cfg.get("lora") or {}
        self.lora = lora.get("rank", 0) > 0
        if self.lora:
            model = with_lora(model, lora)
        # the reference is the frozen starting policy: with LoRA, the same model with its adapters switched
        # off; otherwise a copy outside DeepSpeed
        if learner_cfg.get("kl_beta", 0.0) > 0 and not self.lora:
            self.ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self._dtype).eval().requires_grad_(False)
            self.ref.to(self.placement.device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=learner_cfg["lr"], weight_decay=learner_cfg.get("weight_decay", 0.0))
        self.engine, *_ = deepspeed.initialize(model=TokenLogprobs(model), optimizer=optimizer,
                                               config=deepspeed_config(learner_cfg))
        self.policy = self.engine.module.policy  # the HF model (or its peft wrapper) inside the engine
        # the tokenizer travels with every checkpoint; read once, so later checkpoints never depend on the
        # directory this run started from still existing
        self.tokenizer_files = {name: (Path(model_dir) / name).read_bytes() for name in tokenizer_file_names(model_dir)}
        self.steps = 0

    @property
    def _dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.cfg.get("dtype") == "bfloat16" else torch.float32

    def ready(self) -> int:
        return self.rank

    def memory(self) -> dict:
        """This rank's memory in MB: resident now, the process's peak, and the resident size before the model
        was loaded (peak − start is what the model, optimizer and steps took); CUDA's peak on a GPU."""
        import resource

        out = {"rss_mb": _rss_mb(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "start_rss_mb": self._start_rss_mb}
        if torch.cuda.is_available():
            out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out

    def node_id(self) -> str:
        import ray
        return ray.get_runtime_context().get_node_id()

    def _shard(self, batch: dict) -> dict:
        return {k: v[self.rank::self.world_size] for k, v in batch.items() if isinstance(v, list)}

    def _microbatches(self, shard: dict) -> list[list[int] | None]:
        """This rank's micro-batches, padded with ``None`` (an empty pass) to the largest count over ranks:
        every forward/backward is a collective under ZeRO, so all ranks must run the same number."""
        plan = plan_microbatches([len(s) for s in shard["token_ids"]], self.cfg.get("max_tokens_per_microbatch", 0),
                                 self.cfg.get("max_sequences_per_microbatch", 0))
        return plan + [None] * (self._max_over_ranks(len(plan)) - len(plan))

    def _max_over_ranks(self, value: int) -> int:
        # NCCL reduces only device tensors, gloo only host ones
        count = torch.tensor([value], dtype=torch.int64,
                             device=self.placement.device if self.cfg.get("backend") == "nccl" else "cpu")
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
        return int(count.item())

    def train_step(self, batch: dict, kind: str) -> dict:
        """One optimizer step on this rank's shard, accumulated over token-budget micro-batches; ``kind`` is
        "sft" or "grpo"; ``batch["lr"]``, when given, is this step's learning rate (the driver owns the
        schedule). Every loss term is already divided by the whole batch's normalizer (global token count or
        the driver's per-sequence weights), so the sum over micro-batches does not depend on the budget."""
        if "lr" in batch:
            for group in self.engine.optimizer.param_groups:
                group["lr"] = batch["lr"]
        shard = self._shard(batch)
        self.engine.train()
        micro = self._microbatches(shard)
        loss_sum, tokens, weighted = 0.0, 0.0, {}
        for i, rows in enumerate(micro):
            self.engine.set_gradient_accumulation_boundary(i == len(micro) - 1)
            loss, stats, n = self._micro_loss(shard, rows, kind, batch)
            self.engine.backward(loss)
            loss_sum, tokens = loss_sum + loss.item(), tokens + n
            for key, value in stats.items():  # token-weighted, as if computed over the whole shard; maxima kept
                weighted[key] = max(weighted.get(key, 0.0), value) if key.endswith("_max") else \
                    weighted.get(key, 0.0) + value * n
        self.engine.step()
        self.steps += 1
        stats = ({k: v if k.endswith("_max") else v / tokens for k, v in weighted.items()} if tokens
                 else {k: 0.0 for k in weighted})
        grad_norm = self.engine.get_global_grad_norm()  # before clipping: how hard this update pushed
        if grad_norm is not None:
            stats["grad_norm"] = float(grad_norm)
        return {"loss": loss_sum, "tokens": tokens, "microbatches": len(micro), **stats}

    def _micro_loss(self, shard: dict, rows: list[int] | None, kind: str, batch: dict):
        """(loss, stats, masked tokens) of one micro-batch; ``rows=None`` is an empty pass (zero loss, zero
        gradient) that keeps this rank in step with ranks that have more micro-batches."""
        put = self.placement.put
        if rows is None:
            ids, mask = put(torch.zeros(1, 2, dtype=torch.long)), put(torch.zeros(1, 1))
        else:
            ids = put(_pad([shard["token_ids"][i] for i in rows], 0))
            mask = put(_pad([shard["loss_mask"][i] for i in rows], 0)[:, 1:].float())
        logp = self._logprobs(self.engine, ids)
        if kind == "sft":
            return sft_loss(logp, mask, float(batch["total_tokens"]) / self.world_size), {}, mask.sum().item()
        if rows is None:
            old, adv, weights = torch.zeros_like(mask), put(torch.zeros(1)), put(torch.zeros(1))
        else:
            old = put(_pad([shard["logprobs"][i] for i in rows], 0.0)[:, 1:].float())
            adv = put(torch.tensor([shard["advantages"][i] for i in rows], dtype=torch.float32))
            # the driver's weights sum the batch to its mean; ×K because DeepSpeed averages over ranks
            weights = put(torch.tensor([shard["loss_weights"][i] for i in rows], dtype=torch.float32) * self.world_size)
        ref = self._reference_logprobs(ids) if self.cfg.get("kl_beta", 0.0) > 0 else None
        loss, stats = grpo_loss(logp, old, adv, mask, weights, self.cfg["eps_low"], self.cfg["eps_high"],
                                ref_logp=ref, beta=self.cfg.get("kl_beta", 0.0),
                                clip_ratio_c=self.cfg.get("clip_ratio_c", 3.0))
        return loss, stats, mask.sum().item()

    def _logprobs(self, model, ids: torch.Tensor) -> torch.Tensor:
        """Chunked token logprobs; under ZeRO-3 with as many head calls as the rank that needs most."""
        chunk = self.cfg.get("logprob_chunk_tokens", 0)
        if model is not self.engine:  # the frozen reference: no DeepSpeed, no collectives
            return token_logprobs(model, ids, chunk)
        calls = logprob_chunks(ids.shape[0] * (ids.shape[1] - 1), chunk)
        if self.cfg["zero_stage"] == 3 and chunk > 0:
            calls = self._max_over_ranks(calls)
        return self.engine(input_ids=ids, chunk_tokens=chunk, min_chunks=calls)

    def _reference_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.lora:
                with self.policy.disable_adapter():
                    return self._logprobs(self.engine, ids)
            return self._logprobs(self.ref, ids)

    def logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """Current-policy logprobs of each sequence (position t holds log π(token_t); position 0 is 0)."""
        self.engine.eval()
        out = []
        with torch.no_grad():
            for seq in token_ids:
                ids = self.placement.put(torch.tensor([seq]))
                out.append([0.0] + self._logprobs(self.engine, ids)[0].float().tolist())
        return out

    def _transport(self, name: str):
        from toolmaster.weights import make_transport

        if self.transport is None or self.transport.name != name:
            self.transport = make_transport(name)
        return self.transport

    def transport_call(self, name: str, method: str, *args):
        """Rank 0: one step of a group transport (endpoint, open, send, close: weights/group.py drives them);
        None elsewhere."""
        if self.rank == 0:
            return getattr(self._transport(name), method)(*args)

    def publish(self, version: int, transport: str) -> dict | None:
        state = self.state_dict()
        return self._transport(transport).publish(state, version) if state is not None else None

    def save(self, path: str) -> None:
        """The full training state into the (new) directory ``path``: an HF model directory at its top level
        (what transformers and vLLM load; LoRA merged), DeepSpeed's engine state (ZeRO-partitioned optimizer
        moments, step counters) under ``deepspeed/`` and each rank's RNG streams under ``rng/``. Every rank
        takes the call; the caller makes the directory visible atomically once all have returned."""
        state = self.state_dict()
        if state is not None:
            module = self.policy.get_base_model() if self.lora else self.policy
            if self.tied:
                state.pop("lm_head.weight", None)
            module.save_pretrained(path, state_dict=state, safe_serialization=True)
            for name, data in self.tokenizer_files.items():
                (Path(path) / name).write_bytes(data)
        self.engine.save_checkpoint(os.path.join(path, "deepspeed"), tag="engine", save_latest=False,
                                    client_state={"learner_steps": self.steps})
        rng_dir = Path(path) / "rng"
        rng_dir.mkdir(parents=True, exist_ok=True)
        torch.save(_rng_state(), rng_dir / f"rank{self.rank}.pt")

    def load(self, path: str) -> None:
        """Restore what ``save`` wrote (weights, optimizer moments, step counters, RNG): the run continues as
        if it had never stopped."""
        import random

        _, client = self.engine.load_checkpoint(os.path.join(path, "deepspeed"), tag="engine",
                                                load_optimizer_states=True, load_lr_scheduler_states=False)
        self.steps = (client or {}).get("learner_steps", self.steps)
        rng = torch.load(Path(path) / "rng" / f"rank{self.rank}.pt", weights_only=False)
        random.setstate(rng["python"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def state_dict(self) -> dict | None:
        """Full weights (in the learner's dtype) as an untied HF state dict on rank 0 (None elsewhere), LoRA merged;
        every rank must call it (ZeRO-3 gathers the partitioned parameters collectively)."""
        import deepspeed

        module = self.policy
        params = list(module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=self.cfg["zero_stage"] == 3):
            if self.rank != 0:
                return None
            state = merged_lora_state(module) if self.lora else module.state_dict()
            state = {k: v.detach().clone().contiguous() for k, v in state.items()}
        if "lm_head.weight" not in state or self.tied:
            state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
        return state
