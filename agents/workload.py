"""`workload [--system N --family F --task T --cap C] TOKENS:WAIT[:RESULT]…` — a scripted agent for benchmarks.

Each step asks the model for TOKENS tokens, then waits WAIT seconds as if a tool were running. With `--system`,
it is shaped like a tool-using agent: its conversation starts with a system prompt and tool schemas of N tokens
(the same for every agent of family F, as one program's are), then its task (T), and each step adds the answer
and a tool result of RESULT tokens, so its context grows as a real agent's does. `--cap C` asks every call for at
most C tokens, as a real agent does, instead of the exact length (the oracle the simple workload gives).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from kernel.syscall import AgentContext


def parse_steps(argv: list[str] | tuple[str, ...]) -> list[tuple[int, float, int]]:
    steps = []
    for arg in argv:
        parts = arg.split(":")
        if len(parts) > 3:
            raise ValueError(arg)
        tokens, wait, result = (parts + ["0", "0"])[:3]
        steps.append((int(tokens), float(wait or 0), int(result or 0)))
    return steps


def _words(word: str, n: int) -> str:
    return " ".join([word] * max(0, n))


def opening(system: int, family: int, task: int) -> list[dict[str, Any]]:
    """The conversation a step-1 call sends: the family's system prompt (N tokens), then the agent's task."""
    if not system:
        return [{"role": "user", "content": "Work on the task."}]
    return [{"role": "system", "content": f"You are agent program {family}. Tools: " + _words("schema", system - 6)},
            {"role": "user", "content": f"Task {task}: work on it."}]


def after(step: int, answer: str, result: int, task: int, shaped: bool) -> list[dict[str, Any]]:
    """What a step adds to the conversation: the answer, and the tool's result (or the next instruction)."""
    if not shaped:
        return [{"role": "assistant", "content": answer}, {"role": "user", "content": f"Step {step + 2}."}]
    added: list[dict[str, Any]] = [{"role": "assistant", "content": answer}]
    if result:
        added.append({"role": "tool", "content": f"[{task}.{step}] " + _words("data", result - 1)})
    return added


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workload", add_help=False)
    p.add_argument("--system", type=int, default=0)
    p.add_argument("--family", type=int, default=0)
    p.add_argument("--task", type=int, default=0)
    p.add_argument("--cap", type=int, default=0)
    p.add_argument("steps", nargs="*")
    return p


async def main(ctx: AgentContext) -> int:
    try:
        args, rest = parser().parse_known_args(list(ctx.argv))
        if rest:
            raise ValueError(rest[0])
        steps = parse_steps(args.steps)
    except (ValueError, SystemExit):
        await ctx.write("usage: run workload [--system N --family F --task T --cap C] TOKENS:WAIT[:RESULT]…\n")
        return 2
    messages = opening(args.system, args.family, args.task)
    for i, (tokens, wait, result) in enumerate(steps):
        exact = {"tokens": tokens, "ignore_eos": True}  # the model's answer is this long (on any backend that can)
        # greedy: the same text every run, and the cheapest sampling (as raw decode benchmarks use)
        result_ = await ctx.llm(messages, max_tokens=args.cap or tokens, stop=("<never>",), options=exact,
                                temperature=0)
        messages += after(i, result_.text, result, args.task, bool(args.system))
        if wait > 0:
            await asyncio.sleep(wait)
    return 0
