"""`aios bench` through the CLI: the rows the issue names, one per system, from a real (small) run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.shell.test_cli import aios

KEYS = {"system", "makespan_s", "turnaround_mean_s", "wait_mean_s", "wait_p95_short_s", "jain", "utilisation",
        "overhead_p50_us", "overhead_p99_us", "switches"}


def test_bench_writes_one_row_per_system_with_the_named_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = aios("bench", "--workload", "simple", "--agents", "16", "--slots", "2", "--decode-tps", "4000",
                  "--seed", "3", "--systems", "B0,B1,B2-fifo,srpt,fair", "--json", str(out))
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())
    assert [r["system"] for r in rows] == ["B0", "B1", "B2-fifo", "srpt", "fair"]
    for row in rows:
        assert KEYS <= set(row) and row["agents"] == 16 and row["seed"] == 3
        assert 0 < row["utilisation"] <= 1 and row["makespan_s"] > 0 and 0 < row["jain"] <= 1
    kernel_rows = [r for r in rows if r["system"] not in ("B1", "B2-fifo", "B2-rr")]  # (those run without one)
    assert all(r["overhead_p50_us"] > 0 for r in kernel_rows)  # measured, not assumed
    b0, b1 = rows[0], rows[1]
    assert b0["makespan_s"] > b1["makespan_s"]  # one slot, one agent at a time, against two slots
    assert "ratios to B1" in result.stdout and "makespan" in result.stdout
    # the floor is the same workload with no waiting: below every system's turnaround, and shown
    floor = b1["turnaround_ideal_s"]
    assert all(r["turnaround_ideal_s"] == floor for r in rows)
    assert all(floor <= r["turnaround_mean_s"] for r in rows)
    assert f"turnaround {floor:g} s" in result.stdout and "the floor for every system" in result.stdout


def test_bench_rejects_an_unknown_system_in_one_line() -> None:
    result = aios("bench", "--agents", "4", "--systems", "B1,lottery")
    assert result.exit_code != 0
    assert "unknown system 'lottery'" in result.stdout + result.stderr


def test_the_simulated_tier_is_virtual_time_so_a_seed_gives_the_same_figures(tmp_path: Path) -> None:
    figures = []
    for run, systems in enumerate(("B1,fifo,srpt,srpt:ratio=4", "srpt:ratio=4,srpt,B1,fifo")):
        out = tmp_path / f"run{run}.json"
        # 400 agents at 50 tokens/s per slot: about 9 minutes of model time
        result = aios("bench", "--workload", "simple", "--agents", "400", "--slots", "2", "--decode-tps", "50",
                      "--seed", "5",
                      "--systems", systems, "--json", str(out))
        assert result.exit_code == 0, result.stdout + result.stderr
        rows = json.loads(out.read_text())
        figures.append({r["system"]: {k: r[k] for k in ("makespan_s", "turnaround_mean_s", "wait_mean_s",
                                                         "utilisation", "switches")} for r in rows})
    assert figures[0] == figures[1]  # whatever ran before, whatever else the machine was doing
    b1, fifo, srpt, preemptive = (figures[0][s] for s in ("B1", "fifo", "srpt", "srpt:ratio=4"))
    assert b1["makespan_s"] > 500
    assert fifo == b1  # the kernel's FIFO serves exactly as the backend's own queue does
    assert srpt["turnaround_mean_s"] < b1["turnaround_mean_s"]
    assert preemptive["switches"] > 0  # preemptions, too, repeat exactly


def test_the_agents_workload_runs_on_the_calibrated_server_and_marks_the_default_policy(tmp_path: Path) -> None:
    from kernel.scheduler import DEFAULT_POLICY

    out = tmp_path / "agents.json"
    result = aios("bench", "--workload", "agents", "--agents", "12", "--seed", "1",
                  "--systems", f"B1,fifo,{DEFAULT_POLICY}", "--json", str(out))
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())
    assert [r.get("default", False) for r in rows] == [False, False, True]
    assert all(KEYS <= set(r) and r["workload"] == "agents" and r["slots"] == 8 for r in rows)
    assert all(r["turnaround_ideal_s"] <= r["turnaround_mean_s"] for r in rows)
    assert all(r["turnaround_ideal_s"] <= r["bound_turnaround_mean_s"] <= r["turnaround_mean_s"] for r in rows)
    assert "clairvoyant bound" in result.stdout
    # reading every agent's system prompt costs the clairvoyant schedule time: its bound is the higher one
    assert all(r["bound_turnaround_mean_s"] < r["bound_system_per_agent_turnaround_mean_s"] for r in rows)
    assert "with every agent reading its system prompt" in result.stdout
