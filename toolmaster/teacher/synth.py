"""Synthesis: run a teacher (scripted, or an LLM endpoint) through the environment, filter its trajectories,
save a datasets dataset."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from toolmaster.agent.loop import run_episodes
from toolmaster.envs import make_env
from toolmaster.protocol import render_text
from toolmaster.protocol.template import chat_format
from toolmaster.teacher.scripted import ScriptedTeacher
from toolmaster.tools.base import ToolRunner
from toolmaster.toolserver.process import tool_server_for


def _length(messages, tools, tokenizer, chat) -> int:
    if tokenizer is None:  # rough token estimate when no tokenizer is given (stated in the summary)
        return len(render_text(messages, tools)) // 3
    return len(tokenizer(chat.render(messages, tools))["input_ids"])


def drop_reason(episode, length: int, max_tokens: int) -> str | None:
    """Why a trajectory is not kept; an ungraded one (no judge configured) is kept when it answered cleanly."""
    if episode.finish_reason != "answer":
        return "no_answer"
    if episode.stats["parse_errors"]:
        return "parse_error"
    if episode.grade is not None and not episode.correct:
        return "incorrect"
    if length > max_tokens:
        return "too_long"
    return None


def make_teacher(cfg):
    if cfg.synth.teacher == "openai":
        from toolmaster.teacher.llm import LLMTeacher
        return LLMTeacher(cfg.synth.endpoint, cfg.synth.concurrency)
    if cfg.env.name != "toolworld":
        raise ValueError(f"the scripted teacher knows toolworld's rules only, not {cfg.env.name!r}; "
                         "use --teacher openai --base-url URL --model NAME")
    return ScriptedTeacher(cfg.synth.seed, cfg.synth.trial, cfg.synth.mistake_rate, cfg.synth.probe_distractors)


def _run_teacher(cfg, env, tasks, teacher, tokenizer, progress):
    """Episodes in chunks; the trajectories that pass ``drop_reason`` become rows."""
    rows, reasons, kept = [], Counter(), []
    chat = chat_format(tokenizer) if tokenizer is not None else None  # lengths in the model's own chat format
    runner = ToolRunner.from_config(cfg.sandbox)
    try:
        chunk = 64
        for lo in range(0, len(tasks), chunk):
            batch = tasks[lo: lo + chunk]
            episodes = run_episodes(teacher, batch, env, runner, max_turns=cfg.env.max_turns, trial=cfg.synth.trial,
                                    reward_weights=cfg.rewards, system_prompt=cfg.env.system_prompt)
            for ep, task in zip(episodes, batch):
                length = _length(ep.messages, ep.tools, tokenizer, chat)
                reason = drop_reason(ep, length, cfg.synth.max_tokens)
                if reason:
                    reasons[reason] += 1
                    continue
                kept.append((ep, length))
                rows.append({"messages": ep.messages, "tools": json.dumps(ep.tools), "task_id": ep.task_id,
                             "reference": task.reference, "trial_calls": ep.stats["trial_calls"],
                             "corrections": ep.stats["corrections"], "num_tokens": length})
            if progress:
                progress(min(lo + chunk, len(tasks)), len(tasks))
    finally:
        runner.close()
    return rows, reasons, kept


def synthesize(cfg, out_dir: str, tokenizer=None, progress=None) -> dict:
    """Writes ``out_dir`` (dataset via save_to_disk) and ``out_dir/summary.json``; returns the summary."""
    import datasets

    start = time.time()
    with tool_server_for(cfg) as cfg:
        env = make_env(cfg.env)
        tasks = env.tasks(cfg.synth.split, cfg.synth.num_tasks, start=0)
        rows, reasons, kept = _run_teacher(cfg, env, tasks, make_teacher(cfg), tokenizer, progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        datasets.Dataset.from_list(rows).save_to_disk(str(out))
    n = len(kept)
    summary = {
        "env": cfg.env.name, "teacher": cfg.synth.teacher, "num_tasks": len(tasks), "kept": n,
        "dropped": sum(reasons.values()),
        "dropped_reasons": dict(reasons), "trial": cfg.synth.trial, "mistake_rate": cfg.synth.mistake_rate,
        "mean_trial_calls": sum(e.stats["trial_calls"] for e, _ in kept) / max(n, 1),
        "mean_corrections": sum(e.stats["corrections"] for e, _ in kept) / max(n, 1),
        "episodes_with_correction": sum(e.stats["corrections"] > 0 for e, _ in kept),
        "mean_tokens": sum(length for _, length in kept) / max(n, 1),
        "length_unit": "tokens" if tokenizer is not None else "approx_tokens(chars/3)",
        "seconds": round(time.time() - start, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
