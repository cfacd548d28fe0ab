"""Aggregate decode speed of the embedded model at P = 1, 2, 4, 8: raw llama.cpp batched decode beside
the same P sequences served through the kernel (P `workload` agents on P slots), in one run.

    python -m bench.batching [--tokens N] [--repeat N] [--slots 1,2,4,8] [--json FILE]

Also measures a preempted call resuming from its saved KV state against re-reading a ~2k-token prompt.

Raw decode runs in a child process. llama.cpp's CPU backend computes on OpenMP, whose thread pools belong to
the thread that starts them; with two decoding threads in one process (raw on the main thread, the engine on
its own) libgomp manages more threads than there are cores and stops spinning between operations, which made
both about 9% slower here. Each side alone in its process is what a user's program sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kernel.llm  # noqa: F401 - first: it sets OpenMP's spin (for both sides) before llama_cpp loads libgomp

# isort: split
import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaBatch, LlamaContext

from kernel.events import TokenGenerated
from kernel.kernel import KernelConfig, boot
from kernel.llm.backend import LLMRequest
from kernel.llm.llamacpp import LlamaCppBackend


def raw_batched(backend: LlamaCppBackend, slots: int, tokens: int) -> float:
    """P sequences in one context, one llama_decode per step, greedy: tokens/s over all sequences."""
    llm = backend._llm
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 1024 * slots, 512, 512
    params.n_seq_max, params.n_threads, params.n_threads_batch = slots, backend.threads, backend.threads
    params.kv_unified, params.swa_full, params.no_perf = False, False, True
    ctx = LlamaContext(model=llm._model, params=params, verbose=False)
    batch = LlamaBatch(n_tokens=512, embd=0, n_seq_max=slots, verbose=False)
    b = batch.batch
    prompts = [llm.tokenize(f"User: Tell story {i} about the sea.\nAssistant:".encode()) for i in range(slots)]
    n = 0
    for s, prompt in enumerate(prompts):
        for p, tok in enumerate(prompt):
            b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, p, 1, p == len(prompt) - 1
            b.seq_id[n][0] = s
            n += 1
    b.n_tokens = n
    assert llama_cpp.llama_decode(ctx.ctx, b) == 0
    n_vocab = llm.n_vocab()
    rows = list(range(n))
    last_rows = [sum(len(p) for p in prompts[: s + 1]) - 1 for s in range(slots)]
    pos = [len(p) for p in prompts]
    t0 = time.perf_counter()
    for _ in range(tokens):
        nxt = []
        for row in last_rows:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, row), shape=(n_vocab,))
            nxt.append(int(logits.argmax()))
        for s, tok in enumerate(nxt):
            b.token[s], b.pos[s], b.n_seq_id[s], b.logits[s] = tok, pos[s], 1, True
            b.seq_id[s][0] = s
            pos[s] += 1
        b.n_tokens = slots
        assert llama_cpp.llama_decode(ctx.ctx, b) == 0
        last_rows = list(range(slots))
    elapsed = time.perf_counter() - t0
    del rows
    batch.close()
    ctx.close()
    return slots * tokens / elapsed


async def raw_in_child(slots: int, tokens: int) -> float:
    """`raw_batched` in a process of its own (see the module's note on OpenMP)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.batching", "--raw-only", str(slots), "--tokens", str(tokens),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"raw decode failed: {err.decode(errors='replace').strip()[-300:]}")
    return float(json.loads(out.decode().strip().splitlines()[-1])["tokens_per_s"])


def decode_rate(stamps: dict[int, list[float]]) -> float:
    """Tokens/s over the stretch where every sequence was decoding: from the last first token to the
    first last token (what raw decode times: no prompt reading, no start-up, no tail)."""
    start = max(ts[0] for ts in stamps.values())
    end = min(ts[-1] for ts in stamps.values())
    inside = sum(1 for ts in stamps.values() for t in ts if start < t <= end)
    return inside / (end - start) if end > start else 0.0


async def through_kernel(backend: LlamaCppBackend, tokens: int) -> tuple[float, float]:
    """P `workload` agents on P slots: (decode tokens/s while all P decode, tokens/s from spawn to the end)."""
    slots = backend.slots
    await backend.load()
    home = Path(tempfile.mkdtemp(prefix="aios-batching-"))
    kernel = await boot(KernelConfig(home=home, backend="llamacpp", user="bench", admins=frozenset({"bench"})),
                        backend=backend)
    warm = kernel.spawn("workload", ["4:0"])
    await kernel.wait(warm.pid)
    stamps: dict[int, list[float]] = {}
    kernel.bus.on(lambda e: stamps.setdefault(e.pid, []).append(time.perf_counter()), TokenGenerated)
    t0 = time.perf_counter()
    procs = [kernel.spawn("workload", [f"{tokens}:0"]) for _ in range(slots)]
    for p in procs:
        await kernel.wait(p.pid)
    elapsed = time.perf_counter() - t0
    produced = sum(p.completion_tokens for p in procs)
    await kernel.shutdown()
    shutil.rmtree(home, ignore_errors=True)
    return decode_rate({p.pid: stamps.get(p.pid, [0.0]) for p in procs}), produced / elapsed


async def resume_vs_reread(backend: LlamaCppBackend) -> dict[str, Any]:
    await backend.load()
    messages = [{"role": "user", "content": "Tell me about ships. " + "Ships sail the sea and carry goods. " * 230}]
    request = LLMRequest(messages, max_tokens=8, temperature=0, stop=("<never>",))
    t0 = time.perf_counter()
    stream = backend.stream(request)
    partial = ""
    async for chunk in stream:
        if chunk.text:
            reread = time.perf_counter() - t0  # time to the first token: reading the whole prompt
            partial += chunk.text
            break
    await stream.aclose()
    while backend.engine.busy:
        await asyncio.sleep(0.01)
    stats = backend.stats
    t1 = time.perf_counter()
    async for chunk in backend.stream(LLMRequest(messages, max_tokens=4, temperature=0, stop=("<never>",),
                                                 partial=partial)):
        if chunk.text or chunk.done:
            resumed = time.perf_counter() - t1
            break
    return {"prompt_tokens": len(backend.tokenize(messages[0]["content"])), "reread_s": round(reread, 3),
            "resume_s": round(resumed, 4), "save_s": round(stats.save_s, 4), "restore_s": round(stats.restore_s, 4),
            "speedup": round(reread / resumed, 1)}


async def main(tokens: int, repeat: int = 1, slot_counts: tuple[int, ...] = (1, 2, 4, 8)) -> dict[str, Any]:
    rows = []
    for slots in slot_counts:
        kernel, ends, raw, ratios = [], [], [], []
        for i in range(repeat):
            # pairs of runs; which goes first alternates, so a machine whose speed drifts (this one's does,
            # ±15% within minutes) favours neither; the medians are kept
            backend = LlamaCppBackend(slots=slots)
            if i % 2:
                raw.append(await raw_in_child(slots, tokens))
            kernel_tps, end_to_end = await through_kernel(backend, tokens)
            if not i % 2:
                raw.append(await raw_in_child(slots, tokens))
            kernel.append(kernel_tps)
            ends.append(end_to_end)
            ratios.append(kernel_tps / raw[-1])
            await backend.close()
        kernel_tps, end_to_end, raw_tps, ratio = (statistics.median(v) for v in (kernel, ends, raw, ratios))
        rows.append({"slots": slots, "raw_tps": round(raw_tps, 1), "kernel_tps": round(kernel_tps, 1),
                     "ratio": round(ratio, 3), "ratios": [round(r, 3) for r in ratios],
                     "kernel_end_to_end_tps": round(end_to_end, 1)})
        print(f"P={slots}: raw {raw_tps:6.1f} tok/s, through the kernel {kernel_tps:6.1f} tok/s "
              f"({ratio:.0%} of raw, median of {len(ratios)} pairs); {end_to_end:.1f} tok/s counting prompt reading "
              "and start-up")
    backend = LlamaCppBackend(slots=2)
    resume = await resume_vs_reread(backend)
    await backend.close()
    print(f"resume from saved state: {resume['resume_s']} s to the next token, re-reading "
          f"{resume['prompt_tokens']} tokens: {resume['reread_s']} s ({resume['speedup']}× faster)")
    return {"batching": rows, "resume": resume}


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens each sequence generates")
    parser.add_argument("--repeat", type=int, default=1,
                        help="pairs of runs (kernel and raw, which goes first alternating); medians are shown")
    parser.add_argument("--slots", default="1,2,4,8", help="the values of P, comma-separated")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--raw-only", type=int, metavar="P", help=argparse.SUPPRESS)  # the child of raw_in_child
    args = parser.parse_args()
    if args.raw_only:
        backend = LlamaCppBackend(slots=args.raw_only)
        asyncio.run(backend.load())
        print(json.dumps({"tokens_per_s": raw_batched(backend, args.raw_only, args.tokens)}))
        return
    try:
        slot_counts = tuple(int(p) for p in args.slots.split(","))
    except ValueError:
        slot_counts = ()
    if not slot_counts or min(slot_counts) < 1:
        parser.error(f"--slots takes numbers of 1 or more separated by commas, not {args.slots!r}")
    try:
        report = asyncio.run(main(args.tokens, max(1, args.repeat), slot_counts))
    except RuntimeError as exc:  # a raw run failed in its child process
        parser.exit(1, f"bench.batching: {exc}\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    cli()
