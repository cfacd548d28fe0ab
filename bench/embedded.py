"""Prefill and decode speed of the embedded model on this machine.

    python -m bench.embedded [--runs N] [--json FILE]

Prefill: a long prompt, time to the first token. Decode: tokens after the first, over their time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from kernel.llm.backend import LLMRequest
from kernel.llm.llamacpp import LlamaCppBackend

TOPIC = "the history of the sea, its creatures, its tides, its storms and the ships that crossed it"


async def one_run(backend: LlamaCppBackend, run: int, decode_tokens: int) -> dict[str, float]:
    # a fresh prompt each run, so the KV cache of the last one cannot be reused
    prompt = f"Run {run}. " + " ".join(f"Paragraph {i} is about {TOPIC}." for i in range(20))
    request = LLMRequest([{"role": "user", "content": prompt}], max_tokens=decode_tokens,
                         stop=("<never>",), temperature=0.7, seed=run)
    t0 = time.perf_counter()
    first = None
    last = None
    async for chunk in backend.stream(request):
        now = time.perf_counter()
        if chunk.done:
            done = chunk
            break
        if chunk.text:
            first = first or now
            last = now
    assert first is not None and last is not None
    decoded = done.completion_tokens
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": decoded,
        "ttft_s": first - t0,
        "prefill_tps": done.prompt_tokens / (first - t0),
        "decode_tps": (decoded - 1) / (last - first) if decoded > 1 and last > first else 0.0,
    }


async def main(runs: int, decode_tokens: int) -> dict[str, object]:
    backend = LlamaCppBackend()
    t0 = time.perf_counter()
    await backend.load()
    load_s = time.perf_counter() - t0
    await one_run(backend, -1, 8)  # warm-up
    results = [await one_run(backend, i, decode_tokens) for i in range(runs)]
    await backend.close()
    return {
        "model": backend.model,
        "threads": backend.threads,
        "load_s": round(load_s, 3),
        "runs": results,
        "prefill_tps_median": round(statistics.median(r["prefill_tps"] for r in results), 1),
        "decode_tps_median": round(statistics.median(r["decode_tps"] for r in results), 1),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.embedded", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    report = asyncio.run(main(args.runs, args.decode_tokens))
    print(f"model {report['model']}, {report['threads']} threads, load {report['load_s']} s")
    print(f"{'run':>3}  {'prompt':>6}  {'gen':>4}  {'ttft s':>7}  {'prefill tok/s':>13}  {'decode tok/s':>12}")
    for i, r in enumerate(report["runs"]):  # type: ignore[arg-type]
        print(f"{i:>3}  {r['prompt_tokens']:>6}  {r['completion_tokens']:>4}  {r['ttft_s']:>7.3f}  "
              f"{r['prefill_tps']:>13.1f}  {r['decode_tps']:>12.1f}")
    print(f"median: prefill {report['prefill_tps_median']} tok/s, decode {report['decode_tps_median']} tok/s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    cli()
