"""Token-budget micro-batches: how one rank's shard is split so that memory is set by configuration, not by
the batch. A micro-batch's cost is its padded size (sequences × longest sequence); sequences are sorted by
length first, so each micro-batch holds sequences of similar length and padding stays small."""
from __future__ import annotations


class MicrobatchBudgetError(ValueError):
    """A sequence is longer than the micro-batch token budget allows."""


def plan_microbatches(lengths: list[int], max_tokens: int = 0, max_sequences: int = 0) -> list[list[int]]:
    """Index lists (into ``lengths``) of the micro-batches; longest first. ``max_tokens`` bounds a micro-batch's
    padded tokens and ``max_sequences`` its sequence count; 0 leaves that bound off (one micro-batch)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    plans, current, width = [], [], 0
    for i in order:
        if max_tokens and lengths[i] > max_tokens:
            raise MicrobatchBudgetError(f"a sequence of {lengths[i]} tokens exceeds "
                                        f"learner.max_tokens_per_microbatch={max_tokens}")
        grown = max(width, lengths[i])
        too_many = bool(max_sequences) and len(current) + 1 > max_sequences
        too_wide = bool(max_tokens) and grown * (len(current) + 1) > max_tokens
        if current and (too_many or too_wide):
            plans.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        width = grown
    if current:
        plans.append(current)
    return plans
