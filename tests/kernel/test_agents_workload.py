"""The agents workload: tool-using agents over growing contexts, every call capped, never told its length; run
through the kernel on the calibrated simulated server."""

from __future__ import annotations

from pathlib import Path

from bench import agentic
from kernel import clock
from kernel.kernel import boot
from kernel.llm.servermodel import EMBEDDED
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config


def test_the_plans_are_seeded_heavy_tailed_and_share_a_system_prompt_per_program() -> None:
    specs = agentic.generate(300, seed=1, profile=EMBEDDED)
    assert specs == agentic.generate(300, seed=1, profile=EMBEDDED) != agentic.generate(300, seed=2, profile=EMBEDDED)
    assert all(s.cap == agentic.CAP for s in specs)
    steps = sorted(len(s.steps) for s in specs if s.kind == "long")
    assert steps[0] >= 2 and steps[-1] <= 40 and steps[len(steps) // 2] <= 6 and steps[-1] >= 20  # a long tail
    assert all(1 <= len(s.steps) <= 3 for s in specs if s.kind == "short")
    by_family: dict[int, set[int]] = {}
    for s in specs:
        by_family.setdefault(s.family, set()).add(s.system)
        assert s.results[-1] == 0 and all(20 <= r <= 2000 for r in s.results[:-1])
    assert all(len(sizes) == 1 and 300 <= next(iter(sizes)) <= 1500 for sizes in by_family.values())
    assert [s.arrival for s in specs] == sorted(s.arrival for s in specs)


def test_an_agent_grows_its_context_and_asks_for_the_cap_not_its_length(home: Path) -> None:
    sim = SimulatedBackend(slots=2, profile=EMBEDDED, tick=64)
    spec = next(s for s in agentic.generate(50, seed=3, profile=EMBEDDED) if len(s.steps) >= 3)

    async def main() -> None:  # on the model's virtual clock: its minutes pass at once
        kernel = await boot(make_config(home), backend=sim)
        try:
            proc = kernel.spawn("workload", spec.argv(), user="alice")
            await kernel.wait(proc.pid)
            assert proc.exit_code == 0, proc.error
        finally:
            await kernel.shutdown()

    clock.run_virtual(main())
    asked = sim.requests
    assert len(asked) == len(spec.steps)
    assert {r.max_tokens for r in asked} == {agentic.CAP}  # the scheduler sees the cap only
    assert [r.options["tokens"] for r in asked] == [t for t, _ in spec.steps]  # (the model's own answer length)
    sizes = [sim.prompt_tokens(r) for r in asked]
    assert sizes[0] >= spec.system  # (later turns may be compacted by the kernel as the context fills)
    assert sizes[1] - sizes[0] >= spec.results[0]  # the tool's result stays in the conversation
    assert sim.caches is not None and sim.caches.reused_tokens >= sizes[0]  # the next turn reused the first
