"""`chat PROMPT…` — ask the model once and stream its answer to standard output."""

from __future__ import annotations

from kernel.syscall import AgentContext

USAGE = "usage: run chat PROMPT…"


async def main(ctx: AgentContext) -> int:
    prompt = " ".join(ctx.argv).strip()
    if not prompt:
        await ctx.write(USAGE + "\n")
        return 2
    answer = await ctx.llm([{"role": "user", "content": prompt}], echo=True)
    if not answer.text:
        await ctx.write("(the model gave no answer)")
    await ctx.write("\n")
    return 0
