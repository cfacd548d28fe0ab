"""A pool of real OpenAI-compatible engines under one scheduler: tokens/s with 1, 2 and 3 endpoints.

    python -m bench.engine_pool [--endpoints 1,2,3] [--agents 8] [--steps 3] [--answer 32] [--threads 1]

Each endpoint is `python -m llama_cpp.server` on the embedded Gemma with `--threads` threads (one slot: it
evaluates one request at a time). The same agents (`workload`, `--steps` calls of `--answer` tokens each, no tool
time between) run through a kernel whose backend is the pool `openai:URL,…` of them. Figures: answer tokens the
engines reported (usage counts) per second of wall time, from the first spawn to the last exit, and the ratio to
one endpoint. On a machine with fewer cores than endpoints × threads the endpoints share cores, and the ratio
says how much of the pool's growth the machine can give.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from bench.engines import llama_servers
from kernel.kernel import KernelConfig, boot
from kernel.llm.factory import create_pool


async def run(urls: list[str], agents: int, steps: int, answer: int) -> dict[str, float]:
    pool = create_pool(",".join(f"openai:{url}" for url in urls))
    with tempfile.TemporaryDirectory() as tmp:
        kernel = await boot(KernelConfig(home=Path(tmp), backend="pool", user="bench"), backend=pool)
        t0 = time.perf_counter()
        procs = [kernel.spawn("workload", ["--cap", str(answer), *[f"{answer}:0"] * steps], user="bench")
                 for _ in range(agents)]
        for proc in procs:
            await kernel.wait(proc.pid)
        wall = time.perf_counter() - t0
        await kernel.shutdown()
    failed = [p for p in procs if p.exit_code != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} agents failed: {failed[0].error}")
    tokens = sum(p.completion_tokens for p in procs)
    return {"endpoints": len(urls), "tokens": tokens, "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", default="1,2,3", help="pool sizes to measure, comma-separated")
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--answer", type=int, default=32, help="tokens of every answer")
    p.add_argument("--threads", type=int, default=1, help="threads of each llama_cpp.server")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    for n in (int(x) for x in args.endpoints.split(",")):
        with llama_servers(n, threads=args.threads) as servers:
            rows.append(asyncio.run(run([s.url for s in servers], args.agents, args.steps, args.answer)))
    base = rows[0]["tokens_per_s"]
    for row in rows:
        row["ratio"] = round(row["tokens_per_s"] / base, 2)
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "threads": args.threads, "rows": rows}))
        return
    print(f"{os.cpu_count()} cores, {args.threads} thread(s) an endpoint, {args.agents} agents × {args.steps} calls "
          f"× {args.answer} tokens")
    for row in rows:
        print(f"  {row['endpoints']} endpoint(s): {row['tokens_per_s']:>6} tokens/s  ({row['ratio']}× one; "
              f"{row['tokens']} tokens in {row['wall_s']} s)")


if __name__ == "__main__":
    main()
