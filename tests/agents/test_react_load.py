"""50 react agents, 1000 tool calls in parallel on the scripted simulated model: every call audited once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from kernel.kernel import boot
from kernel.llm.backend import LLMRequest
from kernel.llm.simulated import Reply, SimulatedBackend
from tests.conftest import make_config

AGENTS, CALLS, PER_STEP = 50, 20, 5


def model(request: LLMRequest) -> Reply:
    """Ask for 5 calc calls at a time until 20 results are in, then answer."""
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    if done >= CALLS:
        return Reply(text="all done")
    return Reply(tool_calls=[{"name": "calc", "arguments": {"expression": f"{done + i}*2"}} for i in range(PER_STEP)])


async def test_fifty_agents_thousand_tool_calls_each_audited_exactly_once(home: Path) -> None:
    sim = SimulatedBackend(slots=8, decode_tps=0, prefill_tps=0)
    sim.script(model)
    kernel = await boot(make_config(home), backend=sim)
    try:
        procs = [kernel.spawn("react", ["--max-steps", "10", f"task {n}"]) for n in range(AGENTS)]
        await asyncio.gather(*(kernel.wait(p.pid) for p in procs))
        assert [p.exit_code for p in procs] == [0] * AGENTS, [p.error for p in procs if p.exit_code]
        assert all(p.tool_calls == CALLS for p in procs)
        rows = kernel.access.audit_rows()
        assert len(rows) == AGENTS * CALLS
        per_call = Counter((r["pid"], r["args"]["expression"]) for r in rows)
        assert set(per_call.values()) == {1}  # no call audited twice
        assert set(per_call) == {(p.pid, f"{i}*2") for p in procs for i in range(CALLS)}
        assert {r["decision"] for r in rows} == {"allow"}
        assert kernel.access.verify().ok
        assert all("all done" in "".join(p.output) for p in procs)
    finally:
        await kernel.shutdown()
