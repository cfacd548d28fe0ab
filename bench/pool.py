"""How well one scheduler keeps a pool of endpoints busy, and what losing one costs.

    python -m bench.pool [--endpoints 8] [--slots 4] [--agents 1000] [--decode-tps 200] [--policy fifo]
                         [--arrivals poisson] [--load 3] [--seed 0] [--json FILE] [--strict]

A simulated pool of E endpoints × P slots serves the benchmark workload (`bench.workload`, run by
`bench.run.run_kernel`) twice: healthy, and with endpoint sim-0 dying halfway through (at half the
healthy makespan; it does not come back). Utilisation is busy slot-seconds (the time each endpoint
slot was serving a call, measured by the pool) / (slots × makespan), per endpoint and overall; in
the second run, overall is over the survivors. Every agent must finish in both runs (run_kernel
raises otherwise). `--strict` exits 1 when the healthy utilisation is below 95 %.

The default arrivals are Poisson at 3× the pool's capacity, so that a queue forms and utilisation
measures how well the pool is kept busy (below capacity it only measures the load). With `--arrivals
burst` all agents are spawned at once and the kernel's time to spawn a thousand processes (about a
second here, before the first model call) counts in the makespan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.metrics import summarize
from bench.run import run_kernel
from bench.workload import generate
from kernel.llm.pool import PoolBackend, SimEndpoint
from kernel.llm.retry import RetryPolicy

TARGET = 0.95


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.pool", description=__doc__.split("\n")[0])
    p.add_argument("--endpoints", type=int, default=8, metavar="E")
    p.add_argument("--slots", type=int, default=4, metavar="P", help="slots per endpoint")
    p.add_argument("--agents", type=int, default=1000, metavar="N")
    p.add_argument("--decode-tps", type=float, default=200.0, help="simulated tokens/s per slot")
    p.add_argument("--policy", default="fifo", help="scheduling policy (the pool is measured, not the policy)")
    p.add_argument("--arrivals", choices=("poisson", "burst"), default="poisson")
    p.add_argument("--load", type=float, default=3.0, help="arrival rate as a share of the pool's capacity")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON to FILE")
    p.add_argument("--strict", action="store_true", help=f"exit 1 when utilisation is below {TARGET:.0%}")
    return p


def make_pool(args: argparse.Namespace) -> tuple[PoolBackend, list[SimEndpoint]]:
    tick = 4 if args.agents > 200 else 2
    endpoints = [SimEndpoint(host=f"sim-{i}", slots=args.slots, decode_tps=args.decode_tps,
                             prefill_tps=args.decode_tps * 20, seed=args.seed, tick=tick)
                 for i in range(args.endpoints)]
    return PoolBackend(list(endpoints), probe=RetryPolicy(base=0.5, cap=5.0)), endpoints


async def measure(args: argparse.Namespace, kill_at: float | None = None) -> dict[str, Any]:
    """One run; with `kill_at`, endpoint sim-0 dies that many seconds after the agents start."""
    total = args.endpoints * args.slots
    specs = generate(args.agents, seed=args.seed, slots=total, decode_tps=args.decode_tps, load=args.load,
                     arrivals=args.arrivals)
    pool, endpoints = make_pool(args)
    loop = asyncio.get_running_loop()
    killed: dict[str, float] = {}

    def kill() -> None:
        endpoints[0].fail()
        killed["at"] = time.time()

    timer = loop.call_later(kill_at, kill) if kill_at is not None else None
    started = time.time()
    try:
        result = await run_kernel(args.policy, specs, pool, total)
    finally:
        if timer is not None:
            timer.cancel()
    row = summarize(f"pool-{args.policy}", result["agents"], result["calls"], slots=total,
                    decode_tps=args.decode_tps)
    makespan = row["makespan_s"]
    per = {ep.name: round(ep.busy_s / (ep.backend.slots * makespan), 4) for ep in pool.endpoints}
    alive = [ep for ep in pool.endpoints if ep.up]
    busy = sum(ep.busy_s for ep in alive)
    out = {
        "run": "one endpoint dies" if kill_at is not None else "healthy",
        "endpoints": args.endpoints, "slots_each": args.slots, "agents": len(result["agents"]),
        "finished": len(result["agents"]), "makespan_s": makespan,
        "utilisation": round(busy / (sum(ep.backend.slots for ep in alive) * makespan), 4),
        "utilisation_per_endpoint": per, "tokens_per_s": row["tokens_per_s"],
        "turnaround_mean_s": row["turnaround_mean_s"], "wait_p95_s": row["wait_p95_s"],
        "calls": row["syscalls"], "failovers": pool.failovers, "backed_off": result["switches"],
        "policy": args.policy, "arrivals": args.arrivals, "decode_tps": args.decode_tps, "seed": args.seed,
    }
    if kill_at is not None:
        dead = pool.endpoints[0]
        out["died_at_s"] = round(killed.get("at", started) - started, 3)
        out["calls_cut"] = dead.failures
        out["dead_endpoint_state"] = "up" if dead.up else "down"
    return out


def table(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0]["utilisation_per_endpoint"])
    head = f"{'run':<18} {'makespan s':>10} {'util':>6} {'cut':>4} {'failover':>8} {'backoff':>7}  " + " ".join(
        f"{n:>6}" for n in names)
    lines = [head]
    for r in rows:
        per = " ".join(f"{r['utilisation_per_endpoint'][n]:>6.1%}" for n in names)
        lines.append(f"{r['run']:<18} {r['makespan_s']:>10.2f} {r['utilisation']:>6.1%} {r.get('calls_cut', 0):>4} "
                     f"{r['failovers']:>8} {r['backed_off']:>7}  {per}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    healthy = await measure(args)
    failing = await measure(args, kill_at=healthy["makespan_s"] / 2)
    rows = [healthy, failing]
    print(f"{args.agents} agents on {args.endpoints} simulated endpoints × {args.slots} slots, "
          f"{args.decode_tps:g} tokens/s a slot, {args.policy}, {args.arrivals} at load {args.load:g}; "
          "utilisation = busy slot-s / (slots × makespan), over the survivors once one dies")
    print(table(rows))
    ok = healthy["utilisation"] >= TARGET
    print(f"healthy utilisation {healthy['utilisation']:.1%} ({'≥' if ok else 'BELOW'} {TARGET:.0%}); with sim-0 "
          f"dead from {failing['died_at_s']}s: survivors {failing['utilisation']:.1%}, all {failing['finished']} "
          "agents finished")
    print(json.dumps(rows, indent=2))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parser().parse_args())))
