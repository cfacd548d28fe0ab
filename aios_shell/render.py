"""Rich rendering for people, JSON for programs; plain text when stdout is not a terminal."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console

from kernel.api import strip_controls


def make_console(file: TextIO | None = None, stderr: bool = False) -> Console:
    """A console that honours NO_COLOR (no escape sequence at all: no colour, no bold, no reset) and prints wide,
    plain text into pipes and files."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if is_tty else int(os.environ.get("COLUMNS", "160"))
    plain = bool(os.environ.get("NO_COLOR"))  # no-color.org: set and not empty
    return Console(
        file=file,
        stderr=stderr,
        color_system=None if plain else "auto",
        no_color=plain or None,
        width=width,
        highlight=False,
        soft_wrap=False,
        force_terminal=None,
    )


LAST_COLUMN_ROOM = 30  # what the last column (ps's CMD) keeps before optional columns give way


def table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]],
          right: Sequence[str] = (), title: str | None = None, optional: Sequence[str] = ()) -> None:
    """A Unix-looking table, as ps prints it: columns two spaces apart, numbers right-aligned.

    Every column keeps its full width. On a terminal too narrow for the table, the `optional` columns are
    left out, in that order, until the last column has LAST_COLUMN_ROOM (ps keeps CMD); then it is cut (…) at
    the screen's edge.
    """
    cells = [[strip_controls(str(c)).replace("\n", " ") for c in row] for row in rows]
    widths = [max([len(col), *(len(row[i]) for row in cells)]) for i, col in enumerate(columns)]
    if console.is_terminal and optional:
        keep = list(range(len(columns)))
        room = min(widths[-1], LAST_COLUMN_ROOM)
        for name in optional:
            if sum(widths[i] + 2 for i in keep[:-1]) + room <= console.width or name not in columns:
                continue
            keep.remove(list(columns).index(name))
        columns = [columns[i] for i in keep]
        cells = [[row[i] for i in keep] for row in cells]
        widths = [widths[i] for i in keep]

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, (col, value) in enumerate(zip(columns, values, strict=True)):
            last = i == len(columns) - 1
            if col in right:
                parts.append(value.rjust(widths[i]))
            else:
                parts.append(value if last else value.ljust(widths[i]))
        text = "  ".join(parts).rstrip()
        if console.is_terminal and len(text) > console.width:
            text = text[: console.width - 1] + "…"
        return text

    if title:
        console.print(title, style="bold", markup=False, highlight=False)
    console.print(line(list(columns)), style="bold" if console.is_terminal else None,
                  markup=False, highlight=False, soft_wrap=True)
    for row in cells:
        console.print(line(row), markup=False, highlight=False, soft_wrap=True)


# JSON escapes C0 controls but not C1 (0x9b is a CSI on some terminals) nor bidi/zero-width characters
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def to_json(obj: Any) -> str:
    """Pretty JSON, lossless, with every character that could steer a terminal written as a \\u escape."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def error_line(err: Console, message: str) -> None:
    """One line on stderr (red on a terminal), whatever the message holds."""
    line = strip_controls(message.replace("\r", "\\r").replace("\n", "\\n"))
    err.print(line, style="red" if err.is_terminal else None, markup=False, highlight=False, soft_wrap=True)


def show(console: Console, err: Console, result: Any, as_json: bool = False) -> int:
    """Draw a command's result (see `commands.results`); returns its exit status."""
    from commands.results import Records, Several, Stream, Table, Text

    if isinstance(result, Stream):
        return int(result.status)
    for line in getattr(result, "stderr", ()):
        error_line(err, line)
    records = getattr(result, "records", None)
    if as_json and records is not None:
        console.file.write(to_json(records) + "\n")
        console.file.flush()
        return int(result.status)
    parts = result.parts if isinstance(result, Several) else [result]
    for i, part in enumerate(parts):
        if i and (isinstance(part, Text) and part.lines or isinstance(part, Table)):
            console.print("", markup=False)
        if isinstance(part, Table):
            for line in part.before:
                console.print(strip_controls(line), markup=False, highlight=False, soft_wrap=True)
            table(console, part.columns, part.rows, right=part.right, optional=part.optional)
            for line in part.after:
                console.print(strip_controls(line), markup=False, highlight=False, soft_wrap=True)
        elif isinstance(part, Text):
            for line in part.lines:
                console.print(strip_controls(line), markup=False, highlight=False, soft_wrap=True)
        elif isinstance(part, Records):
            for record in part.records:
                console.print(strip_controls(str(record)), markup=False, highlight=False, soft_wrap=True)
    return int(result.status)
