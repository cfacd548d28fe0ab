"""`chat PROMPT…` — ask the model once and stream its answer to standard output.

Whatever is piped in (`run a | run chat "summarise this"`) is read to end-of-file and
added after the prompt: a model call needs its whole prompt, so chat starts asking once
its input is complete (the pipe itself streams, as in Unix; `sort` waits the same way).
"""

from __future__ import annotations

from kernel.syscall import AgentContext

USAGE = "usage: run chat PROMPT…  (or: … | run chat [PROMPT…])"


async def main(ctx: AgentContext) -> int:
    history = [m for m in ctx.history if m.get("role") in ("user", "assistant")]
    if history:  # resumed: the saved conversation already holds the prompt and what was piped in
        if history[-1]["role"] == "assistant":  # it had answered; only its exit was lost
            await ctx.write(str(history[-1]["content"]) + "\n")
            return 0
        await ctx.llm(history, echo=True)
        await ctx.write("\n")
        return 0
    prompt = " ".join(ctx.argv).strip()
    piped = (await ctx.stdin.read()).strip()
    if piped:
        prompt = f"{prompt}\n\n{piped}" if prompt else piped
    if not prompt:
        await ctx.write(USAGE + "\n")
        return 2
    answer = await ctx.llm([{"role": "user", "content": prompt}], echo=True)
    if not answer.text:
        await ctx.write("(the model gave no answer)")
    await ctx.write("\n")
    return 0
