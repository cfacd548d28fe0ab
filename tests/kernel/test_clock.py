"""The virtual clock: waits pass at once, time stamps follow the loop, threads still wake it."""

from __future__ import annotations

import asyncio
import time

from kernel import clock
from kernel.clock import VirtualTimeLoop, run_virtual


def test_waits_pass_in_virtual_time_in_order() -> None:
    order: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        order.append((name, asyncio.get_running_loop().time()))

    async def main() -> tuple[float, float]:
        t0, wall0 = clock.monotonic(), clock.now()
        await asyncio.gather(sleeper("hour", 3600), sleeper("minute", 60), sleeper("day", 86_400))
        return clock.monotonic() - t0, clock.now() - wall0

    real0 = time.time()
    waited, walled = run_virtual(main())
    assert [name for name, _ in order] == ["minute", "hour", "day"]
    assert [at for _, at in order] == [60, 3600, 86_400]
    assert waited == walled == 86_400
    assert time.time() - real0 < 86_400  # a day of waiting did not take a day


def test_a_thread_wakes_a_loop_with_no_timer() -> None:
    async def main() -> int:
        return await asyncio.to_thread(sum, range(10))  # nothing scheduled: the loop must wait for the thread

    assert run_virtual(main()) == 45


def test_outside_a_virtual_loop_the_clock_is_real() -> None:
    assert abs(clock.now() - time.time()) < 5
    loop = VirtualTimeLoop(start=1000.0)
    try:
        assert loop.run_until_complete(_stamp()) == 1000.0
    finally:
        loop.close()


async def _stamp() -> float:
    return clock.now()


async def test_cancelling_the_wait_cancels_the_run_in_its_thread() -> None:
    reached: list[str] = []

    async def forever() -> None:
        reached.append("began")
        try:
            while True:
                await asyncio.sleep(60)
        except asyncio.CancelledError:
            reached.append("cancelled")
            raise

    waiting = asyncio.ensure_future(clock.in_virtual_thread(forever()))
    for _ in range(500):
        if reached:
            break
        await asyncio.sleep(0.01)
    waiting.cancel()
    try:
        await waiting
    except asyncio.CancelledError:
        pass
    # the worker thread's loop saw the cancellation and ended; nothing keeps running
    for _ in range(500):
        if len(reached) == 2:
            break
        await asyncio.sleep(0.01)
    assert reached == ["began", "cancelled"]
