"""wait [PID|%N…] — wait for processes to exit; the status is the last one's."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.kill import parse_pid
from commands.registry import ArgParser, command
from kernel.errors import NoSuchProcess

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("pid", nargs="*", help="process ids or %%N job specs (default: every background job)")


@command("wait", "wait for background processes to finish", usage="wait [PID|%N…]", args=_args)
async def wait(sh: Shell, args: argparse.Namespace) -> int:
    if not args.pid:
        for job in list(sh.jobs.values()):
            await job.proc.exited.wait()
        return 0
    status = 0
    for target in args.pid:
        pid = parse_pid(sh, target)
        try:
            proc = await sh.kernel.wait(pid)
        except NoSuchProcess:
            sh.error(f"wait: pid {pid} is not a child of this shell")
            status = 127
            continue
        status = proc.exit_code if proc.exit_code is not None else 1
    return status
