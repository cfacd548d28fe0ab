"""`client NAME` — an outside client's session (the HTTP front starts it for a user's token): the calls are the
front's, made for this process as the client sends them; it ends when the front closes its input (idle)."""

from __future__ import annotations

from kernel.syscall import AgentContext


async def main(ctx: AgentContext) -> int:
    await ctx.stdin.read()  # end-of-file: the session is over
    return 0
