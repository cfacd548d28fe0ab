"""history [N] [--json] — the commands you typed (per user, kept in $AIOS_HOME)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from commands.registry import ArgParser, UsageError, command
from commands.results import Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell

SHAPE = [{"n": int, "command": str}]
JSON_SHAPE = """\
the commands, oldest first:
  [{"n": int, "command": str}]"""


def _args(p: ArgParser) -> None:
    p.add_argument("count", nargs="?", type=int, help="only the last COUNT")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


def read_history_file(path: Path) -> list[str]:
    """Entries of a prompt-toolkit FileHistory file (`+` lines; an entry may span lines)."""
    entries: list[str] = []
    lines: list[str] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("+"):
            lines.append(line[1:])
        elif lines:
            entries.append("\n".join(lines))
            lines = []
    if lines:
        entries.append("\n".join(lines))
    return entries


def entries(sh: Shell) -> list[str]:
    if sh.history is not None:
        return sh.history()
    return read_history_file(sh.api.home / f"history-{sh.user}")


@command("history", "list the commands typed at the prompt (Ctrl-R searches them)", usage="history [N] [--json]",
         args=_args, json_shape=JSON_SHAPE)
async def history(sh: Shell, args: argparse.Namespace) -> Text:
    if args.count is not None and args.count < 0:
        raise UsageError(f"{args.count}: invalid number")
    numbered = list(enumerate(entries(sh), start=1))
    if args.count is not None:
        numbered = numbered[-args.count:] if args.count else []
    return Text([f"{n:>5}  {c}" for n, c in numbered], records=[{"n": n, "command": c} for n, c in numbered])
