"""How the monitor holds up: 500 processes, about 200 kernel events a second, then idle.

    python -m bench.monitor_load [--procs 500] [--rate 200] [--seconds 10] [--idle-seconds 10] [--attached] [--json]

The kernel runs on the simulated model with P=4 slots decoding `rate / 4` tokens a second each, so the
kernel itself publishes the events (a TokenGenerated per token, plus state changes). The monitor runs
headless at 160x45 on the same loop. It reports, under load: batched refreshes per second (≤ 10 by
design), the time one refresh takes (updating the panes, without the repaint), the event loop's lag
(how late a 50 ms timer fires), a key's round trip (from the key event to the screen painted with the
moved cursor, p50/p95), the process-table lines painted per refresh, and the process's CPU with and
without the monitor; then, with every process stopped (no events), the monitor's idle CPU as a share
of one core. With `--attached`, the kernel runs in another process and serves its socket, and the monitor here
attaches to it (`aios top` in a second terminal): the same figures, with CPU counted over both processes.
Numbers depend on the machine: run it when nothing else is (see `uptime`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from textual import events

from aios_shell.tui import MonitorApp, make_monitor
from kernel.kernel import Kernel, KernelConfig, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal

SLOTS = 4
KEY_EVERY = 0.3  # seconds between two key presses under load


def cpu_seconds(me: psutil.Process) -> float:
    times = me.cpu_times()
    return times.user + times.system


async def lag_probe(stop: asyncio.Event, samples: list[float], period: float = 0.05) -> None:
    """How late a timer fires: the wait any key press or redraw sees on this loop."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(period)
        samples.append(max(0.0, loop.time() - start - period))


async def measure_cpu(seconds: float, procs: list[psutil.Process] | None = None) -> float:
    """Percent of one core these processes (this one by default) used over `seconds` of wall time."""
    procs = procs or [psutil.Process()]
    cpu0, wall0 = sum(map(cpu_seconds, procs)), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100 * (sum(map(cpu_seconds, procs)) - cpu0) / (time.perf_counter() - wall0)


async def key_roundtrip(app: MonitorApp, key: str) -> float:
    """Seconds from a key event to the screen painted with its effect (the process table's cursor moved)."""
    table = app.processes.table
    before = table.cursor_coordinate
    painted = asyncio.Event()
    started = time.perf_counter()
    event = events.Key(key, None)
    event.set_sender(app)
    app._driver.send_message(event)  # as Pilot.press does, without its wait for an idle process
    while table.cursor_coordinate == before:
        await asyncio.sleep(0.001)
    app.screen.call_after_refresh(painted.set)
    await painted.wait()
    return time.perf_counter() - started


def next_key(app: MonitorApp, i: int) -> str:
    """Ten rows down, ten up; never a key that cannot move the cursor (the rows re-sort under it as they go)."""
    table = app.processes.table
    if table.cursor_row <= 0:
        return "down"
    if table.cursor_row >= table.row_count - 1:
        return "up"
    return "down" if i % 20 < 10 else "up"


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_kernel(home: Path, procs: int, rate: float) -> Kernel:
    backend = SimulatedBackend(slots=SLOTS, decode_tps=rate / SLOTS, prefill_tps=1e6, seed=1)
    kernel = await boot(KernelConfig(home=home, backend="simulated", user="bench"), backend=backend)
    for i in range(procs):
        kernel.spawn("chat", ["long", "story", str(i)])
    await asyncio.sleep(0.5)
    return kernel


async def start_attached(home: Path, procs: int, rate: float) -> tuple[Any, asyncio.subprocess.Process]:
    """The kernel in another process, serving its socket; the monitor's view of it over the socket."""
    from aios_shell.tui.remote import AttachedKernel
    from kernel.api.wire import Connection

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.monitor_load", "--serve", str(home), "--procs", str(procs), "--rate", str(rate),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    await child.stdout.readline()  # "ready"
    conn = await Connection.open(home, "bench")
    return await AttachedKernel(conn, home).start(), child


async def serve_for_bench(home: Path, procs: int, rate: float) -> None:
    from aios_shell.host import serve

    kernel = await start_kernel(home, procs, rate)
    server = await serve(kernel)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    await server.close()
    await kernel.shutdown()


async def events_per_second(kernel: Kernel, seconds: float) -> float:
    count = 0

    def seen(_event: object) -> None:
        nonlocal count
        count += 1

    off = kernel.bus.on(seen)
    await asyncio.sleep(seconds)
    off()
    return count / seconds


async def run(procs: int, rate: float, seconds: float, idle_seconds: float, attached: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"procs": procs, "target_events_per_s": rate, "cpu_count": psutil.cpu_count(),
                              "attached": attached}
    with tempfile.TemporaryDirectory() as tmp:
        # the kernel alone, for comparison
        kernel = await start_kernel(Path(tmp) / "alone", procs, rate)
        result["kernel_alone_events_per_s"] = round(await events_per_second(kernel, 2.0), 1)
        result["kernel_alone_cpu_pct"] = round(await measure_cpu(seconds / 2), 1)
        await kernel.shutdown()

        if attached:
            kernel, child = await start_attached(Path(tmp) / "watched", procs, rate)
            measured = [psutil.Process(), psutil.Process(child.pid)]
        else:
            kernel, child = await start_kernel(Path(tmp) / "watched", procs, rate), None
            measured = [psutil.Process()]
        app = make_monitor(kernel, home=Path(tmp) / "watched")  # type: ignore[arg-type]
        async with app.run_test(size=(160, 45)) as pilot:
            await app.ready.wait()
            await pilot.pause(1.0)
            lags: list[float] = []
            stop = asyncio.Event()
            probe = asyncio.create_task(lag_probe(stop, lags))
            refreshes0, events0 = app.refreshes, app.events_seen
            app.refresh_seconds.clear()
            t0 = time.perf_counter()
            cpu_task = asyncio.create_task(measure_cpu(seconds, measured))
            kernel_cpu = asyncio.create_task(measure_cpu(seconds, measured[1:])) if child is not None else None
            keys: list[float] = []
            painted0 = getattr(app.processes.table, "lines_painted", 0)
            for i in range(int(seconds / KEY_EVERY) - 1):
                await asyncio.sleep(KEY_EVERY)
                keys.append(await asyncio.wait_for(key_roundtrip(app, next_key(app, i)), 10))
            result["load_cpu_pct"] = round(await cpu_task, 1)
            if kernel_cpu is not None:  # of which the kernel's process (serving the socket, besides its agents)
                result["kernel_process_cpu_pct"] = round(await kernel_cpu, 1)
            elapsed = time.perf_counter() - t0
            stop.set()
            await probe
            durations = list(app.refresh_seconds)
            refreshes = max(1, app.refreshes - refreshes0)
            painted = getattr(app.processes.table, "lines_painted", None)
            result.update({
                "rows": app.processes.table.row_count,
                "events_per_s": round((app.events_seen - events0) / elapsed, 1),
                "refreshes_per_s": round((app.refreshes - refreshes0) / elapsed, 2),
                "refresh_ms_mean": round(1000 * statistics.fmean(durations), 2) if durations else 0.0,
                "refresh_ms_p95": round(1000 * pct(durations, 0.95), 2),
                "refresh_ms_max": round(1000 * max(durations, default=0.0), 2),
                "loop_lag_ms_p50": round(1000 * pct(lags, 0.5), 2),
                "loop_lag_ms_p95": round(1000 * pct(lags, 0.95), 2),
                "loop_lag_ms_max": round(1000 * max(lags, default=0.0), 2),
                "key_presses": len(keys),
                "key_roundtrip_ms_p50": round(1000 * pct(keys, 0.5), 2),
                "key_roundtrip_ms_p95": round(1000 * pct(keys, 0.95), 2),
                "key_roundtrip_ms_max": round(1000 * max(keys, default=0.0), 2),
                "table_lines_painted_per_refresh": None if painted is None
                else round((painted - painted0) / refreshes, 1),
            })
            result["monitor_share_cpu_pct"] = round(result["load_cpu_pct"] - result["kernel_alone_cpu_pct"], 1)
            # idle: every process stopped, nothing happens in the kernel
            if child is None:
                for proc in kernel.ps():
                    kernel.signal(proc.pid, Signal.STOP)
            else:
                from kernel.api.wire import RemoteError

                for pid in [p.pid for p in kernel.procs if p.alive]:
                    with contextlib.suppress(RemoteError):  # (one that ended since the last fetch)
                        await kernel.conn.call("signal", pid=pid, sig="STOP")
            await pilot.pause(1.5)
            refreshes_idle0 = app.refreshes
            result["idle_cpu_pct"] = round(await measure_cpu(idle_seconds, measured), 2)
            result["idle_refreshes_per_s"] = round((app.refreshes - refreshes_idle0) / idle_seconds, 2)
        await kernel.shutdown()
        if child is not None:
            child.terminate()
            await child.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0, help="kernel events a second (tokens)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure under load")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--attached", action="store_true", help="the monitor attached to a kernel in another process")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", metavar="HOME", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_for_bench(Path(args.serve), args.procs, args.rate))
        return
    result = asyncio.run(run(args.procs, args.rate, args.seconds, args.idle_seconds, args.attached))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
