"""The clairvoyant reference (`bench.bound`): one agent alone gets the server's best speed, and with two the one
with less left goes first."""

from __future__ import annotations

from bench.bound import bound, simulate
from bench.workload import AgentSpec
from kernel.llm.servermodel import EMBEDDED


def agent(index: int, steps: tuple[tuple[int, float], ...], arrival: float = 0.0) -> AgentSpec:
    return AgentSpec(index, "alice", "long", arrival, steps, tuple(100 for _ in steps[:-1]) + (0,), system=600,
                     family=0, cap=1024)


def test_one_agent_alone_takes_its_reading_its_decoding_and_its_tools() -> None:
    one = agent(0, ((400, 2.0), (400, 0.0)))
    [turnaround] = simulate([one], EMBEDDED, slots=8, tick=4)
    reading = (600 + 10 + 100) / EMBEDDED.prefill_tps
    decoding = 800 / EMBEDDED.per_sequence(1)
    assert abs(turnaround - (reading + decoding + 2.0)) < 0.05 * turnaround


def test_the_agent_with_less_left_goes_first_and_a_long_one_still_ends() -> None:
    long, short = agent(0, ((2000, 0.0),)), agent(1, ((50, 0.0),), arrival=1.0)
    long_t, short_t = simulate([long, short], EMBEDDED, slots=1, tick=4)
    assert short_t < 50 / EMBEDDED.per_sequence(1) + 1.0  # it took the slot from the long one at once
    assert long_t > 2000 / EMBEDDED.per_sequence(1)
    figures = bound([long, short], EMBEDDED, slots=1)
    assert figures["turnaround_mean_s"] == round((long_t + short_t) / 2, 3)
