"""`parallel [-j N] [--tag] AGENT ARG…` — run AGENT once per ARG, each as a child process, at the same time.

As GNU parallel's `parallel AGENT ::: ARG…`: each child gets one argument; with no ARG, each line piped in
is one (`run chat "Name five fish, one a line." | run parallel chat`). At most N children run at once
(`-j`, default all: the kernel's scheduler shares the model between them). Their outputs are printed
whole, in the order of the arguments, each once it and those before it are done (parallel's
--keep-order); `--tag` puts the argument before each line. The children show under their parent in
`ps --forest` and in the monitor's tree (`T`). A signal that ends parallel is passed on to the children
still running; the shell's job control (`kill %1`, Ctrl-C, Ctrl-Z, `fg`, `bg`) reaches them as well.
Exit status: how many children failed (101 for more than 100), as GNU parallel's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kernel.errors import KernelError
from kernel.process import Signal
from kernel.syscall import AgentContext

USAGE = "usage: run parallel [-j N] [--tag] AGENT ARG…  (or: … | run parallel [-j N] [--tag] AGENT)"
MAX_STATUS = 101


@dataclass
class Options:
    agent: str
    args: list[str]
    jobs: int = 0  # 0: all at once
    tag: bool = False


def parse(argv: tuple[str, ...]) -> Options:
    """Options, then the agent, then its arguments (which may start with `-`)."""
    jobs, tag, i = 0, False, 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "--tag":
            tag = True
        elif arg in ("-j", "--jobs"):
            i += 1
            jobs = _count(argv[i] if i < len(argv) else "")
        elif arg.startswith("-j"):
            jobs = _count(arg[2:])
        else:
            raise ValueError(f"unknown option {arg}")
        i += 1
    if i >= len(argv):
        raise ValueError("which agent?")
    return Options(agent=argv[i], args=list(argv[i + 1:]), jobs=jobs, tag=tag)


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"-j needs a number of children, at least 1 (got {value or 'nothing'})")
    return int(value)


async def main(ctx: AgentContext) -> int:
    try:
        opts = parse(ctx.argv)
    except ValueError as exc:
        await ctx.write(f"parallel: {exc}\n{USAGE}\n")
        return 2
    args = opts.args or [line for line in (await ctx.stdin.read()).splitlines() if line.strip()]
    if not args:
        await ctx.write(f"parallel: nothing to run: no arguments and no input\n{USAGE}\n")
        return 2
    room = asyncio.Semaphore(opts.jobs or len(args))
    pids: dict[int, int] = {}

    async def one(i: int, arg: str) -> int:
        async with room:
            if ctx.signalled is not None:  # parallel is ending: what had not started does not start now
                raise asyncio.CancelledError
            pids[i] = ctx.spawn(opts.agent, [arg])
            return await ctx.wait(pids[i])

    children = [asyncio.create_task(one(i, arg)) for i, arg in enumerate(args)]
    failed = 0
    try:
        for i, child in enumerate(children):
            try:
                code = await child
            except LookupError as exc:  # no such agent: none of them can start
                await ctx.write(f"parallel: {exc}\n")
                for rest in children:
                    rest.cancel()
                return 127
            except KernelError as exc:  # too many processes, say
                await ctx.write(f"parallel: {opts.agent} {args[i]}: {exc}\n")
                failed += 1
                continue
            await _show(ctx, ctx.output(pids[i]), args[i] if opts.tag else None)
            if code:
                await ctx.write(f"parallel: {opts.agent}[{pids[i]}] {args[i]}: exit status {code}\n")
                failed += 1
    except asyncio.CancelledError:  # TERM, INT, HUP or KILL: the children go the same way
        for child in children:
            child.cancel()
        for pid in pids.values():
            try:
                ctx.signal(pid, ctx.signalled or Signal.TERM)
            except KernelError:
                pass
        raise
    return min(failed, MAX_STATUS)


async def _show(ctx: AgentContext, output: str, tag: str | None) -> None:
    if tag is not None:
        output = "".join(f"{tag}\t{line}" for line in output.splitlines(keepends=True))
    if output and not output.endswith("\n"):
        output += "\n"
    await ctx.write(output)
