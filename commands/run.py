"""run [-n NICE] [-w DIR] AGENT ARGS… [&] — start an agent; in the foreground its answer streams."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("-n", "--nice", type=int, default=0, metavar="NICE",
                   help="niceness from -20 (most favoured, admins only) to 19 (least)")
    p.add_argument("-w", "--workspace", metavar="DIR",
                   help="the directory its file and shell tools work in (default: one of its own)")
    p.add_argument("agent", help="agent program (see: ls /agents)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the agent")
    p.epilog = ("In a pipeline (run a | run b) the agent reads what the previous command writes, as it is "
                "written; chat reads it all, then asks. `> FILE` saves the answer. With & it runs as a "
                "background job: its output waits for `fg` and is always in `logs PID`.")


@command(
    "run",
    "start an agent program; end the line with & to run it in the background",
    usage="run [-n NICE] [-w DIR] AGENT ARGS… [&]",
    args=_args,
    complete="agent",
    examples=('run chat "Write one sentence about cats."', 'run -n 10 chat "a slow question" &',
              'run chat "Tell me about the sea." | run chat "Summarise this in five words:"',
              'run chat "a haiku" > haiku.txt', 'run -w . react "list the files here"'),
)
async def run(sh: Shell, args: argparse.Namespace) -> Stream:
    workspace = None
    if args.workspace:
        workspace = sh.cwd / args.workspace
        if not workspace.is_dir():
            raise CommandError(f"{args.workspace}: not a directory")
    if args.agent == "ext" and workspace is None:  # an outside program runs where the shell is, as in any shell
        workspace = sh.cwd
    proc = sh.api.spawn(args.agent, args.args, nice=args.nice, stdin=sh.stdin, workspace=workspace)
    return Stream(await sh.follow(proc))
