"""run [-n NICE] AGENT ARGS… [&] — start an agent; in the foreground its answer streams."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.registry import ArgParser, command

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("-n", "--nice", type=int, default=0, metavar="NICE",
                   help="niceness from -20 (most favoured, admins only) to 19 (least)")
    p.add_argument("agent", help="agent program (see: help run; agents: chat)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the agent")


@command(
    "run",
    "start an agent program; end the line with & to run it in the background",
    usage="run [-n NICE] AGENT ARGS… [&]",
    args=_args,
    examples=('run chat "Write one sentence about cats."', 'run -n 10 chat "a slow question" &'),
)
async def run(sh: Shell, args: argparse.Namespace) -> int:
    proc = sh.kernel.spawn(args.agent, args.args, nice=args.nice)
    if args.background:
        sh.add_job(proc)
        return 0
    return await sh.follow(proc)
