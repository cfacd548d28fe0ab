"""nice [-n N] run AGENT ARGS… — start an agent with a niceness (default 10), as Unix nice runs a program."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from commands.registry import UsageError, command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


@command("nice", "run an agent with a changed niceness (default 10; below 0 needs an admin)",
         usage="nice [-n N] run AGENT ARGS…", raw_args=True,
         examples=('nice run chat "no hurry"', 'nice -n 5 run chat "a question" &', "nice -n -5 run chat hi"))
async def nice(sh: Shell, args: argparse.Namespace) -> Stream:
    argv = list(args.argv)
    niceness = "10"
    if argv[:1] == ["-n"]:
        if len(argv) < 2:
            raise UsageError("option -n needs a number")
        niceness, argv = argv[1], argv[2:]
    elif argv[:1] and argv[0].startswith("-n") and len(argv[0]) > 2:
        niceness, argv = argv[0][2:], argv[1:]
    elif argv[:1] and argv[0].startswith("-") and argv[0][1:].lstrip("-").isdigit():
        niceness, argv = argv[0][1:], argv[1:]  # nice -5 run …, the old form
    try:
        int(niceness)
    except ValueError:
        raise UsageError(f"{niceness}: invalid adjustment (an integer from -20 to 19)") from None
    if not argv:
        raise UsageError("missing command (nice -n N run AGENT ARGS…)")
    if argv[0] != "run":
        raise UsageError(f"{shlex.quote(argv[0])}: only agents have a niceness (nice -n N run AGENT ARGS…)")
    if any(a in ("-n", "--nice") or a.startswith("--nice=") for a in argv[1:2]):
        raise UsageError("give the niceness once")
    return Stream(await sh.execute(["run", "-n", niceness, *argv[1:]]))
