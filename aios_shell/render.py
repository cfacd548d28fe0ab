"""Rich rendering for people, JSON for programs; plain text when stdout is not a terminal."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from kernel.sanitize import strip_controls


def make_console(file: TextIO | None = None, stderr: bool = False) -> Console:
    """A console that honours NO_COLOR and prints wide, plain text into pipes and files."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if is_tty else int(os.environ.get("COLUMNS", "160"))
    return Console(
        file=file,
        stderr=stderr,
        no_color="NO_COLOR" in os.environ or None,
        width=width,
        highlight=False,
        soft_wrap=False,
        force_terminal=None,
    )


def table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]],
          right: Sequence[str] = (), title: str | None = None) -> None:
    """A Unix-looking table: a bold header, no borders, numbers right-aligned."""
    t = Table(box=box.SIMPLE_HEAD if console.is_terminal else None, show_edge=False, pad_edge=False,
              title=title, header_style="bold", expand=False)
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left", no_wrap=True,
                     overflow="ellipsis" if col == columns[-1] else "fold")
    for row in rows:
        t.add_row(*(strip_controls(str(cell)) for cell in row))
    console.print(t)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)
