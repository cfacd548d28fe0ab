"""The benchmark's table (with ratios to B1) and a terminal plot."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

COLUMNS = [
    ("makespan_s", "makespan s", True),
    ("turnaround_mean_s", "turnaround s", True),
    ("wait_mean_s", "wait s", True),
    ("wait_p95_short_s", "p95 wait short s", True),
    ("slowdown_mean", "slowdown", False),
    ("jain", "Jain", False),
    ("utilisation", "util", False),
    ("overhead_p50_us", "ovh p50 µs", False),
    ("overhead_p99_us", "ovh p99 µs", False),
    ("kernel_cpu_per_call_us", "CPU/call µs", False),
    ("switches", "switches", False),
]


def ratio(value: float, base: float) -> str:
    if not base:
        return ""
    return f" ({value / base:.2f}×)"


def table(rows: list[dict[str, Any]], console: Console) -> None:
    base = next((r for r in rows if r["system"] == "B1"), None)
    first = rows[0]
    title = (f"{first['agents']} agents, {first['backend']}, P={first['slots']}, load {first['load']} "
             f"({first['arrivals']}), seed {first['seed']} — ratios to B1")
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("system")
    for _, label, _ in COLUMNS:
        t.add_column(label, justify="right")
    for row in rows:
        cells = [row["system"]]
        for key, _, show_ratio in COLUMNS:
            value = row.get(key, "")
            text = f"{value:g}" if isinstance(value, float) else str(value)
            if show_ratio and base is not None and row is not base:
                text += ratio(value, base[key])
            cells.append(text)
        t.add_row(*cells)
    console.print(t)
    console.print("ovh: the kernel's time to submit and dispatch a call; CPU/call: its whole CPU per call beyond "
                  "B1's (the same agents on the same backend without a kernel), per-token work included",
                  markup=False, highlight=False)
    if base is not None and base["turnaround_mean_s"]:
        floor = base["turnaround_ideal_s"]
        console.print(f"no waiting at all (every call served at once, at full speed): turnaround {floor:g} s = "
                      f"{floor / base['turnaround_mean_s']:.2f}× B1 — the floor for every system",
                      markup=False, highlight=False)
    bound = first.get("bound_turnaround_mean_s")
    default = next((r for r in rows if r.get("default")), None)
    if bound and base is not None and base["turnaround_mean_s"]:
        versus = f"; the default policy's is {default['turnaround_mean_s'] / bound:.2f}× of it" if default else ""
        console.print(f"clairvoyant bound (python -m bench.bound: remaining work known, preemption free, every prefix "
                      f"cached): turnaround {bound:g} s = {bound / base['turnaround_mean_s']:.2f}× B1{versus}",
                      markup=False, highlight=False)
        if (each := first.get("bound_system_per_agent_turnaround_mean_s")) and default:
            console.print(f"  with every agent reading its system prompt (--system-per-agent): {each:g} s; the default "
                          f"policy's is {default['turnaround_mean_s'] / each:.2f}× of it",
                          markup=False, highlight=False)


def plot(rows: list[dict[str, Any]], console: Console, key: str = "turnaround_mean_s", width: int = 50) -> None:
    """Horizontal bars, one per system."""
    top = max((r[key] for r in rows), default=0) or 1
    console.print(f"{key}:")
    for row in rows:
        bar = "█" * max(1, round(row[key] / top * width))
        console.print(f"  {row['system']:<9} {bar} {row[key]:g}", markup=False, highlight=False)
