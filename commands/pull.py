"""pull MODEL — download a model into Ollama, with a progress bar."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, command
from commands.results import Stream
from kernel.api import InvalidArgument

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("model", help="an Ollama model name, such as gemma3:270m")


@command("pull", "download a model into Ollama (progress bar); other backends have their model built in",
         usage="pull MODEL", args=_args, examples=("pull gemma3:270m", "pull llama3.2:1b"), complete="model")
async def pull(sh: Shell, args: argparse.Namespace) -> Stream:
    try:
        progress = sh.api.pull(args.model)
    except InvalidArgument as exc:
        raise CommandError(str(exc)) from None
    if sh.out.is_terminal and not sh.captured:
        return await _with_bar(sh, progress, args.model)
    last = ""
    async for part in progress:
        if part["status"] != last:  # plain: one line a stage, no bar
            last = part["status"]
            sh.print(last)
    return Stream()


async def _with_bar(sh: Shell, progress, model: str) -> Stream:  # noqa: ANN001 - the backend's async iterator
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=sh.out, transient=False) as bar:
        task = bar.add_task(f"pulling {model}", total=None)
        async for part in progress:
            status = part["status"]
            if part.get("total"):
                bar.update(task, total=part["total"], completed=part.get("completed") or 0,
                           description=status[:30])
            else:
                bar.update(task, description=status[:30])
    return Stream()
