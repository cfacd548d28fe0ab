"""What attaching costs: round trips over the kernel's socket, and the events an attached client keeps up with.

    python -m bench.attach [--procs 1000] [--repeat 200] [--json]

The kernel (simulated model, `--procs` live agents queued behind P=4 slow slots, half of them another user's)
serves its socket from this process; the client is another process (`python -m bench.attach --client`), as a
second terminal's `aios` is. Figures:
- `ps` and `signal` (STOP, then CONT, alternately): the round trip of one API call over the socket, from the
  client's send to its reply, in ms (p50, p99), beside the same call made in-process (no socket) for scale;
- `aios ps` from a shell: the wall time of the one-shot command (Python starting, attaching, printing), p50;
- events: the kernel publishes ProcessOutput events as fast as its loop allows for `--seconds`; the figure is
  events per second the attached client received, and the share the kernel had to drop because the client
  had not read them yet (its buffer bound, `kernel.server.MAX_BUFFER`).
Numbers depend on the machine: compare in one run, as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def client(home: Path, repeat: int, pid: int) -> dict[str, Any]:
    from kernel.api.wire import Connection

    conn = await Connection.open(home, "bench")
    out: dict[str, Any] = {}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        listed = await conn.call("ps")
        times.append(time.perf_counter() - t)
    out["ps_rows"] = len(listed)
    out["ps_ms"] = {"p50": 1000 * statistics.median(times), "p99": 1000 * pct(times, 0.99)}
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        await conn.call("signal", pid=pid, sig="STOP" if i % 2 == 0 else "CONT")
        times.append(time.perf_counter() - t)
    out["signal_ms"] = {"p50": 1000 * statistics.median(times), "p99": 1000 * pct(times, 0.99)}
    await conn.call_op("events", types=["ProcessOutput", "ProcessReniced"])
    print("subscribed", flush=True)
    received = lost = 0
    first = last = 0.0
    while True:
        frame = await conn.unsolicited.get()
        if frame is None:
            break
        if "lost" in frame:
            lost += int(frame["lost"])
        elif "event" in frame:
            if frame["event"]["type"] == "ProcessReniced":  # the end marker
                break
            received += 1
            last = time.perf_counter()
            first = first or last
    out["events"] = {"received": received, "lost": lost,
                     "per_s": received / (last - first) if last > first else 0.0,
                     "lost_share": lost / (received + lost) if received + lost else 0.0}
    await conn.close()
    return out


async def measure(procs: int, repeat: int, seconds: float) -> dict[str, Any]:
    from aios_shell.host import serve
    from kernel.api import KernelAPI
    from kernel.events import ProcessOutput, ProcessReniced
    from kernel.kernel import KernelConfig, boot
    from kernel.llm.simulated import SimulatedBackend
    from kernel.process import Signal

    with tempfile.TemporaryDirectory(prefix="aios-bench-") as tmp:
        home = Path(tmp)
        backend = SimulatedBackend(slots=4, decode_tps=1.0, prefill_tps=0)
        kernel = await boot(KernelConfig(home=home, backend="simulated", user="bench"), backend=backend)
        server = await serve(kernel)
        try:
            for i in range(procs):
                kernel.spawn("chat", ["long", "story", str(i)], user="bench" if i % 2 else "other")
            while any(p.status == "NEW" for p in kernel.procs):
                await asyncio.sleep(0.05)
            target = next(p.pid for p in kernel.procs if p.user == "bench")
            api = KernelAPI(kernel, caller="bench")
            local = []
            for _ in range(max(10, repeat // 4)):
                t = time.perf_counter()
                api.ps()
                local.append(time.perf_counter() - t)
            local_signal = []
            for i in range(max(10, repeat // 4)):
                t = time.perf_counter()
                api.signal(target, Signal.STOP if i % 2 == 0 else Signal.CONT)
                local_signal.append(time.perf_counter() - t)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.attach", "--client", str(home), "--repeat", str(repeat),
                "--pid", str(target), stdout=subprocess.PIPE)
            assert child.stdout is not None
            while (line := await child.stdout.readline()) and line.strip() != b"subscribed":
                pass
            deadline = time.monotonic() + seconds
            published = 0
            while time.monotonic() < deadline:
                for _ in range(200):
                    kernel.bus.publish(ProcessOutput(pid=target, text="token "))
                published += 200
                await asyncio.sleep(0)
            kernel.bus.publish(ProcessReniced(pid=target, old=0, new=0))
            result = json.loads((await child.stdout.read()).decode())
            await child.wait()
            env = {**os.environ, "AIOS_HOME": str(home), "AIOS_USER": "bench"}
            walls = []
            for _ in range(5):
                t = time.perf_counter()
                done = await asyncio.create_subprocess_exec(sys.executable, "-m", "aios_shell.cli", "ps", env=env,
                                                            stdout=subprocess.DEVNULL)
                await done.wait()
                walls.append(time.perf_counter() - t)
        finally:
            await server.close()
            await kernel.shutdown()
    result["procs"] = procs
    result["in_process_ps_ms"] = 1000 * statistics.median(local)
    result["in_process_signal_ms"] = 1000 * statistics.median(local_signal)
    result["published"] = published
    result["published_per_s"] = published / seconds
    result["one_shot_aios_ps_s"] = statistics.median(walls)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--client", metavar="HOME", help=argparse.SUPPRESS)
    parser.add_argument("--pid", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(client(Path(args.client), args.repeat, args.pid))))
        return
    result = asyncio.run(measure(args.procs, args.repeat, args.seconds))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['procs']} processes ({result['ps_rows']} rows in ps)")
    print(f"ps over the socket     p50 {result['ps_ms']['p50']:.1f} ms  p99 {result['ps_ms']['p99']:.1f} ms  "
          f"(in-process {result['in_process_ps_ms']:.1f} ms)")
    print(f"signal over the socket p50 {result['signal_ms']['p50']:.2f} ms  p99 {result['signal_ms']['p99']:.2f} ms"
          f"  (in-process {result['in_process_signal_ms']:.3f} ms)")
    ev = result["events"]
    print(f"events: {ev['per_s']:.0f}/s received by the attached client ({result['published_per_s']:.0f}/s "
          f"published), {100 * ev['lost_share']:.1f}% dropped for it")
    print(f"`aios ps` one-shot, attached: {result['one_shot_aios_ps_s']:.2f} s wall (p50 of 5)")


if __name__ == "__main__":
    main()
