"""top [--theme NAME] — the live monitor over the running kernel (needs a terminal)."""

from __future__ import annotations

import argparse
import io
import sys
from typing import TYPE_CHECKING

from commands.registry import ArgParser, CommandError, UsageError, command
from commands.results import Stream

if TYPE_CHECKING:
    from aios_shell.shell import Shell


def _args(p: ArgParser) -> None:
    p.add_argument("--theme", metavar="NAME", help="dark (default), light or high-contrast; remembered")
    p.epilog = ("keys: k term, K kill, s stop/cont, +/- renice, / filter, o sort menu (< > step, I reverse), "
                "e exited, T tree, t theme, : command, ? help, q quit")


def is_terminal(sh: Shell) -> bool:
    """The monitor draws on the real terminal: stdin and stdout must both be one."""
    streams = (sys.__stdin__, sys.__stdout__)
    return sh.out.is_terminal and all(s is not None and s.isatty() for s in streams)


@command("top", "the live monitor: processes, scheduler, context, tool calls, system",
         usage="top [--theme NAME]", args=_args, examples=("top", "top --theme light"))
async def top(sh: Shell, args: argparse.Namespace) -> Stream:
    if sh.monitor is not None:
        raise CommandError("already in the monitor")
    if args.theme is not None:
        import themes

        if args.theme not in themes.names():
            raise UsageError(f"{args.theme}: no such theme (themes: {', '.join(themes.names())})")
    if sh.remote:
        raise CommandError("this shell runs in the kernel's process, which has no terminal: `aios top` attaches "
                           "the monitor to it from yours")
    if not is_terminal(sh):
        raise CommandError("not a terminal: the monitor needs one (try: ps)")
    from aios_shell.tui import make_monitor

    app = make_monitor(sh.kernel, theme=args.theme)
    # while the monitor owns the screen, what the shell prints (job reports) is held, then shown
    held = io.StringIO()
    saved = sh.out, sh.err
    from aios_shell.render import make_console

    sh.out = sh.err = make_console(held)
    sh.ctl.notices = []  # and so are the job reports of the shell that started it
    try:
        await app.run_async()
    finally:
        sh.out, sh.err = saved
        notices, sh.ctl.notices = sh.ctl.notices, None
        if held.getvalue():
            sh.write(held.getvalue())
        for line in notices or ():
            sh.print(line)
    return Stream(int(app.return_code or 0))
