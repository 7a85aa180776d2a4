"""Console output shared by commands: rich tables for people, JSON for scripts, progress for long work."""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (no colour, no wrapping)."""
    print(json.dumps(obj, indent=2, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def human_count(n: float) -> str:
    """1234567 -> '1.23M' (params, MACs)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def progress(description: str):  # noqa: ANN201
    """A transient spinner on stderr for a step of unknown length (export, lowering, calibration)."""
    return err_console.status(description, spinner="dots")
