"""What a command returns: its result as data, drawn by the shell's one renderer (`aios_shell.render.show`).

Every handler returns one: a `Table`, `Text`, `Records` or `Several`; a command whose output is a live stream as it
comes (an agent's answer for `run`, `wait` and `fg`, a file for `cat`, a progress bar) writes that stream and
returns a `Stream` with its status. The renderer draws a table the way `ps` does on a terminal and as plain text
into a pipe, prints `records` as JSON when the command was asked for `--json` (so no command writes its own
`--json` branch), and `stderr` lines on stderr, whatever the format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    """Rows under column headings; `records` is the same data for `--json` (None: no JSON form)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    records: Any = None
    right: Sequence[str] = ()  # columns aligned right (numbers)
    optional: Sequence[str] = ()  # columns that give way, in this order, on a narrow terminal
    before: Sequence[str] = ()  # lines printed above the table (a heading, a summary)
    after: Sequence[str] = ()  # lines printed below it (a footnote)
    stderr: Sequence[str] = ()  # lines for stderr (a broken policy file), whatever the format
    status: int = 0


@dataclass(frozen=True)
class Text:
    """Lines of text; `records` for `--json`; `stderr` lines (one per target that failed) on stderr."""

    lines: Sequence[str] = field(default_factory=tuple)
    records: Any = None
    stderr: Sequence[str] = ()
    status: int = 0


@dataclass(frozen=True)
class Records:
    """Data only: printed as JSON with `--json`, else one line per record."""

    records: Any
    status: int = 0


@dataclass(frozen=True)
class Several:
    """Results shown one after the other, a blank line between (sched: the slots, then the queue)."""

    parts: Sequence[Table | Text]
    records: Any = None
    status: int = 0


@dataclass(frozen=True)
class Stream:
    """The command wrote its output as it came (see the module's docstring); what is left is its status."""

    status: int = 0


Result = Table | Text | Records | Several | Stream
RESULTS = (Table, Text, Records, Several, Stream)
