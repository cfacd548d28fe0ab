"""jobs, fg, bg — job control as in bash: list jobs, bring one to the foreground, continue it in the background."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, command
from commands.results import Stream, Text
from kernel.api import KernelError, Signal

if TYPE_CHECKING:
    from aios_shell.jobs import Job
    from aios_shell.shell import Shell

SHAPE = [{"job": int, "pids": [int], "state": str, "command": str, "current": bool}]
JSON_SHAPE = """\
a list of jobs, by number:
  [{"job": int, "pids": [int], "state": "Running|Stopped|Done|Exit N|Killed|Terminated|Interrupt",
    "command": str, "current": bool  (the job `fg` and `bg` act on without an argument)}]"""


def _jobs_args(p: ArgParser) -> None:
    p.add_argument("-l", action="store_true", help="show the agents' pids")
    p.add_argument("-p", action="store_true", help="only the pids")
    p.add_argument("--json", action="store_true", help="print JSON (shape below)")


@command("jobs", "list the shell's jobs", usage="jobs [-l|-p] [--json]", args=_jobs_args, json_shape=JSON_SHAPE)
async def jobs(sh: Shell, args: argparse.Namespace) -> Text:
    current = sh.ctl.current()
    table = [sh.jobs[n] for n in sorted(sh.jobs) if not sh.jobs[n].foreground or sh.jobs[n].stopped]
    records = [job.to_dict(current=job is current) for job in table]
    if args.json:
        return Text(records=records)
    lines = []
    for job in table:
        if args.p:
            lines += [str(proc.pid) for proc in job.procs]
            continue
        mark = "+" if job is current else "-" if job is not None else " "
        pids = (" " + ",".join(str(p.pid) for p in job.procs)) if args.l and job.procs else ""
        lines.append(f"[{job.number}]{mark}{pids}  {job.state():<22}  {job.cmdline}")
        if job.done and sh.interactive:  # reported: gone from the table, as in bash
            sh.jobs.pop(job.number, None)
    return Text(lines, records=records)


def _spec_args(p: ArgParser) -> None:
    p.add_argument("job", nargs="?", default="%+", help="a job spec, %%N (default: the current job)")


def _find(sh: Shell, spec: str, name: str) -> Job:
    job = sh.ctl.find(spec if spec.startswith("%") else "%" + spec)
    if job is None:
        raise CommandError(f"{shlex.quote(spec) if spec != '%+' else 'current'}: no such job")
    if job.done:
        raise CommandError(f"{shlex.quote(spec)}: job has terminated")
    return job


def _continue(sh: Shell, job: Job) -> None:
    for proc in sh.family(job):
        try:
            sh.api.signal(proc.pid, Signal.CONT)
        except KernelError:
            pass


@command("fg", "bring a job to the foreground (continuing it if stopped); `%N` alone does the same",
         usage="fg [%N]", args=_spec_args, examples=("fg", "fg %2", "%2"), complete="pid")
async def fg(sh: Shell, args: argparse.Namespace) -> Stream:
    job = _find(sh, args.job, "fg")
    sh.print(job.cmdline.removesuffix(" &"))
    _continue(sh, job)
    return Stream(await sh.wait_foreground(job))


@command("bg", "continue a stopped job in the background (sends CONT)", usage="bg [%N]", args=_spec_args,
         examples=("bg", "bg %1"), complete="pid")
async def bg(sh: Shell, args: argparse.Namespace) -> Text:
    job = _find(sh, args.job, "bg")
    job.foreground = False
    _continue(sh, job)
    return Text([f"[{job.number}]+ {job.cmdline.removesuffix(' &')} &"])
