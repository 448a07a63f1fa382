"""One learner rank: a DeepSpeed engine (ZeRO stage 2 or 3) inside a Ray actor.

All ranks of a group run the same calls in lockstep (DeepSpeed's collectives require it); each gets its
own shard of the batch. With ``lora.rank > 0`` only low-rank adapters (peft) train; published weights and
checkpoints are the merged model, so rollout engines and checkpoints never need peft. Losses are divided by the *global* masked-token count times the world size,
because DeepSpeed averages gradients over ranks: the result is the token-level mean over the whole batch.
"""
from __future__ import annotations

import os

import torch

from toolmaster.learner.losses import grpo_loss, sft_loss, token_logprobs


def _pad(seqs: list[list], value) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in seqs])


def _node_ip() -> str:
    import ray
    return ray.util.get_node_ip_address()


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
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        import deepspeed
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        self.rank, self.world_size, self.cfg = rank, world_size, learner_cfg
        deepspeed.init_distributed(dist_backend=learner_cfg.get("backend", "gloo"))
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
        self.tied = bool(model.config.tie_word_embeddings)
        lora = learner_cfg.get("lora") or {}
        self.lora = lora.get("rank", 0) > 0
        if self.lora:
            model = with_lora(model, lora)
        self.ref = None
        # the reference is the frozen starting policy: with LoRA, the same model with its adapters switched
        # off; otherwise a copy outside DeepSpeed
        if learner_cfg.get("kl_beta", 0.0) > 0 and not self.lora:
            self.ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval().requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=learner_cfg["lr"], weight_decay=learner_cfg.get("weight_decay", 0.0))
        ds_config = {
            "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
            "gradient_clipping": learner_cfg.get("grad_clip", 1.0),
            "zero_optimization": {"stage": learner_cfg["zero_stage"]},
            "zero_allow_untested_optimizer": True, "steps_per_print": 1 << 30, "wall_clock_breakdown": False,
        }
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
        self.steps = 0
        self.transport = None  # built on first publish, kept: some transports hold connections

    def ready(self) -> int:
        return self.rank

    def node_id(self) -> str:
        import ray
        return ray.get_runtime_context().get_node_id()

    def _shard(self, batch: dict) -> dict:
        return {k: v[self.rank::self.world_size] for k, v in batch.items() if isinstance(v, list)}

    def _tensors(self, shard: dict):
        ids = _pad(shard["token_ids"], 0)
        mask = _pad(shard["loss_mask"], 0)[:, 1:].float()
        return ids, mask

    def train_step(self, batch: dict, kind: str) -> dict:
        """One optimizer step on this rank's shard; ``kind`` is "sft" or "grpo"; ``batch["lr"]``, when given,
        is this step's learning rate (the driver owns the schedule)."""
        if "lr" in batch:
            for group in self.engine.optimizer.param_groups:
                group["lr"] = batch["lr"]
        shard = self._shard(batch)
        self.engine.train()
        ids, mask = self._tensors(shard)
        logp = token_logprobs(self.engine, ids)
        stats = {}
        if kind == "sft":
            loss = sft_loss(logp, mask, float(batch["total_tokens"]) / self.world_size)
        else:
            old = _pad(shard["logprobs"], 0.0)[:, 1:].float()
            adv = torch.tensor(shard["advantages"], dtype=torch.float32)
            # the driver's weights sum the batch to its mean; ×K because DeepSpeed averages over ranks
            weights = torch.tensor(shard["loss_weights"], dtype=torch.float32) * self.world_size
            ref = self._reference_logprobs(ids) if self.cfg.get("kl_beta", 0.0) > 0 else None
            loss, stats = grpo_loss(logp, old, adv, mask, weights, self.cfg["eps_low"], self.cfg["eps_high"],
                                    ref_logp=ref, beta=self.cfg.get("kl_beta", 0.0))
        self.engine.backward(loss)
        self.engine.step()
        self.steps += 1
        local_tokens = mask.sum().item()
        grad_norm = self.engine.get_global_grad_norm()  # before clipping: how hard this update pushed
        if grad_norm is not None:
            stats["grad_norm"] = float(grad_norm)
        return {"loss": loss.item(), "tokens": local_tokens, **stats}

    def _reference_logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.lora:
                with self.engine.module.disable_adapter():
                    return token_logprobs(self.engine, ids)
            return token_logprobs(self.ref, ids)

    def logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """Current-policy logprobs of each sequence (position t holds log π(token_t); position 0 is 0)."""
        self.engine.eval()
        out = []
        with torch.no_grad():
            for seq in token_ids:
                lp = token_logprobs(self.engine, torch.tensor([seq]))[0].tolist()
                out.append([0.0] + lp)
        return out

    def _transport(self, name: str):
        from toolmaster.weights import make_transport

        if self.transport is None or self.transport.name != name:
            self.transport = make_transport(name)
        return self.transport

    def connect_transport(self, name: str, workers: list, master_port: int) -> None:
        """Rank 0: open a transport that needs a connection to the engines (NCCL); a no-op elsewhere."""
        if self.rank == 0:
            self._transport(name).connect(workers, _node_ip(), master_port)

    def publish(self, version: int, transport: str) -> dict | None:
        state = self.state_dict()
        return self._transport(transport).publish(state, version) if state is not None else None

    def save(self, path: str, tokenizer_dir: str) -> None:
        """An HF model directory (transformers and vLLM load it), written atomically: a temp dir, then rename."""
        import shutil

        state = self.state_dict()
        if state is None:
            return
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        module = self.engine.module.get_base_model() if self.lora else self.engine.module
        if self.tied:
            state.pop("lm_head.weight", None)
        module.save_pretrained(tmp, state_dict=state, safe_serialization=True)  # with LoRA: the merged model
        for name in os.listdir(tokenizer_dir):
            if name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(os.path.join(tokenizer_dir, name), tmp)
        old = path + ".old"
        if os.path.exists(path):
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)

    def state_dict(self) -> dict | None:
        """Full fp32 weights as an untied HF state dict on rank 0 (None elsewhere), LoRA adapters merged in;
        every rank must call it (ZeRO-3 gathers the partitioned parameters collectively)."""
        import deepspeed

        module = self.engine.module
        params = list(module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=self.cfg["zero_stage"] == 3):
            if self.rank != 0:
                return None
            state = merged_lora_state(module) if self.lora else module.state_dict()
            state = {k: v.detach().clone().contiguous() for k, v in state.items()}
        if "lm_head.weight" not in state or self.tied:
            state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
        return state
