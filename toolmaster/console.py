"""Console output: rich progress bars, status spinners and result tables."""
from __future__ import annotations

import contextlib
import json

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

_console = Console(stderr=False)


@contextlib.contextmanager
def progress(label: str, total: int):
    """Yields ``advance(done, total)``; callers report absolute progress."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_console, transient=False) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int, new_total: int | None = None) -> None:
            bar.update(task, completed=done, total=new_total or total)

        yield advance


def note(text: str) -> None:
    _console.print(text, highlight=False)


def status(label: str):
    return _console.status(label)


def print_json(title: str, data: dict) -> None:
    _console.rule(title)
    _console.print_json(json.dumps(data, default=str))


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    _console.print(table)


def _num(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def step_line(step: int, total: int, metrics: dict) -> str:
    """One GRPO step on one line: training reward and success, the learner's loss and KL, tokens/s (sampled
    tokens per second of rollout, trained tokens per second of learning) and where the step's time went."""
    m = metrics
    parts = [f"step {step}/{total}", f"reward {_num(m.get('reward'), '.3f')}",
             f"success {_num(m.get('success'), '.2f')}", f"loss {_num(m.get('train/loss'), '.4g')}",
             f"KL {_num(m.get('train/kl'), '.3g')}",
             f"tok/s {_num(m.get('throughput/generated_tokens_per_s'), ',.0f')} gen, "
             f"{_num(m.get('throughput/train_tokens_per_s'), ',.0f')} learn",
             f"time rollout {_num(m.get('time/rollout'), '.1f')} s, learn {_num(m.get('time/train'), '.1f')} s, "
             f"publish {_num(m.get('time/sync'), '.1f')} s"]
    evals = [k for k in m if k.startswith("eval/") and k not in ("eval/finish_rate", "eval/trial_calls",
                                                                  "eval/corrections", "eval/turns", "eval/tasks")]
    if evals:
        parts.append(f"held-out {evals[0][5:]} {m[evals[0]]:.3f} (eval {_num(m.get('time/eval'), '.1f')} s)")
    return " · ".join(parts)


def step(step: int, total: int, metrics: dict) -> None:
    """Print ``step_line`` (above a running progress bar)."""
    _console.print(step_line(step, total, metrics), highlight=False, markup=False, soft_wrap=True)
