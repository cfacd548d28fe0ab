"""ls [-l] [--json] [PATH…] — list the aios namespace (/proc, /agents, /tools, /users, /models) or a directory."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.namespace import Entry, in_namespace, listdir, real_path
from commands.registry import ArgParser, CommandError, command
from commands.results import Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell

SHAPE = [{"name": str, "path": str, "type": str}]
JSON_SHAPE = """\
the entries of every PATH, in order:
  [{"name": str, "path": str, "type": "dir|file"}]"""


def _args(p: ArgParser) -> None:
    p.add_argument("-l", action="store_true", help="one entry a line with its type")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")
    p.add_argument("path", nargs="*", help="namespace paths such as /proc/3, or directories (default: /)")


def _real(sh: Shell, path: str) -> list[Entry]:
    where = real_path(sh, path)
    if where.is_file():
        return [Entry(path, str(where), "file")]
    try:
        children = sorted(where.iterdir())
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}") from None
    return [Entry(c.name, str(c), "dir" if c.is_dir() else "file") for c in children if not c.name.startswith(".")]


@command("ls", "list the namespace: /proc/PID/{status,context,log,tools}, /agents, /tools, /users, /models",
         usage="ls [-l] [--json] [PATH…]", args=_args, json_shape=JSON_SHAPE,
         examples=("ls", "ls /proc", "ls /proc/1", "ls /agents --json"), complete="path")
async def ls(sh: Shell, args: argparse.Namespace) -> Text:
    paths = args.path or ["/"]
    found: list[tuple[str, list[Entry]]] = []
    errors = []
    for path in paths:
        try:
            found.append((path, await listdir(sh, path) if in_namespace(path) else _real(sh, path)))
        except CommandError as exc:
            errors.append(f"ls: cannot access {exc}")
    lines = []
    for i, (path, entries) in enumerate(found):
        if len(found) > 1:
            lines += ([""] if i else []) + [f"{path}:"]
        lines += [f"{'d' if e.type == 'dir' else '-'}r--r--r--  {e.name}" if args.l else e.name for e in entries]
    return Text(lines, records=[e.to_dict() for _, entries in found for e in entries],
                stderr=errors, status=1 if errors else 0)
