"""A killed call produces no token after the kill was handled (from event timestamps)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from kernel.events import Event, SignalDelivered, TokenGenerated
from kernel.kernel import boot
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal
from tests.conftest import make_config, until


async def test_no_token_after_kill(home: Path) -> None:
    async with await boot(make_config(home), backend=SimulatedBackend(decode_tps=200)) as kernel:
        seen: list[Event] = []
        kernel.bus.on(seen.append)
        long = kernel.spawn("chat", ["long"])
        short = kernel.spawn("chat", ["short"])
        await until(lambda: len(long.output) >= 3)
        kernel.signal(long.pid, Signal.KILL)
        await kernel.wait(short.pid)
        await asyncio.sleep(0.1)  # time for any straggling token to show up
        kill = next(e for e in seen if isinstance(e, SignalDelivered) and e.pid == long.pid)
        tokens = [e for e in seen if isinstance(e, TokenGenerated) and e.pid == long.pid]
        assert tokens and all(t.ts <= kill.ts for t in tokens)
        index = seen.index(kill)
        assert not [e for e in seen[index:] if isinstance(e, TokenGenerated) and e.pid == long.pid]
        assert long.completion_tokens == len(tokens)  # what it cost before the kill is accounted


def test_the_issue_script_verbatim(tmp_path: Path) -> None:
    """`aios --backend simulated -c 'run chat "long" &; run chat "short" &; kill -9 1; wait; ps -a --json'`."""
    env = {**os.environ, "AIOS_HOME": str(tmp_path / "fresh")}
    script = 'run chat "long" &; run chat "short" &; kill -9 1; wait; ps -a --json'
    out = subprocess.run(
        [sys.executable, "-m", "aios_shell.cli", "--backend", "simulated", "-c", script],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    answer, _, listing = out.stdout.partition("\n[")  # the short answer (a script prints its & jobs), then ps
    assert answer.strip() and "\n" not in answer.strip()
    rows = {row["pid"]: row for row in json.loads("[" + listing)}
    assert rows[1]["signal"] == 9 and rows[1]["status"] == "EXITED(SIGKILL)" and rows[1]["exit_code"] == 137
    assert rows[2]["exit_code"] == 0 and rows[2]["status"] == "EXITED(0)"
