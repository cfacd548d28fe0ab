"""renice [-n] N PID… — change the niceness of running processes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.kill import parse_pid
from commands.registry import ArgParser, UsageError, command
from commands.results import Text
from kernel.api import KernelError

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("nice", help="new niceness, -20..19 (lowering it needs an admin)")
    p.add_argument("pid", nargs="+", help="process ids")


@command("renice", "change the niceness (scheduling priority) of processes",
         usage="renice [-n] N PID…", args=_args, raw_args=True, examples=("renice 10 12", "renice -n -5 12"),
         complete="pid")
async def renice(sh: Shell, args: argparse.Namespace) -> Text:
    argv = list(args.argv)
    if argv[:1] == ["-n"]:
        argv = argv[1:]
    if len(argv) < 2:
        raise UsageError("expected a niceness and at least one process id")
    try:
        nice = int(argv[0])
    except ValueError:
        raise UsageError(f"{argv[0]}: invalid priority (an integer from -20 to 19)") from None
    lines: list[str] = []
    errors: list[str] = []
    records = []
    for target in argv[1:]:
        try:
            pid = parse_pid(sh, target)
            old = sh.api.proc(pid).nice
            proc = sh.api.renice(pid, nice)
            lines.append(f"{pid} (process ID) old priority {old}, new priority {proc.nice}")
            records.append({"pid": pid, "old": old, "nice": proc.nice})
        except (KernelError, UsageError) as exc:
            errors.append(f"renice: {exc}")
    return Text(lines, records=records, stderr=errors, status=1 if errors else 0)
