"""mem add|search|rm|ls — your long-term memory, the notes agents find with memory.search."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, UsageError, command
from commands.results import Table, Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell

SHAPE = [{"id": int, "user": str, "pid": (int, None), "text": str, "tags": str, "ts": float}]
SEARCH_SHAPE = [{**SHAPE[0], "score": float}]
JSON_SHAPE = """\
mem ls: your notes, newest first:
  [{"id": int, "user": str, "pid": int|null (the process that wrote it), "text": str, "tags": str, "ts": float}]
mem search: the same, best match first, each with "score": float (bm25 relevance, higher is better)
mem add: {"id": int}; mem rm: {"removed": int}"""


def _args(p: ArgParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="add|search|rm|ls", required=True, prog="mem")
    add = sub.add_parser("add", help="remember TEXT (secrets are masked)")
    add.add_argument("text", nargs="+", help="the note")
    add.add_argument("--tags", default="", metavar="T", help="words that help to find it")
    add.add_argument("--json", action="store_true", help="print JSON (shape below)")
    search = sub.add_parser("search", help="your notes matching QUERY, best first")
    search.add_argument("query", nargs="+", help="words to look for")
    search.add_argument("-n", type=int, default=5, metavar="N", help="at most N notes (default 5)")
    search.add_argument("--json", action="store_true", help="print JSON (shape below)")
    rm = sub.add_parser("rm", help="forget note ID")
    rm.add_argument("id", help="a note's id (as `mem ls` shows it, #N or N)")
    rm.add_argument("--json", action="store_true", help="print JSON (shape below)")
    ls = sub.add_parser("ls", help="your notes, newest first")
    ls.add_argument("-n", type=int, default=50, metavar="N", help="at most N notes (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON (shape below)")
    p.epilog = "mem search exits 1 when no note matches, as grep does."


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@command("mem", "your long-term memory: add, search, remove and list notes",
         usage="mem add TEXT… [--tags T] | mem search QUERY… [-n N] | mem rm ID | mem ls [-n N]; each takes --json",
         args=_args, json_shape=JSON_SHAPE,
         examples=("mem add the build uses uv, not pip --tags build", "mem search build tool",
                   "mem ls --json", "mem rm 3"))
async def mem(sh: Shell, args: argparse.Namespace) -> Table | Text:
    api = sh.api  # the caller's own notes
    if args.action == "add":
        try:
            note = api.remember(" ".join(args.text), tags=args.tags)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return Text([f"#{note}"], records={"id": note})
    if args.action == "rm":
        note = _note_id(args.id)
        if not api.forget(note):
            raise CommandError(f"#{note}: no such note of yours")
        return Text(records={"removed": note})
    if args.n < 1:
        raise UsageError(f"-n {args.n}: expected a positive number")
    if args.action == "search":
        rows = api.recall(" ".join(args.query), limit=args.n)
    else:
        rows = api.notes(limit=args.n)
    status = 1 if args.action == "search" and not rows else 0
    if not rows:
        return Text(records=rows, status=status)
    return Table(["ID", "WHEN", "TAGS", "TEXT"], [[f"#{r['id']}", when(r["ts"]), r["tags"], r["text"]] for r in rows],
                 records=rows, status=status)


def _note_id(text: str) -> int:
    try:
        note = int(text.removeprefix("#"))
    except ValueError:
        raise UsageError(f"{text}: not a note id (a number, as `mem ls` shows it)") from None
    if note < 1:
        raise UsageError(f"{text}: not a note id")
    return note
