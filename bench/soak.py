"""`python -m bench.soak`: keep N simulated agents alive for M minutes and watch the kernel's footprint.

Each agent asks the model a few times, calls a tool (audited) and exits; a new one takes its place at
once, so N agents run the whole time. Every few seconds it samples the kernel's RSS, open file
descriptors and asyncio tasks. It passes when RSS after warm-up grows by less than 10 %, the descriptor
count comes back to where it was, and every process is accounted for (spawned = rows in the database,
all exited 0, one audit row per tool call).

    python -m bench.soak [--agents 1000] [--minutes 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from kernel.kernel import KernelConfig, boot
from kernel.llm.simulated import SimulatedBackend

AGENT = '''
async def main(ctx):
    messages = [{"role": "user", "content": "soak"}]
    for _ in range(2):
        result = await ctx.llm(messages, max_tokens=16, options={"tokens": 12})
        messages += [{"role": "assistant", "content": result.text}, {"role": "user", "content": "again"}]
    out = await ctx.tool("calc", expression="6*7")
    return 0 if out.ok else 1
'''


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=1000, help="agents kept running at once")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--json", type=Path, metavar="FILE")
    return p


async def soak(agents: int, minutes: float, slots: int, sample_every: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="aios-soak-"))
    (home / "agents").mkdir()
    (home / "agents" / "soaker.py").write_text(AGENT)
    sim = SimulatedBackend(slots=slots, decode_tps=400, prefill_tps=20_000, tick=4)
    kernel = await boot(KernelConfig(home=home, backend="simulated", user="soak"), backend=sim)
    kernel.quotas.max_procs = agents + 10
    me = psutil.Process()
    spawned, failed = 0, 0
    samples: list[dict[str, float]] = []
    done = asyncio.Event()
    stop_at = time.monotonic() + minutes * 60

    def start_one() -> None:
        nonlocal spawned
        proc = kernel.spawn("soaker")
        spawned += 1
        proc.task.add_done_callback(lambda _t, p=proc: finished(p))

    def finished(proc: Any) -> None:
        nonlocal failed
        failed += proc.exit_code != 0
        if time.monotonic() < stop_at:
            start_one()
        elif not kernel.procs.alive():
            done.set()

    started = time.monotonic()
    fds_before = me.num_fds()
    for _ in range(agents):
        start_one()
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), sample_every)
        except TimeoutError:
            pass
        gc.collect()
        samples.append({"t": round(time.monotonic() - started, 1), "rss_mb": me.memory_info().rss / 2**20,
                        "fds": me.num_fds(), "tasks": len(asyncio.all_tasks()), "alive": len(kernel.procs.alive()),
                        "in_memory": len(kernel.procs), "spawned": spawned})
    elapsed = time.monotonic() - started
    kernel.storage.flush()
    rows = kernel.storage.db.execute("SELECT count(*), sum(state = 'EXITED' AND exit_code = 0) FROM processes")
    total_rows, ok_rows = rows.fetchone()
    audit_rows = kernel.storage.db.execute("SELECT count(*) FROM audit").fetchone()[0]
    await kernel.shutdown()
    fds_after = me.num_fds()
    warm = [s["rss_mb"] for s in samples if s["t"] >= 0.2 * elapsed] or [samples[-1]["rss_mb"]]
    quarter = max(1, len(warm) // 4)
    base, end = statistics.median(warm[:quarter]), statistics.median(warm[-quarter:])
    return {
        "agents": agents, "minutes": round(elapsed / 60, 2), "spawned": spawned, "failed": failed,
        "processes_per_s": round(spawned / elapsed, 1),
        "rss_mb_after_warmup": round(base, 1), "rss_mb_end": round(end, 1),
        "rss_growth": round((end - base) / base, 4),
        "fds_before": fds_before, "fds_peak": max(s["fds"] for s in samples), "fds_after": fds_after,
        "tasks_peak": max(s["tasks"] for s in samples), "in_memory_peak": max(s["in_memory"] for s in samples),
        "db_rows": total_rows, "db_exited_ok": ok_rows, "audit_rows": audit_rows,
        "accounted": total_rows == spawned and ok_rows == spawned and audit_rows == spawned and failed == 0,
        "samples": samples,
    }


def report(r: dict[str, Any]) -> str:
    ok = r["rss_growth"] < 0.10 and r["fds_after"] <= r["fds_before"] + 2 and r["accounted"]
    lines = [
        f"soak: {r['agents']} agents for {r['minutes']} min — {r['spawned']} processes ({r['processes_per_s']}/s), "
        f"{r['failed']} failed",
        f"RSS after warm-up {r['rss_mb_after_warmup']} MiB → end {r['rss_mb_end']} MiB "
        f"(growth {100 * r['rss_growth']:+.1f} %, limit +10 %)",
        f"file descriptors {r['fds_before']} before, {r['fds_peak']} peak, {r['fds_after']} after shutdown; "
        f"asyncio tasks peak {r['tasks_peak']}; processes kept in memory peak {r['in_memory_peak']}",
        f"accounted for: {r['db_rows']} rows, {r['db_exited_ok']} exited 0, {r['audit_rows']} audit rows "
        f"→ {'yes' if r['accounted'] else 'NO'}",
        "PASS" if ok else "FAIL",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result = asyncio.run(soak(args.agents, args.minutes, args.slots, args.sample))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = result["rss_growth"] < 0.10 and result["accounted"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
