"""resume PID [&] — start a lost or finished agent again from its saved conversation, as a new process."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.kill import parse_pid
from commands.registry import ArgParser, command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("pid", help="the process to start again (see: ps -a; EXITED(lost) after a crash)")
    p.epilog = ("The new process runs the same agent with the same arguments, niceness and workspace; its "
                "parent (PPID) is the old process, and it carries on the old conversation. Like run, it "
                "streams its answer in the foreground; with & it runs as a background job.")


@command(
    "resume",
    "start a lost or finished agent again from its saved conversation",
    usage="resume PID [&]",
    args=_args,
    examples=("ps -a", "resume 12", "resume 12 &"),
)
async def resume(sh: Shell, args: argparse.Namespace) -> Stream:
    proc = sh.api.resume(parse_pid(sh, args.pid))
    return Stream(await sh.follow(proc))
