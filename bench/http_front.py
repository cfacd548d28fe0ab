"""What the HTTP front costs: a model call through it against the same call made in the kernel, in one run.

    python -m bench.http_front [--calls 200] [--clients 4] [--rounds 4] [--tokens 64] [--json]

The clients are other processes using the official `ollama` client with a user's token (a `client` session
process in the kernel), as an outside agent is. Figures:
- overhead: the simulated model at a speed that makes its own time nil (1 token, 10^6 tokens/s), `--calls` calls
  one after another; each call's wall time through the front (the client's `chat`, streaming, from the call to its
  last line) and in the kernel (`syscall_llm` on a live process, from the call to its answer). p50 and p99 of
  each, and their difference: what the front adds to a call (HTTP, JSON, the client library).
- throughput: the embedded model (`--clients` slots), `--clients` clients at once, each `--rounds` calls of
  `--tokens` tokens at temperature 0 with a fixed seed; the same requests made in the kernel by as many tasks.
  Answer tokens (the engine's counts) per second of wall time, and the ratio front / direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.metrics import pct
from kernel.kernel import KernelConfig, boot
from kernel.llm.backend import LLMRequest
from kernel.syscall import Pipe


def _request(i: int, tokens: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"Write a few sentences about topic number {i}."}],
            "options": {"num_predict": tokens, "temperature": 0, "seed": 0}}


def client_main(url: str, token: str, first: int, calls: int, tokens: int) -> None:
    """One client process: `calls` chats, one after another; prints each call's seconds and its token count."""
    import ollama

    client = ollama.Client(host=f"{url}/t/{token}")
    print("ready", flush=True)
    sys.stdin.readline()  # all clients start together, once every one has started Python and its imports
    out = []
    for i in range(first, first + calls):
        body = _request(i, tokens)
        t0 = time.perf_counter()
        parts = list(client.chat(model="aios", messages=body["messages"], options=body["options"], stream=True))
        out.append([time.perf_counter() - t0, parts[-1].eval_count if parts else 0])
    print(json.dumps(out))


def _clients(url: str, token: str, n: int, calls: int, tokens: int) -> list[subprocess.Popen[str]]:
    """`n` client processes, started and ready (their imports done): `_collect` sets them going."""
    procs = [subprocess.Popen([sys.executable, "-m", "bench.http_front", "--client", url, token, str(i * calls),
                               str(calls), str(tokens)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(n)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return procs


async def _collect(procs: list[subprocess.Popen[str]]) -> list[list[float]]:
    outs = await asyncio.gather(*(asyncio.to_thread(p.communicate, "go\n") for p in procs))
    rows: list[list[float]] = []
    for p, (stdout, _) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError("a client failed")
        rows += json.loads(stdout)
    return rows


async def overhead(calls: int) -> dict[str, Any]:
    from kernel.llm.simulated import SimulatedBackend

    sim = SimulatedBackend(slots=4, decode_tps=1e6, prefill_tps=1e9, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        kernel = await boot(KernelConfig(home=Path(tmp), backend="simulated", user="bench"), backend=sim)
        front = await kernel.http_front()
        token = front.user_token("bench")
        proc = kernel.spawn("client", ["direct"], user="bench", stdin=Pipe())
        direct = []
        for i in range(calls):
            body = _request(i, 1)
            t0 = time.perf_counter()
            await kernel.syscall_llm(proc, LLMRequest(messages=body["messages"], max_tokens=1, temperature=0))
            direct.append(time.perf_counter() - t0)
        (client,) = _clients(front.url, token, 1, calls, 1)
        through = [r[0] for r in await _collect([client])]
        await kernel.shutdown()
    ms = 1000.0
    return {"calls": calls, "direct_p50_ms": round(pct(direct, 50) * ms, 2), "direct_p99_ms":
            round(pct(direct, 99) * ms, 2), "front_p50_ms": round(pct(through, 50) * ms, 2),
            "front_p99_ms": round(pct(through, 99) * ms, 2),
            "added_p50_ms": round((pct(through, 50) - pct(direct, 50)) * ms, 2),
            "added_p99_ms": round((pct(through, 99) - pct(direct, 99)) * ms, 2)}


async def throughput(clients: int, rounds: int, tokens: int) -> dict[str, Any]:
    from kernel.llm.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(slots=clients, seed=0)
    await backend.load()
    with tempfile.TemporaryDirectory() as tmp:
        kernel = await boot(KernelConfig(home=Path(tmp), backend="llamacpp", user="bench"), backend=backend)
        proc = kernel.spawn("client", ["direct"], user="bench", stdin=Pipe())

        async def one(c: int) -> int:
            made = 0
            for i in range(c * rounds, (c + 1) * rounds):
                body = _request(i, tokens)
                result = await kernel.syscall_llm(proc, LLMRequest(messages=body["messages"], max_tokens=tokens,
                                                                   temperature=0, seed=0))
                made += result.completion_tokens
            return made

        t0 = time.perf_counter()
        direct_tokens = sum(await asyncio.gather(*(one(c) for c in range(clients))))
        direct_s = time.perf_counter() - t0
        front = await kernel.http_front()
        procs = _clients(front.url, front.user_token("bench"), clients, rounds, tokens)
        t0 = time.perf_counter()
        rows = await _collect(procs)
        front_s = time.perf_counter() - t0
        front_tokens = int(sum(r[1] for r in rows))
        await kernel.shutdown()
    direct_tps, front_tps = direct_tokens / direct_s, front_tokens / front_s
    return {"clients": clients, "calls": clients * rounds, "direct_tokens": direct_tokens,
            "direct_tokens_per_s": round(direct_tps, 1), "front_tokens": front_tokens,
            "front_tokens_per_s": round(front_tps, 1), "ratio": round(front_tps / direct_tps, 3)}


async def main(args: argparse.Namespace) -> None:
    over = await overhead(args.calls)
    put = await throughput(args.clients, args.rounds, args.tokens)
    if args.json:
        print(json.dumps({"overhead": over, "throughput": put}))
        return
    print(f"overhead ({over['calls']} calls, simulated model, its own time nil):")
    print(f"  in the kernel  p50 {over['direct_p50_ms']} ms  p99 {over['direct_p99_ms']} ms")
    print(f"  through HTTP   p50 {over['front_p50_ms']} ms  p99 {over['front_p99_ms']} ms")
    print(f"  added          p50 {over['added_p50_ms']} ms  p99 {over['added_p99_ms']} ms")
    print(f"throughput (embedded model, {put['clients']} clients, {put['calls']} calls):")
    print(f"  in the kernel  {put['direct_tokens_per_s']} tokens/s ({put['direct_tokens']} tokens)")
    print(f"  through HTTP   {put['front_tokens_per_s']} tokens/s ({put['front_tokens']} tokens)")
    print(f"  front / direct {put['ratio']:.2f}×")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--json", action="store_true")
    asyncio.run(main(p.parse_args()))

