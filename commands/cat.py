"""cat [PATH…] — print namespace files (/proc/PID/log, /proc/PID/context, …) or files; stdin without PATH."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.namespace import in_namespace, read, real_path
from commands.registry import ArgParser, CommandError, command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("path", nargs="*", help="namespace files such as /proc/3/status, or files")


async def _read(sh: Shell, path: str) -> str:
    if in_namespace(path):
        return await read(sh, path)
    where = real_path(sh, path)
    if where.is_dir():
        raise CommandError(f"{path}: Is a directory")
    try:
        return where.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}") from None


@command("cat", "print files of the namespace (/proc/PID/{status,context,log,tools}, …) or of the disk",
         usage="cat [PATH…]", args=_args,
         examples=("cat /proc/1/status", "cat /proc/1/context", "run chat hi > a.txt; cat a.txt", "ps | cat"),
         complete="path")
async def cat(sh: Shell, args: argparse.Namespace) -> Stream:
    if not args.path:
        if sh.stdin is not None:
            async for piece in sh.stdin:
                sh.write(piece)
        return Stream()
    status = 0
    for path in args.path:
        try:
            sh.write(await _read(sh, path))
        except CommandError as exc:
            sh.error(f"cat: {exc}")
            status = 1
    return Stream(status)
