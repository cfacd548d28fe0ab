"""The kernel's clock: real time, or virtual time on an event loop that skips its idle waits.

Every time stamp the kernel keeps (a call queued, dispatched, done; a process started,
ended) comes from `now()`, and every duration of model work from `monotonic()`. On an
ordinary event loop they are `time.time()` and `time.perf_counter()`. On a
`VirtualTimeLoop` they follow the loop's clock, which jumps to the next timer whenever
nothing is ready to run: a simulated model that "decodes" for a minute finishes at once,
and every figure comes out as if the minute had passed. The benchmark runs the simulated
tier this way, so 1000 agents take seconds, not minutes, and a seed gives the same figures
on a busy machine as on an idle one. CPU work (the kernel's own overhead, measured with
`perf_counter`) takes no virtual time.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _SkippingSelector:
    """Polls the real selector; when nothing is ready, moves the loop's clock to its next timer."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:  # no timer at all: only a thread or a socket can wake the loop, so wait for real
            return self._inner.select(None)
        events = self._inner.select(0)
        if not events and timeout > 0:
            self._loop.advance(timeout)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time passes only in its waits, and passes at once.

    Work handed to threads is not waited for in virtual time: when timers are pending, the
    clock moves on while a thread runs. Code run on this loop should not depend on threads.
    """

    def __init__(self, start: float | None = None) -> None:
        super().__init__()
        self._virtual = 0.0
        self.epoch = time.time() if start is None else start  # the wall-clock time at virtual 0
        self._selector = _SkippingSelector(self._selector, self)  # type: ignore[assignment]

    def time(self) -> float:
        return self._virtual

    def advance(self, seconds: float) -> None:
        self._virtual += seconds


def _virtual() -> VirtualTimeLoop | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop if isinstance(loop, VirtualTimeLoop) else None


def now() -> float:
    """Seconds since the epoch, as `time.time()`; on a virtual loop, its virtual wall clock."""
    loop = _virtual()
    return time.time() if loop is None else loop.epoch + loop.time()


def monotonic() -> float:
    """A clock for durations, as `time.perf_counter()`; on a virtual loop, its virtual clock."""
    loop = _virtual()
    return time.perf_counter() if loop is None else loop.time()


def run_virtual(main: Coroutine[Any, Any, T], started: Callable[[VirtualTimeLoop, asyncio.Task[T]], None]
                | None = None, start: float | None = None) -> T:
    """Run a coroutine to its end on a fresh `VirtualTimeLoop` (in this thread), then close the loop."""
    loop = VirtualTimeLoop(start)
    try:
        task = loop.create_task(main)
        if started is not None:
            started(loop, task)
        return loop.run_until_complete(task)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def in_virtual_thread(main: Coroutine[Any, Any, T], start: float | None = None) -> T:
    """Await a coroutine run on a `VirtualTimeLoop` in a worker thread; cancelling the wait cancels it there.

    `start` is the wall-clock time at virtual 0 (now, if not given); a fixed one makes runs repeat exactly."""
    lock = threading.Lock()
    there: dict[str, Any] = {}

    def started(loop: VirtualTimeLoop, task: asyncio.Task[T]) -> None:
        with lock:
            there["run"] = (loop, task)
            if there.get("cancel"):  # cancelled before the thread had begun
                task.cancel()

    try:
        return await asyncio.to_thread(run_virtual, main, started, start)
    except asyncio.CancelledError:
        with lock:
            there["cancel"] = True
            if "run" in there:
                loop, task = there["run"]
                loop.call_soon_threadsafe(task.cancel)
        raise
