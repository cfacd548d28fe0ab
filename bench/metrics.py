"""What the benchmark reports for one system: from agent and syscall records, never from guesses."""

from __future__ import annotations

import statistics
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one gets everything."""
    if not values or not any(values):
        return 1.0
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def summarize(system: str, agents: list[dict[str, Any]], calls: list[dict[str, Any]], *, slots: int,
              decode_tps: float, switches: int = 0, switch_cost_s: float = 0.0,
              prefill_tps: float = 0.0) -> dict[str, Any]:
    """One row: `agents` have spec, arrived, ended, wait; `calls` have wait_s, service_s, overhead_s. With
    `prefill_tps`, the floor includes reading each tool result (the system prompt is taken as cached)."""
    turnaround = [a["ended"] - a["arrived"] for a in agents]
    ideal = [a["spec"].tokens / decode_tps + a["spec"].tool_wait
             + (sum(a["spec"].results) / prefill_tps if prefill_tps else 0.0) for a in agents]
    slowdown = [t / max(i, 1e-9) for t, i in zip(turnaround, ideal, strict=True)]
    waits = [a["wait"] for a in agents]
    short = [a["wait"] for a in agents if a["spec"].kind == "short"]
    long = [a["wait"] for a in agents if a["spec"].kind == "long"]
    short_ta = [t for t, a in zip(turnaround, agents, strict=True) if a["spec"].kind == "short"]
    long_ta = [t for t, a in zip(turnaround, agents, strict=True) if a["spec"].kind == "long"]
    makespan = max(a["ended"] for a in agents) - min(a["arrived"] for a in agents)
    by_user: dict[str, list[float]] = {}
    for a, s in zip(agents, slowdown, strict=True):
        by_user.setdefault(a["spec"].user, []).append(1 / s)
    tokens = sum(a["spec"].tokens for a in agents)
    overhead = [c["overhead_s"] * 1e6 for c in calls]
    busy = sum(c["service_s"] for c in calls)
    return {
        "system": system,
        "agents": len(agents),
        "makespan_s": round(makespan, 3),
        "agents_per_min": round(len(agents) / makespan * 60, 1) if makespan else 0.0,
        "tokens_per_s": round(tokens / makespan, 1) if makespan else 0.0,
        "turnaround_mean_s": round(statistics.fmean(turnaround), 3),
        "turnaround_p50_s": round(pct(turnaround, 50), 3),
        "turnaround_p95_s": round(pct(turnaround, 95), 3),
        "turnaround_p99_s": round(pct(turnaround, 99), 3),
        "turnaround_mean_short_s": round(statistics.fmean(short_ta), 3) if short_ta else 0.0,
        "turnaround_p95_short_s": round(pct(short_ta, 95), 3),
        "turnaround_mean_long_s": round(statistics.fmean(long_ta), 3) if long_ta else 0.0,
        # the floor no scheduler passes: every call served the moment it is asked, at full speed
        "turnaround_ideal_s": round(statistics.fmean(ideal), 3),
        "wait_mean_s": round(statistics.fmean(waits), 4),
        "wait_p50_s": round(pct(waits, 50), 4),
        "wait_p95_s": round(pct(waits, 95), 4),
        "wait_p99_s": round(pct(waits, 99), 4),
        "wait_mean_short_s": round(statistics.fmean(short), 4) if short else 0.0,
        "wait_p95_short_s": round(pct(short, 95), 4),
        "wait_mean_long_s": round(statistics.fmean(long), 4) if long else 0.0,
        "wait_p95_long_s": round(pct(long, 95), 4),
        "slowdown_mean": round(statistics.fmean(slowdown), 3),
        "slowdown_p95": round(pct(slowdown, 95), 3),
        "jain": round(jain([statistics.fmean(v) for v in by_user.values()]), 4),
        "utilisation": round(min(1.0, busy / (slots * makespan)), 4) if makespan else 0.0,
        "overhead_p50_us": round(pct(overhead, 50), 1),
        "overhead_p99_us": round(pct(overhead, 99), 1),
        "syscalls": len(calls),
        "switches": switches,
        "switch_cost_s": round(switch_cost_s, 4),
    }
