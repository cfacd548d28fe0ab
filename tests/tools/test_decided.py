"""Every tool call's decision is an event keyed by (pid, sid), whoever made it: no view infers it from an error's
wording."""

from __future__ import annotations

from pathlib import Path

from kernel.events import Decision, SyscallDone, ToolCallDecided, ToolCalled
from kernel.kernel import Kernel
from tests.shell.helpers import add_agent


async def test_each_call_is_decided_once_before_it_is_done(kernel: Kernel, home: Path) -> None:
    add_agent(home, "caller", (
        "async def main(ctx):\n"
        "    await ctx.tool('calc', expression='6*7')\n"
        "    await ctx.tool('shell', command='ls')\n"
        "    await ctx.tool('nosuch')\n"
        "    await ctx.tool('calc', expression=[1])\n"
    ))
    seen: list[object] = []
    kernel.bus.on(seen.append, ToolCalled, ToolCallDecided, SyscallDone)
    proc = kernel.spawn("caller")
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(0)"
    calls = [e for e in seen if isinstance(e, ToolCalled)]
    decided = [e for e in seen if isinstance(e, ToolCallDecided)]
    done = [e for e in seen if isinstance(e, SyscallDone) and e.call.startswith("tool:")]
    assert [(d.pid, d.sid) for d in decided] == [(c.pid, c.sid) for c in calls] == [(d.pid, d.sid) for d in done]
    assert [(d.tool, d.decision, d.by) for d in decided] == [
        ("calc", Decision.ALLOW, "default"),
        ("shell", Decision.DENY, "no terminal"),  # no rule allows it and nobody can be asked
        ("nosuch", Decision.ERROR, "kernel"),
        ("calc", Decision.ERROR, "kernel"),  # invalid arguments
    ]
    assert decided[3].reason.startswith("bad arguments for calc")
    for d, c in zip(decided, done, strict=True):
        assert seen.index(d) < seen.index(c)  # decided before it is done
    assert not any(d.asked for d in decided)
