"""aios on the embedded model against the same model behind llama-cpp-python's own server, called directly.

    python -m bench.vs_server [--agents 8] [--steps 6] [--slots 8] [--system 1000] [--answer 96] [--result 300]

What a user would pick instead of aios: `python -m llama_cpp.server --model WEIGHTS` (installed with
llama-cpp-python's `[server]` extra), an OpenAI-compatible HTTP server, and agents that call it themselves. The
same agents run both ways, one after the other on this machine: 8 `workload` agents of 6 steps, each with a
system prompt and tool schemas of 1000 tokens (one program's), its context growing by its answer (96 tokens) and
a tool result (300 tokens, then 10 more each step) a step, a 50 ms tool between — the agents workload's shape at
its medians, sized to run in minutes here. Direct, each agent posts its conversation to `/v1/chat/completions`
(temperature 0, `max_tokens` the answer's length, the end-of-turn tokens barred by `logit_bias` so every answer is
that long, as the kernel's `ignore_eos` makes them) and waits for the answer, all agents at once. That server
evaluates one request at a time in one context, keeping only the tokens it read last (`llama_cpp/server/app.py`:
one `llama_outer_lock`; `Llama.generate` reuses the longest prefix of the previous prompt; its `--cache` prompt
cache is off by default). Through aios the embedded model decodes P sequences in one batch and keeps each
finished sequence's KV state for its next turn.

Figures: makespan and mean agent turnaround (all agents start at once), and the ratios aios / direct.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agents.workload import after, opening
from bench.engines import llama_servers
from kernel.kernel import KernelConfig, boot
from kernel.llm.llamacpp import LlamaCppBackend

CONTEXT = 8192  # tokens per sequence: the longest conversation here is about 3.6k

def _steps(args: argparse.Namespace) -> list[tuple[int, float, int]]:
    return [(args.answer, 0.05, args.result + 10 * i) for i in range(args.steps - 1)] + [(args.answer, 0.0, 0)]


async def through_aios(args: argparse.Namespace) -> list[float]:
    backend = LlamaCppBackend(slots=args.slots, n_ctx=CONTEXT)
    await backend.load()
    with tempfile.TemporaryDirectory() as tmp:
        kernel = await boot(KernelConfig(home=Path(tmp), backend="llamacpp", user="bench"), backend=backend)
        argv = [f"{t}:{w}:{r}" if r else f"{t}:{w}" for t, w, r in _steps(args)]
        t0 = time.perf_counter()
        procs = [kernel.spawn("workload", ["--system", str(args.system), "--family", "0", "--task", str(i),
                                           "--cap", str(args.answer), *argv], user="bench")
                 for i in range(args.agents)]
        ended = []
        for proc in procs:
            await kernel.wait(proc.pid)
            ended.append(time.perf_counter() - t0)
        await kernel.shutdown()
    failed = [p for p in procs if p.exit_code != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} agents failed through aios: {failed[0].error}")
    return ended


async def direct(args: argparse.Namespace, barred: list[int]) -> list[float]:
    with llama_servers(1, threads=os.cpu_count() or 2, n_ctx=CONTEXT) as (server,):
        async with httpx.AsyncClient(base_url=server.url.removesuffix("/v1"), timeout=600) as client:
            async def agent(task: int, t0: float) -> float:
                messages: list[dict[str, Any]] = opening(args.system, 0, task)
                for i, (tokens, wait, result) in enumerate(_steps(args)):
                    reply = await client.post("/v1/chat/completions", json={
                        "messages": messages, "max_tokens": tokens, "temperature": 0,
                        "logit_bias": {str(t): -100 for t in barred}})
                    reply.raise_for_status()
                    answer = reply.json()["choices"][0]["message"]["content"] or ""
                    # (its OpenAI schema wants a tool result to name the call it answers)
                    messages += [{**m, "tool_call_id": f"call_{task}_{i}"} if m["role"] == "tool" else m
                                 for m in after(i, answer, result, task, True)]
                    if wait:
                        await asyncio.sleep(wait)
                return time.perf_counter() - t0

            t0 = time.perf_counter()
            return list(await asyncio.gather(*(agent(i, t0) for i in range(args.agents))))


def _figures(ended: list[float]) -> dict[str, float]:
    return {"makespan_s": round(max(ended), 2), "turnaround_mean_s": round(statistics.fmean(ended), 2)}


async def main(args: argparse.Namespace) -> None:
    probe = LlamaCppBackend(slots=1, n_ctx=512)
    await probe.load()
    llm = probe._llm
    barred = sorted({llm.token_eos(), *probe.tokenize("<end_of_turn>", bos=False)})
    await probe.close()
    ours = _figures(await through_aios(args))
    theirs = _figures(await direct(args, barred))
    print(f"aios (embedded, P={args.slots}): {ours}")
    print(f"llama_cpp.server, called directly: {theirs}")
    print(f"aios / direct: makespan {ours['makespan_s'] / theirs['makespan_s']:.2f}×, "
          f"mean turnaround {ours['turnaround_mean_s'] / theirs['turnaround_mean_s']:.2f}×")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--system", type=int, default=1000, help="tokens of system prompt and tool schemas")
    p.add_argument("--answer", type=int, default=96, help="tokens of every answer")
    p.add_argument("--result", type=int, default=300, help="tokens of the first tool result")
    asyncio.run(main(p.parse_args()))
