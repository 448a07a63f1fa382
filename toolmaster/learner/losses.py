"""Losses as plain functions of per-token tensors (shape [batch, seq-1], aligned to the predicted token)."""
from __future__ import annotations

import torch


def token_logprobs(model, input_ids: torch.Tensor) -> torch.Tensor:
    """log π(token_t | tokens_<t) for t ≥ 1. Right padding needs no attention mask under causal attention."""
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, total_tokens: float) -> torch.Tensor:
    """Negative log-likelihood summed over masked tokens, divided by the global masked-token count."""
    return -(logp * mask).sum() / total_tokens


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              weights: torch.Tensor, eps_low: float, eps_high: float, ref_logp: torch.Tensor | None = None,
              beta: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Clipped importance-ratio objective (DAPO-style ε_low/ε_high) plus β·KL(π‖π_ref) with the k3
    estimator when a reference is given, summed over the loss mask with a per-sequence weight.
    ``advantages`` and ``weights`` are per sequence; the weights decide the aggregation (1/T for every
    sequence: the token mean over the batch; 1/(N·n_i): the mean of per-sequence token means), see
    toolmaster.trainer.advantages.loss_weights."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None and beta > 0:
        log_r = ref_logp - logp
        kl = torch.exp(log_r) - log_r - 1.0
        per_token = per_token + beta * kl
    loss = (per_token * mask * weights.unsqueeze(-1)).sum()
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        stats = {"clip_fraction": (((ratio - 1.0).abs() > 0) & (unclipped != clipped)).float().mul(mask).sum().item() / n.item(),
                 "ratio_mean": (ratio * mask).sum().item() / n.item(),
                 "kl": (kl * mask).sum().item() / n.item()}
    return loss, stats


def group_advantages(rewards: list[float], group_size: int, std_normalize: bool = True, eps: float = 1e-6) -> list[float]:
    """(r − mean)/(std + ε) within each consecutive group of ``group_size`` (no std: Dr.GRPO)."""
    out = []
    for lo in range(0, len(rewards), group_size):
        group = torch.tensor(rewards[lo: lo + group_size], dtype=torch.float64)
        centered = group - group.mean()
        if std_normalize:
            centered = centered / (group.std(unbiased=False) + eps)
        out.extend(centered.tolist())
    return out
