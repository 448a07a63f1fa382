"""The SFT driver: teacher trajectories → assistant-token NLL on the same learner group as GRPO."""
from __future__ import annotations

import json
import math
import random
import time

from toolmaster import console
from toolmaster.config import check_runtime
from toolmaster.learner.group import LearnerGroup
from toolmaster.plan import check_learner_plan, check_model_dir
from toolmaster.protocol import render_text
from toolmaster.protocol.chat_format import IM_END
from toolmaster.ray_utils import init_ray
from toolmaster.trainer.checkpoints import Checkpoints, has_engine_state
from toolmaster.trainer.run_dir import RunDir


def sft_example(tokenizer, messages: list[dict], tools: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a mask that is 1 exactly on assistant content and its
    closing <|im_end|> (what the policy would have to generate), built segment by segment like a rollout."""
    ids, mask, covered = [], [], 0

    def add(text: str, on: int) -> None:
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(toks)
        mask.extend([on] * len(toks))

    for k, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prefix = render_text(messages[:k], tools, add_generation_prompt=True)
        add(prefix[covered:], 0)
        add(msg["content"] + IM_END, 1)
        covered = len(prefix) + len(msg["content"]) + len(IM_END)
    return ids, mask


def load_examples(data_dir: str, tokenizer, max_tokens: int) -> list[tuple[list[int], list[int]]]:
    import datasets

    rows = datasets.load_from_disk(data_dir)
    examples = [sft_example(tokenizer, r["messages"], json.loads(r["tools"])) for r in rows]
    kept = [e for e in examples if len(e[0]) <= max_tokens]
    if not kept:
        raise ValueError(f"no SFT example of {data_dir!r} fits sft.max_tokens={max_tokens}")
    return kept


def check_sft_data(data_dir: str) -> None:
    """Before any actor starts: ``data_dir`` must hold a dataset. A synthesis that kept no trajectory writes
    only its summary; say why it kept none."""
    from pathlib import Path

    path = Path(data_dir)
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        return
    summary = path / "summary.json"
    if summary.is_file():
        facts = json.loads(summary.read_text())
        raise ValueError(f"sft data {data_dir!r} is empty: synthesis kept {facts.get('kept')} of "
                         f"{facts.get('num_tasks')} teacher episodes (dropped: {facts.get('dropped_reasons')}; "
                         "e.g. env.max_turns too small for trial and execution, or synth.max_tokens too small)")
    raise ValueError(f"sft data {data_dir!r} holds no dataset (write one with `toolmaster synth --out DIR`)")


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
    init_ray()
    run = RunDir(cfg, "sft")
    checkpoints = Checkpoints(run, cfg.sft.keep_checkpoints)
    start, state = 0, run.load_state() if resume else None
    if state:
        start, model_dir = state["step"], state["checkpoint"]
    examples = load_examples(data_dir, AutoTokenizer.from_pretrained(model_dir), cfg.sft.max_tokens)
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
