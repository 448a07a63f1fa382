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
