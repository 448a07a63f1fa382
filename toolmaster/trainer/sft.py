"""The SFT driver: teacher trajectories → assistant-token NLL on the same learner group as GRPO."""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from toolmaster import console
from toolmaster.config import check_runtime
from toolmaster.config_base import ConfigError
from toolmaster.learner.group import LearnerGroup
from toolmaster.plan import check_learner_plan, check_model_dir
from toolmaster.protocol.template import ChatFormat, chat_format, turn_spans
from toolmaster.ray_utils import check_cluster_resources, init_ray, learner_demand
from toolmaster.trainer.checkpoints import Checkpoints, has_engine_state
from toolmaster.trainer.run_dir import RunDir
from toolmaster.trainer.sft_data import BadRow, load_rows


def sft_example(tokenizer, messages: list[dict], tools: list[dict], chat: ChatFormat | None = None
                ) -> tuple[list[int], list[int]]:
    """Token ids of the conversation in the model's chat format, through its last assistant turn, and a mask
    that is 1 exactly on each assistant turn and its end-of-turn token (what the policy would have to
    generate). Tokenized span by span, as a rollout builds its ids."""
    ids, mask = [], []
    spans, _ = turn_spans(chat or chat_format(tokenizer), messages, tools)
    for text, sampled in spans:
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(toks)
        mask.extend([int(sampled)] * len(toks))
    return ids, mask


def prepare_examples(source: str, tokenizer, max_tokens: int) -> tuple[list[tuple[list[int], list[int]]], list[BadRow]]:
    """Every usable row of ``source`` as (ids, mask) in the model's chat format; the others as BadRows
    (malformed, not renderable by the template, longer than ``max_tokens``)."""
    chat = chat_format(tokenizer)
    rows, bad = load_rows(source)
    examples = []
    for row in rows:
        try:
            ids, mask = sft_example(tokenizer, row.messages, row.tools, chat)
        except Exception as err:  # noqa: BLE001 — a template's own raise_exception, or one it cannot extend
            bad.append(BadRow(row.where, f"the chat template cannot render it ({type(err).__name__}: {err})"))
            continue
        if len(ids) > max_tokens:
            bad.append(BadRow(row.where, f"too long: {len(ids)} tokens > sft.max_tokens={max_tokens}"))
            continue
        examples.append((ids, mask))
    return examples, bad


def drop_summary(bad: list[BadRow]) -> str:
    long = sum(b.reason.startswith("too long") for b in bad)
    return f"{len(bad) - long} malformed, {long} too long"


def load_examples(source: str, tokenizer, sft_cfg) -> list[tuple[list[int], list[int]]]:
    """The run's examples; a ConfigError (before any actor starts) when more than ``sft.max_bad_fraction``
    of the rows cannot be used or none can. Always says how many rows were dropped and why."""
    examples, bad = prepare_examples(source, tokenizer, sft_cfg.max_tokens)
    total = len(examples) + len(bad)
    if bad:
        console.note(f"SFT data {source}: {total} rows, {len(bad)} dropped ({drop_summary(bad)}); first: {bad[0]}")
    shown = "\n".join(f"  {b}" for b in bad[:5])
    if not examples:
        raise ConfigError(f"sft data {source!r}: no usable row of {total}" + (f":\n{shown}" if bad else ""))
    if len(bad) > sft_cfg.max_bad_fraction * total:
        raise ConfigError(f"sft data {source!r}: {len(bad)} of {total} rows cannot be used ({drop_summary(bad)}), "
                          f"more than sft.max_bad_fraction={sft_cfg.max_bad_fraction}:\n{shown}\n"
                          "(`toolmaster data check` lists them all)")
    return examples


def check_sft_data(data_dir: str) -> None:
    """A synthesis that kept no trajectory writes only its summary: say why it kept none."""
    summary = Path(data_dir) / "summary.json"
    if summary.is_file() and not (Path(data_dir) / "dataset_info.json").is_file():
        facts = json.loads(summary.read_text())
        raise ConfigError(f"sft data {data_dir!r} is empty: synthesis kept {facts.get('kept')} of "
                          f"{facts.get('num_tasks')} teacher episodes (dropped: {facts.get('dropped_reasons')}; "
                          "e.g. env.max_turns too small for trial and execution, or synth.max_tokens too small)")


def sft_lr(sft_cfg, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak at the last step."""
    if step < sft_cfg.warmup_steps:
        return sft_cfg.lr * (step + 1) / sft_cfg.warmup_steps
    span = max(sft_cfg.steps - sft_cfg.warmup_steps - 1, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min((step - sft_cfg.warmup_steps) / span, 1.0)))
    return sft_cfg.lr * (sft_cfg.min_lr_ratio + (1 - sft_cfg.min_lr_ratio) * cosine)


def train_sft(cfg, model_dir: str, data_dir: str, resume: bool = False, learners: LearnerGroup | None = None) -> dict:
    """SFT on ``learners`` (reset to this run's start model and settings) or on a learner group of its own,
    which it shuts down."""
    from transformers import AutoTokenizer

    check_runtime(cfg)
    start_from = (RunDir.checkpoint_of(cfg.run_dir) if resume else None) or model_dir
    check_model_dir(start_from, "--model")
    cfg = cfg.model_copy(deep=True)
    cfg.learner.lr = cfg.sft.lr
    check_learner_plan(cfg, start_from, longest_sequence=cfg.sft.max_tokens, what="sft.max_tokens")
    check_sft_data(data_dir)
    examples = load_examples(data_dir, AutoTokenizer.from_pretrained(start_from), cfg.sft)
    init_ray()
    if learners is None:  # what the ranks ask of the cluster, before the run directory and any actor
        check_cluster_resources(cfg, learner_demand(cfg))
    run = RunDir(cfg, "sft")
    checkpoints = Checkpoints(run, cfg.sft.keep_checkpoints)
    start, state = 0, run.load_state() if resume else None
    if state:
        start, model_dir = state["step"], state["checkpoint"]
    order = list(range(len(examples)))
    random.Random(cfg.grpo.seed).shuffle(order)  # fixed order: position = step * batch_size, so resume is exact
    own = learners is None
    if own:
        learners = LearnerGroup(cfg, model_dir)
    else:
        learners.reset(model_dir, cfg)
    if state and has_engine_state(state["checkpoint"]):
        learners.load(state["checkpoint"])  # Adam's moments and step counters: the run continues exactly
    ranks, bs = cfg.learner.num_ranks, cfg.sft.batch_size
    history = []
    try:
        with console.progress("SFT steps", cfg.sft.steps) as advance:
            advance(start)
            for step in range(start, cfg.sft.steps):
                t0 = time.time()
                idx = [order[(step * bs + i) % len(order)] for i in range(max(bs, ranks))]
                batch = {"token_ids": [examples[i][0] for i in idx], "loss_mask": [examples[i][1] for i in idx]}
                batch["total_tokens"] = sum(sum(m) for m in batch["loss_mask"])
                batch["lr"] = sft_lr(cfg.sft, step)
                metrics = learners.train_step(batch, "sft")
                metrics["time/train"], metrics["lr"] = time.time() - t0, batch["lr"]
                run.log(step + 1, metrics)
                history.append(metrics)
                every = cfg.sft.checkpoint_every
                if (every and (step + 1) % every == 0) or step + 1 == cfg.sft.steps:
                    checkpoints.save(step + 1, learners.save, {})
                advance(step + 1)
        run.plot(("loss",))
    finally:
        if own:
            learners.shutdown()
        run.finish()
    return {"run_dir": str(run.path), "history": history, "checkpoint": str(run.path / "checkpoints" / "latest")}
