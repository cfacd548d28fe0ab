"""A short soak: agents replaced as they exit, every process accounted for, memory bounded by design."""

from __future__ import annotations

from bench.soak import report, soak


async def test_a_short_soak_accounts_for_every_process() -> None:
    result = await soak(agents=40, minutes=0.03, slots=8, sample_every=0.5)
    assert result["accounted"], report(result)
    assert result["spawned"] > 40  # agents were replaced as they exited
    assert result["failed"] == 0
    assert result["fds_after"] <= result["fds_before"] + 2  # nothing left open after shutdown
