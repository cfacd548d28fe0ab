"""`workload TOKENS:WAIT…` — a scripted agent for benchmarks: each step asks the model for
TOKENS tokens, then waits WAIT seconds as if a tool were running.
"""

from __future__ import annotations

import asyncio

from kernel.syscall import AgentContext


def parse_steps(argv: tuple[str, ...]) -> list[tuple[int, float]]:
    steps = []
    for arg in argv:
        tokens, _, wait = arg.partition(":")
        steps.append((int(tokens), float(wait or 0)))
    return steps


async def main(ctx: AgentContext) -> int:
    try:
        steps = parse_steps(ctx.argv)
    except ValueError:
        await ctx.write("usage: run workload TOKENS:WAIT…\n")
        return 2
    messages = [{"role": "user", "content": "Work on the task."}]
    for i, (tokens, wait) in enumerate(steps):
        exact = {"tokens": tokens, "ignore_eos": True}  # exactly this many tokens, on any backend that can
        # greedy: the same text every run, and the cheapest sampling (as raw decode benchmarks use)
        result = await ctx.llm(messages, max_tokens=tokens, stop=("<never>",), options=exact, temperature=0)
        messages += [{"role": "assistant", "content": result.text},
                     {"role": "user", "content": f"Step {i + 2}."}]
        if wait > 0:
            await asyncio.sleep(wait)
    return 0
