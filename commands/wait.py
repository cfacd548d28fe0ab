"""wait [PID|%N…] — wait for background jobs or processes; the status is the last one's, as in bash.

A PID may be any process of this kernel, started in this shell or not (one exited already gives its status at once)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
from typing import TYPE_CHECKING

from commands.registry import ArgParser, command
from commands.results import Stream
from kernel.api import NoSuchProcess

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("pid", nargs="*", help="process ids or %%N job specs (default: every background job)")


@command("wait", "wait for background jobs to finish", usage="wait [PID|%N…]", args=_args,
         examples=("wait", "wait %1", "run chat long &; wait $!; echo $?"), complete="pid")
async def wait(sh: Shell, args: argparse.Namespace) -> Stream:
    if not args.pid:  # every job; the status is 0, as in bash
        tasks = [job.task for job in sh.jobs.values() if job.task is not None and not job.foreground]
        if tasks:
            await asyncio.wait(tasks)  # asyncio.wait: Ctrl-C stops waiting, never the jobs
        return Stream()
    status = 0
    for target in args.pid:
        if target.startswith("%"):
            job = sh.ctl.find(target)
            if job is None or job.task is None:
                sh.error(f"wait: {shlex.quote(target)}: no such job")
                status = 127
                continue
            await asyncio.wait([job.task])
            status = job.status()
            continue
        if not target.isdigit():
            sh.error(f"wait: `{target}': not a pid or valid job spec")
            status = 2
            continue
        pid = int(target)
        try:  # any process the kernel has seen, started here or not (another terminal's, a script's)
            proc = sh.api.process(pid)
        except NoSuchProcess:
            sh.error(f"wait: pid {pid}: no such process")
            status = 127
            continue
        if proc.alive:
            await proc.exited.wait()
        status = proc.exit_code if proc.exit_code is not None else 1
    return Stream(status)
