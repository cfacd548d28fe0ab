"""`sched` on a server whose slots' states the kernel saves and restores: how many are saved, against the budget."""

from __future__ import annotations

import json
from pathlib import Path

from kernel.llm.servermodel import Profile
from kernel.llm.simulated import SimulatedBackend
from tests.shell.helpers import check_shape, session

FAST = Profile("fast", decode_tps=4000, slowdown=0.0, prefill_tps=200_000, swap_tps=2_000_000)


async def test_sched_shows_the_states_saved_on_the_server(home: Path) -> None:
    async with session(home, SimulatedBackend(slots=1, profile=FAST)) as s:
        for family in (0, 1):  # the second program's agent takes the slot: the first's state is saved first
            assert await s.run(f"run workload --system 300 --family {family} --task {family} --cap 64 8") == 0
        s.take()
        assert await s.run("sched") == 0
        out, err = s.take()
        line = next(x for x in out.splitlines() if x.startswith("states saved on the server"))
        assert line == "states saved on the server: 1 (6 MiB of 4,096 MiB), 1 saves, 0 restores", out
        assert await s.run("sched --json") == 0
        swap = json.loads(s.take()[0])["swap"]
        check_shape(swap, {"states": int, "bytes": int, "budget": int, "saves": int, "restores": int})
        assert swap["states"] == 1 and swap["bytes"] == 325 * FAST.state_bytes  # its system prompt, task and answer
        assert swap["budget"] == 4 << 30
    async with session(home / "2", SimulatedBackend(slots=1)) as s:  # a model with no slots to swap
        assert await s.run("sched --json") == 0
        assert json.loads(s.take()[0])["swap"] is None
        assert await s.run("sched") == 0
        assert "states saved" not in s.take()[0]
