"""source FILE (also `. FILE`) — run a script's commands in this shell: its jobs and `exit` are this shell's."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.namespace import real_path
from commands.registry import ArgParser, CommandError, command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("file", help="a script of aios commands")


@command("source", "run the commands of a file in the current shell; the status is its last command's",
         usage="source FILE", args=_args, aliases=(".",), examples=("source jobs.aios",))
async def source(sh: Shell, args: argparse.Namespace) -> Stream:
    try:
        text = real_path(sh, args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    return Stream(await sh.run_line(text))
