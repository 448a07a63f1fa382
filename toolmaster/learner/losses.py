"""Losses as plain functions of per-token tensors (shape [batch, seq-1], aligned to the predicted token)."""
from __future__ import annotations

import torch


def _backbone_and_head(model):
    """The transformer body (hidden states after the final norm) and the output projection of an HF causal
    LM, seen through a peft wrapper."""
    module = model
    if hasattr(module, "get_base_model"):  # peft: the base model with its adapters injected
        module = module.get_base_model()
    return getattr(module, module.base_model_prefix), module.get_output_embeddings()


def _selected_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def logprob_chunks(positions: int, chunk_tokens: int) -> int:
    """How many vocabulary projections ``token_logprobs`` makes over ``positions`` predicted tokens."""
    return 1 if chunk_tokens <= 0 else max(1, -(-positions // chunk_tokens))


def token_logprobs(model, input_ids: torch.Tensor, chunk_tokens: int = 0, min_chunks: int = 1) -> torch.Tensor:
    """log π(token_t | tokens_<t) for t ≥ 1. Right padding needs no attention mask under causal attention.

    With ``chunk_tokens > 0`` the vocabulary projection runs over at most that many positions at a time and
    is recomputed in backward (activation checkpointing of the head), so the full [tokens × vocab] logits
    never exist: peak memory is O(chunk × vocab) in forward and backward. 0: one projection over all.
    ``min_chunks`` pads with projections of one position that add exactly zero: under ZeRO-3 every call of
    the head gathers its weight collectively, so all ranks must make the same number of calls."""
    body, head = _backbone_and_head(model)
    hidden = body(input_ids=input_ids).last_hidden_state[:, :-1]
    targets = input_ids[:, 1:]
    if chunk_tokens <= 0 or (min_chunks <= 1 and targets.numel() <= chunk_tokens):
        return _selected_logprobs(head, hidden, targets)
    from torch.utils.checkpoint import checkpoint

    def project(h, t):
        if torch.is_grad_enabled():
            return checkpoint(_selected_logprobs, head, h, t, use_reentrant=False)
        return _selected_logprobs(head, h, t)

    flat_h, flat_t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    parts = [project(flat_h[lo: lo + chunk_tokens], flat_t[lo: lo + chunk_tokens])
             for lo in range(0, flat_t.numel(), chunk_tokens)]
    out = torch.cat(parts).view_as(targets)
    for _ in range(min_chunks - len(parts)):
        out = out + 0.0 * project(flat_h[:1], flat_t[:1]).sum()
    return out


class TokenLogprobs(torch.nn.Module):
    """The policy as DeepSpeed runs it: token ids in, token logprobs out. The whole computation goes through
    the engine's forward, which ZeRO needs (it counts micro-steps and gathers parameters there)."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, input_ids: torch.Tensor, chunk_tokens: int = 0, min_chunks: int = 1) -> torch.Tensor:
        return token_logprobs(self.policy, input_ids, chunk_tokens, min_chunks)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, total_tokens: float) -> torch.Tensor:
    """Negative log-likelihood summed over masked tokens, divided by the global masked-token count."""
    return -(logp * mask).sum() / total_tokens


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              weights: torch.Tensor, eps_low: float, eps_high: float, ref_logp: torch.Tensor | None = None,
              beta: float = 0.0, clip_ratio_c: float = 3.0) -> tuple[torch.Tensor, dict]:
    """Clipped importance-ratio objective (DAPO-style ε_low/ε_high) plus β·KL(π‖π_ref) with the k3
    estimator when a reference is given, summed over the loss mask with a per-sequence weight.
    Dual clip (verl's ``clip_ratio_c``): PPO's clip leaves −ratio·A unbounded for a negative advantage, so a
    token whose learner logprob far exceeds the sampler's (a bf16 engine/learner mismatch outlier) could
    dominate an update; its per-token loss is capped at −c·A. The old logprobs are the sampler's own, so
    there is no recomputed π_old to correct with a truncated importance weight.
    ``advantages`` and ``weights`` are per sequence; the weights decide the aggregation (1/T for every
    sequence: the token mean over the batch; 1/(N·n_i): the mean of per-sequence token means), see
    toolmaster.trainer.advantages.loss_weights."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    negative = adv < 0
    capped = torch.minimum(per_token, -clip_ratio_c * adv)
    per_token = torch.where(negative, capped, per_token)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None and beta > 0:
        log_r = ref_logp - logp
        kl = torch.exp(log_r) - log_r - 1.0
        per_token = per_token + beta * kl
    loss = (per_token * mask * weights.unsqueeze(-1)).sum()
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        clipped_tokens = ((ratio - 1.0).abs() > 0) & (unclipped != clipped)
        dual = negative & (ratio > clip_ratio_c)
        stats = {"clip_fraction": clipped_tokens.float().mul(mask).sum().item() / n.item(),
                 "dual_clip_fraction": dual.float().mul(mask).sum().item() / n.item(),
                 "ratio_mean": (ratio * mask).sum().item() / n.item(),
                 "ratio_max": (ratio * mask).max().item() if mask.any() else 0.0,
                 "kl": (kl * mask).sum().item() / n.item()}
    return loss, stats
