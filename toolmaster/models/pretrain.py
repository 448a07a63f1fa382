"""A short self-supervised "base model" stage for the tiny model: copying.

Agentic SFT needs a model that can copy a token it has just read (names, values, error hints). Learned
from task data alone, a 1–5M-parameter model sits on a plateau for thousands of steps; on pure copy
sequences the induction mechanism forms within a few hundred steps (both measured: docs/architecture.md,
"Tiny model"). Each sequence is ``x GAP SEP x`` — x random tokens the protocol uses, or a window of
protocol text; GAP a window of protocol text, empty unless ``max_gap`` is set — with the loss on the
second x only.

The gap was tried because an agent copies names from far back (the question sits 200–600 tokens before a
second hop's call), while the default model copies spans only from under 25 tokens back. It does teach far
copying, but SFT on such a model learns the protocol far more slowly (loss 0.188 against 0.010 after 400
steps), so it is off by default (docs/grpo.md, "What limits the gain").
"""
from __future__ import annotations

import contextlib
import os
import random
import time


def copy_batch(rng: random.Random, vocab: list[int], sep: int, batch: int, min_len: int, max_len: int,
               texts: list[list[int]] | None = None, max_gap: int = 0):
    """Half the spans are uniform random tokens (copying must not depend on what the tokens are), half
    are windows of real protocol text (what the agent will copy from), when ``texts`` are given. A batch
    with a gap holds as many tokens as a gapless batch of ``batch`` rows (at least 4 rows), so long
    distances cost no more per step."""
    import torch

    n = rng.randint(min_len, max_len)  # one length and one gap per batch: no padding, no attention mask
    gap = rng.randint(0, max_gap) if max_gap else 0
    rows_wanted = min(batch, max(4, batch * (2 * max_len + 1) // (2 * n + 1 + gap)))
    span_texts, gap_texts = _longer_than(texts, n), _longer_than(texts, gap)  # once per batch, not per row
    rows, masks = [], []
    for _ in range(rows_wanted):
        x = _window(rng, span_texts, n) if rng.random() < 0.5 else None
        x = x or [rng.choice(vocab) for _ in range(n)]
        filler = (_window(rng, gap_texts, gap) or [rng.choice(vocab) for _ in range(gap)]) if gap else []
        rows.append(x + filler + [sep] + x)
        masks.append([0] * (n + gap + 1) + [1] * n)
    return torch.tensor(rows), torch.tensor(masks)


def text_window(rng: random.Random, texts: list[list[int]] | None, n: int) -> list[int] | None:
    """n consecutive tokens of a random text long enough, or None when there is none."""
    return _window(rng, _longer_than(texts, n), n)


def _longer_than(texts: list[list[int]] | None, n: int) -> list[list[int]]:
    return [t for t in (texts or []) if len(t) > n]


def _window(rng: random.Random, long_texts: list[list[int]], n: int) -> list[int] | None:
    if not long_texts:
        return None
    text = rng.choice(long_texts)
    lo = rng.randrange(len(text) - n)
    return text[lo: lo + n]


@contextlib.contextmanager
def all_cores():
    """The build runs alone in the driver before any actor starts, so it may use every core (the CLI pins
    OMP_NUM_THREADS=1 for the actors' sake); measured 0.135 → 0.082 s per copy step on 2 cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pretrain_copy(model, vocab: list[int], sep: int, steps: int, lr: float = 2e-3, batch: int = 32,
                  min_len: int = 4, max_len: int = 24, seed: int = 0, texts: list[list[int]] | None = None,
                  max_gap: int = 0, progress=None) -> dict:
    """Train ``model`` in place; returns the first and last losses (and, with a gap, the loss at full gap on
    fresh batches). Gaps start halfway and grow linearly to ``max_gap``: with far copies from the first step
    the induction mechanism never forms (measured: loss 6.6 → 3.8 after 1500 steps, against 0.10 without)."""
    import torch

    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    model.train()
    losses, start, ramp_from = [], time.time(), steps // 2
    with all_cores():
        for step in range(steps):
            gap = max_gap * max(0, step + 1 - ramp_from) // max(steps - ramp_from, 1)
            loss = copy_loss(model, *copy_batch(rng, vocab, sep, batch, min_len, max_len, texts, gap))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if progress:
                progress(step + 1, steps)
        model.eval()
        facts = {}
        if max_gap:
            fresh = random.Random(seed + 1)
            with torch.no_grad():
                far = [copy_loss(model, *copy_batch(fresh, vocab, sep, batch, min_len, max_len, texts,
                                                     max_gap)).item() for _ in range(8)]
            facts["copy_loss_up_to_max_gap"] = round(sum(far) / len(far), 3)
    tail = losses[-20:]
    return {"copy_steps": steps, "copy_max_gap": max_gap, "copy_loss_first": round(losses[0], 3) if losses else None,
            "copy_loss_last": round(sum(tail) / len(tail), 3) if tail else None, **facts,
            "copy_seconds": round(time.time() - start, 1)}


def copy_loss(model, ids, mask):
    """Mean next-token loss on the copied span only."""
    import torch

    logits = model(ids).logits[:, :-1]
    target, m = ids[:, 1:], mask[:, 1:].float()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                            reduction="none").view_as(m)
    return (nll * m).sum() / m.sum()
