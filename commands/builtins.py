"""Small shell builtins: help, exit, echo, true, false, sleep."""

from __future__ import annotations

import argparse
import asyncio
import textwrap
from typing import TYPE_CHECKING

from commands.registry import UsageError, command, load_all, lookup
from commands.results import Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell


@command("help", "list the commands, or show how to use one", usage="help [COMMAND]",
         args=lambda p: p.add_argument("name", nargs="?", help="a command"), complete="command")
async def help_(sh: Shell, args: argparse.Namespace) -> Text:
    if args.name:
        spec = lookup(args.name)
        if spec is None:
            raise UsageError(f"{args.name}: no such command")
        return Text([spec.help()])
    commands = sorted({spec.name: spec for spec in load_all().values()}.values(), key=lambda c: c.name)
    names = [c.name + (f" ({', '.join(c.aliases)})" if c.aliases else "") for c in commands]
    width = max(len(n) for n in names)
    room = max(30, sh.out.width - width - 2)
    out = []
    for name, spec in zip(names, commands, strict=True):  # descriptions wrap: none is cut at the screen's edge
        lines = textwrap.wrap(spec.summary, room) or [""]
        out.append(f"{name.ljust(width)}  {lines[0]}")
        out += [f"{' ' * width}  {more}" for more in lines[1:]]
    agents = ", ".join(sh.api.agents()) or "none"
    out.append(f"Agents: {agents}. `help COMMAND` for its usage and options; `CMD --json` prints JSON where a "
               "table is shown.")
    out.append("Language: ; && || & | > >> # 'quotes' $? $! %N; jobs, fg, bg, wait, source FILE.")
    return Text(out)


@command("exit", "leave the shell (asks first when agents still run or are stopped: they are hung up)",
         usage="exit [N]",
         args=lambda p: p.add_argument("code", nargs="?", type=int, help="exit status (default: $?)"))
async def exit_(sh: Shell, args: argparse.Namespace) -> Text:
    code = sh.status if args.code is None else args.code & 0xFF
    sh.exit_code = code
    return Text(status=code)


@command("echo", "print its arguments", usage="echo [ARG…]", raw_args=True)
async def echo(sh: Shell, args: argparse.Namespace) -> Text:
    return Text([" ".join(args.argv)])


@command("true", "do nothing, successfully", usage="true", raw_args=True)
async def true(sh: Shell, args: argparse.Namespace) -> Text:
    return Text()


@command("false", "do nothing, unsuccessfully", usage="false", raw_args=True)
async def false(sh: Shell, args: argparse.Namespace) -> Text:
    return Text(status=1)


@command("sleep", "wait a number of seconds (agents keep running)", usage="sleep SECONDS",
         args=lambda p: p.add_argument("seconds", type=float))
async def sleep(sh: Shell, args: argparse.Namespace) -> Text:
    if args.seconds < 0:
        raise UsageError("seconds must not be negative")
    await asyncio.sleep(args.seconds)
    return Text()
