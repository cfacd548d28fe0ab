"""How long `ps` takes with many processes: the shell's `ps`, `ps -l`, `ps --forest` and `ps --json`.

    python -m bench.ps_load [--procs 1000] [--repeat 30] [--json]

The kernel runs on the simulated model with `--procs` live agents (their model calls queued behind P=4 slots
that decode slowly, so the table does not change much while it is read), as two users: half of them another
user's, whose arguments `ps` hides. Measuring starts once every agent has started, and each form runs once
unmeasured first. Each form of `ps` runs `--repeat` times into a buffer (no terminal); the
figure is the median wall time of one run, in milliseconds, and the p95. Numbers depend on the machine:
compare two trees in one run, as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aios_shell.render import make_console
from aios_shell.shell import Shell
from kernel.kernel import KernelConfig, boot
from kernel.llm.simulated import SimulatedBackend

FORMS = ("ps", "ps -l", "ps --forest", "ps --json")


async def measure(procs: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        backend = SimulatedBackend(slots=4, decode_tps=1.0, prefill_tps=0)
        kernel = await boot(KernelConfig(home=Path(tmp), backend="simulated", user="bench"), backend=backend)
        try:
            for i in range(procs):
                kernel.spawn("chat", ["long", "story", str(i)], user="bench" if i % 2 else "other")
            while any(p.status == "NEW" for p in kernel.procs):  # every agent has started and queued its call
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            out = io.StringIO()
            shell = Shell(kernel, out=make_console(out), err=make_console(io.StringIO()))
            result: dict[str, Any] = {"procs": procs, "repeat": repeat}
            for form in FORMS:
                await shell.run_line(form)  # once unmeasured: each form starts warm, whichever runs first
                times = []
                for _ in range(repeat):
                    out.seek(0)
                    out.truncate()
                    t0 = time.perf_counter()
                    await shell.run_line(form)
                    times.append((time.perf_counter() - t0) * 1000)
                times.sort()
                result[form] = {"median_ms": round(statistics.median(times), 2),
                                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
                                "lines": out.getvalue().count("\n")}
            return result
        finally:
            await kernel.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.procs, args.repeat))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.procs} processes, {args.repeat} runs each (ms: median / p95)")
    for form in FORMS:
        r = result[form]
        print(f"  {form:<12} {r['median_ms']:>8.2f} / {r['p95_ms']:>8.2f}  ({r['lines']} lines)")


if __name__ == "__main__":
    main()
