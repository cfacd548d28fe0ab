"""KV reuse on the embedded model: an agent's next turn restores the state its last turn left, or reads it all.

    python -m bench.kv_reuse [--agents 8] [--steps 6] [--slots 8]

8 `workload` agents of 6 steps each run through the kernel on the embedded model, twice in one process: with
finished sequences' states kept (the default) and without. Each agent has a system prompt of ~600 tokens and its
context grows by its answer (16 tokens) and a tool result (~120 tokens) a step. The figure is each call's
first-token wait (from the call being queued to its first token), for step 1 and for the later steps.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kernel.events import SyscallQueued, TokenGenerated
from kernel.kernel import KernelConfig, boot
from kernel.llm.llamacpp import LlamaCppBackend


async def one_run(backend: LlamaCppBackend, keep: bool, agents: int, steps: int) -> dict[str, Any]:
    await backend.load()  # (the kernel's shutdown closes it: each run loads it again)
    assert backend.engine is not None
    backend.engine.keep_finished = keep
    backend.engine.cache.clear()
    backend.engine.stats.cached_bytes = 0
    reused0 = backend.engine.stats.reused
    with tempfile.TemporaryDirectory() as tmp:
        kernel = await boot(KernelConfig(home=Path(tmp), backend="llamacpp", user="bench"), backend=backend)
        queued: dict[tuple[int, int], float] = {}
        first: dict[tuple[int, int], float] = {}
        order: dict[int, list[int]] = {}

        def seen(event: Any) -> None:
            key = (event.pid, event.sid)
            if isinstance(event, SyscallQueued) and event.call == "llm" and key not in queued:
                queued[key] = time.perf_counter()
                order.setdefault(event.pid, []).append(event.sid)
            elif isinstance(event, TokenGenerated) and key not in first:
                first[key] = time.perf_counter()

        kernel.bus.on(seen, SyscallQueued, TokenGenerated)
        t0 = time.perf_counter()
        step = [f"16:0.05:{120 + 10 * i}" for i in range(steps - 1)] + ["16:0"]
        procs = [kernel.spawn("workload", ["--system", "600", "--family", "0", "--task", str(i), "--cap", "16",
                                           *step], user="bench") for i in range(agents)]
        for proc in procs:
            await kernel.wait(proc.pid)
        wall = time.perf_counter() - t0
        reused = backend.engine.stats.reused - reused0
        await kernel.shutdown()
    failed = [p for p in procs if p.exit_code != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} agents failed: {failed[0].error}")
    waits: dict[str, list[float]] = {"step 1": [], "later": []}
    for pid, sids in order.items():
        for i, sid in enumerate(sids):
            if (pid, sid) in first:
                waits["step 1" if i == 0 else "later"].append(first[(pid, sid)] - queued[(pid, sid)])
    return {"keep": keep, "wall_s": round(wall, 2), "reused_tokens": reused,
            **{f"first_token_{k.replace(' ', '')}_mean_s": round(statistics.fmean(v), 3) for k, v in waits.items()},
            **{f"first_token_{k.replace(' ', '')}_p50_s": round(statistics.median(v), 3) for k, v in waits.items()}}


async def main(args: argparse.Namespace) -> None:
    backend = LlamaCppBackend(slots=args.slots, n_ctx=4096)
    rows = [await one_run(backend, keep, args.agents, args.steps) for keep in (True, False)]
    for row in rows:
        print("  ".join(f"{k} {v}" for k, v in row.items()))
    kept, not_kept = rows
    print(f"later steps' first-token wait without reuse / with: "
          f"{not_kept['first_token_later_mean_s'] / max(kept['first_token_later_mean_s'], 1e-9):.1f}× (mean), "
          f"{not_kept['first_token_later_p50_s'] / max(kept['first_token_later_p50_s'], 1e-9):.1f}× (p50); "
          f"wall {not_kept['wall_s'] / kept['wall_s']:.2f}×")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--slots", type=int, default=8)
    asyncio.run(main(p.parse_args()))
