"""One source of live counters: `ps`, `ps --json`, /proc/PID/status, the monitor's row and the process screen
count a call while it runs, and STOP does not take back what it generated."""

from __future__ import annotations

import json
from pathlib import Path

from aios_shell.tui import view
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal, State
from tests.conftest import until
from tests.shell.helpers import session


def _ps_row(out: str, pid: int) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [str(pid)])


async def test_counters_move_while_a_call_runs_and_survive_stop(home: Path) -> None:
    sim = SimulatedBackend(slots=1, decode_tps=100, prefill_tps=100_000)
    async with session(home, sim) as s:
        sim.enqueue("word " * 400)
        proc = s.kernel.spawn("chat", ["tell a long story"])
        await until(lambda: len(proc.output) >= 20)  # generating; nothing settled yet
        assert proc.completion_tokens == 0  # the settled counter: what the views must not show alone

        await s.run("ps")
        row = _ps_row(s.take()[0], proc.pid)
        prompt, completion = (int(n) for n in row[7].split("/"))
        assert prompt > 0 and completion >= 20
        assert row[8] != "0:00.00"
        assert int(row[6]) > 0 or sim.context_window > 100 * (prompt + completion)

        await s.run("ps --json")
        data = next(p for p in json.loads(s.take()[0]) if p["pid"] == proc.pid)
        assert data["completion_tokens"] >= completion and data["llm_time_s"] > 0 and data["ctx_tokens"] > 0

        await s.run(f"cat /proc/{proc.pid}/status")
        status = dict(line.split(": ", 1) for line in s.take()[0].splitlines() if ": " in line)
        assert int(status["completion_tokens"]) >= completion

        shown = view.row(proc, view.window(s.kernel))
        assert int(shown.cells[6].split("/")[1]) >= completion and shown.cells[7] != "0:00.00"

        s.kernel.signal(proc.pid, Signal.STOP)
        await until(lambda: proc.state is State.STOPPED)
        stopped = proc.usage()
        assert stopped.completion_tokens >= completion and stopped.prompt_tokens == prompt
        await s.run("ps")
        assert _ps_row(s.take()[0], proc.pid)[7] != "0/0"

        s.kernel.signal(proc.pid, Signal.CONT)
        await s.kernel.wait(proc.pid)
        done = proc.usage()
        assert done.completion_tokens == proc.completion_tokens >= stopped.completion_tokens
        assert not proc.inflight  # settled once: nothing counted twice


async def test_a_killed_call_is_counted_once(home: Path) -> None:
    sim = SimulatedBackend(slots=1, decode_tps=100, prefill_tps=100_000)
    async with session(home, sim) as s:
        sim.enqueue("word " * 400)
        proc = s.kernel.spawn("chat", ["tell a long story"])
        await until(lambda: len(proc.output) >= 10)
        live = proc.usage()
        s.kernel.signal(proc.pid, Signal.KILL)
        await s.kernel.wait(proc.pid)
        assert not proc.inflight
        assert proc.usage().completion_tokens == proc.completion_tokens >= live.completion_tokens
        assert proc.prompt_tokens == live.prompt_tokens  # the prompt as shown while it ran: no drop at the end
