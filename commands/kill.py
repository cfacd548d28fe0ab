"""kill [-SIGNAL | -s SIGNAL | -l] PID|%N… — send a signal to processes or to every agent of a job."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from commands.registry import ArgParser, UsageError, command
from commands.results import Text
from kernel.api import KernelError, NoSuchSignal, Signal, parse_signal

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("-s", metavar="SIGNAL", help="signal name or number (default TERM)")
    p.add_argument("-n", metavar="SIGNUM", help="the same, as bash's kill -n has it")
    p.add_argument("-l", action="store_true", help="list the signal names")
    p.add_argument("pid", nargs="*", help="process ids, or %%N for job N")
    p.epilog = ("signals: TERM (default: cancel, KILL after a grace period), KILL (at once), "
                "STOP (hold its model calls), CONT (resume), HUP, INT")


def parse_kill_args(argv: list[str]) -> tuple[Signal, list[str], bool]:
    """kill's own reading of its arguments (`-9`, `-STOP` are signals, not options); `help kill` documents each
    option it takes (`_args`), and a test holds the two to the same options."""
    sig, pids, listing = Signal.TERM, [], False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            pids.extend(argv[i + 1 :])
            break
        if arg == "-l":
            listing = True
        elif arg in ("-s", "-n"):
            if i + 1 >= len(argv):
                raise UsageError(f"option {arg} needs a signal")
            i += 1
            sig = _signal(argv[i])
        elif arg.startswith("-") and len(arg) > 1 and not pids:
            sig = _signal(arg[1:])
        else:
            pids.append(arg)
        i += 1
    return sig, pids, listing


def _signal(spec: str) -> Signal:
    try:
        return parse_signal(spec)
    except NoSuchSignal as exc:
        raise UsageError(str(exc)) from None


def parse_pid(sh: Shell, text: str) -> int:
    """A pid, or a job spec `%N` (its last process)."""
    return parse_targets(sh, text)[-1]


def parse_targets(sh: Shell, text: str) -> list[int]:
    """A pid, or every process of a job spec `%N` (`%%`, `%+`, `%-` as in bash) with the children they started."""
    if text.startswith("%"):
        job = sh.ctl.find(text)
        if job is None:
            raise UsageError(f"{shlex.quote(text)}: no such job")
        pids = [p.pid for p in sh.family(job)] or [p.pid for p in job.procs]
        if not pids:
            raise UsageError(f"{text}: the job has no agents")
        return pids
    if not text.isdigit():
        raise UsageError(f"{shlex.quote(text)}: arguments must be process or job IDs")
    return [int(text)]


@command("kill", "send a signal to processes (default TERM)",
         usage="kill [-s SIGNAL | -SIGNAL] PID|%N…  |  kill -l", args=_args, raw_args=True,
         examples=("kill 12", "kill -9 12", "kill %1", "kill -STOP 12; kill -CONT 12", "kill -l"), complete="pid")
async def kill(sh: Shell, args: argparse.Namespace) -> Text:
    sig, targets, listing = parse_kill_args(args.argv)
    if listing:
        return Text(["  ".join(f"{int(s):>2}) {s.signame}" for s in Signal)],
                    records=[{"number": int(s), "name": s.signame} for s in Signal])
    if not targets:
        raise UsageError("missing process id")
    pids = [pid for t in targets for pid in parse_targets(sh, t)]
    errors = []
    for pid in pids:
        try:
            sh.api.signal(pid, sig)
        except KernelError as exc:
            errors.append(f"kill: {exc}")
    return Text(stderr=errors, status=1 if errors else 0)
