"""The baselines the benchmark compares with behave as the systems they are named after."""

from __future__ import annotations

import pytest

from bench.baselines import run_aios_fifo, run_aios_rr, run_direct
from bench.workload import AgentSpec
from kernel import clock
from kernel.llm.simulated import SimulatedBackend


def specs() -> list[AgentSpec]:
    """Two agents at once: a short answer and a long one."""
    return [AgentSpec(0, "a", "short", 0.0, ((10, 0.0),)), AgentSpec(1, "b", "long", 0.0, ((200, 0.0),))]


def ended(runner) -> dict[int, float]:  # noqa: ANN001
    async def main() -> dict[int, float]:
        backend = SimulatedBackend(slots=2, decode_tps=100, prefill_tps=0)
        return {a["spec"].index: a["ended"] for a in await runner(backend)}

    return clock.run_virtual(main())


def test_the_aios_fifo_cycle_waits_a_second_and_answers_when_the_whole_batch_is_done() -> None:
    direct = ended(lambda b: run_direct(b, specs(), 2))
    aios = ended(lambda b: run_aios_fifo(b, specs(), 2))
    assert direct[0] < 0.2 and direct[1] >= 2.0  # each answered when it is done
    assert aios[0] == aios[1] == pytest.approx(1.0 + 2.0)  # after a second, the short one waiting for the long


def test_the_aios_round_robin_serves_one_call_at_a_time_in_slices() -> None:
    rr = ended(lambda b: run_aios_rr(b, specs(), quantum=1.0))
    # one at a time: the short one first (0.1 s), then the long one alone (2 s, in 1 s slices), not side by side
    assert rr[0] == pytest.approx(0.1) and rr[1] == pytest.approx(0.1 + 2.0)
