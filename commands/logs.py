"""logs [-f] PID|%N — a process's output so far; -f follows it until it exits (Ctrl-C stops following)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.kill import parse_pid
from commands.registry import ArgParser, CommandError, command
from commands.results import Stream
from kernel.api import NoSuchProcess, PermissionDenied

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the process exits")
    p.add_argument("pid", help="a process id or %%N job spec")


@command("logs", "print a process's output; -f follows it as it is written", usage="logs [-f] PID|%N",
         args=_args, examples=("logs 3", "run chat long &; logs -f $!"), complete="pid")
async def logs(sh: Shell, args: argparse.Namespace) -> Stream:
    pid = parse_pid(sh, args.pid)
    try:
        proc = sh.api.process(pid, read=True)
    except NoSuchProcess:
        raise CommandError(f"({pid}) - No such process") from None
    except PermissionDenied as exc:
        raise CommandError(str(exc)) from None
    live = sh.api.running(pid)
    text = "".join(proc.output)
    if not args.follow or live is None or not live.alive:
        sh.write(text)
        if text and not text.endswith("\n"):
            sh.write("\n")
        return Stream()
    sh.write(text)  # then what comes next, without a gap: nothing runs between these lines
    await sh.follow(live, attach=False)
    return Stream()
