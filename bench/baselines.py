"""The systems aios is measured against.

- B0: sequential — one agent at a time, one model call at a time.
- B1: every agent calls the backend directly at the same P; the backend's own FIFO
  (a fair semaphore) decides, as Ollama's does. No kernel.
- B2-fifo / B2-rr: AIOS's own cycles, as its files have them (see `run_aios_fifo`, `run_aios_rr`): every second
  the whole queue sent at once and answered when the batch is done; one call at a time in 1 s slices.
- B2-fifo-kernel / B2-rr-kernel: gentler versions inside our kernel — FIFO that admits calls in batches gathered
  over 1 s, P at a time, each answered when it is done; round robin with 1 s slices over P slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agents.workload import after, opening
from kernel import clock
from kernel.llm.backend import Backend, LLMRequest
from kernel.scheduler.policy import Policy

if TYPE_CHECKING:
    from bench.workload import AgentSpec
    from kernel.syscall import LLMCall


class BatchedFifo(Policy):
    """AIOS's FIFO: calls wait for the next batch boundary (every `interval` s), then go in order."""

    name = "B2-fifo-kernel"
    params = ("interval",)
    interval = 1.0

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.pending: list[LLMCall] = []
        self._timer: asyncio.TimerHandle | None = None

    def push(self, call: LLMCall) -> None:
        if call.chunks:  # a requeued call keeps its admission
            super().push(call)
            return
        self.pending.append(call)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._admit)

    def _admit(self) -> None:
        self._timer = None
        batch, self.pending = self.pending, []
        for call in batch:
            if not call.cancelled:
                super().push(call)
        if self.wake is not None:
            self.wake()

    def remove(self, call: LLMCall) -> bool:
        if call in self.pending:
            self.pending.remove(call)
            return True
        return super().remove(call)

    def __len__(self) -> int:
        return super().__len__() + len(self.pending)

    def __iter__(self):  # noqa: ANN204
        return iter([*super().__iter__(), *self.pending])


class TimeSliceRR(Policy):
    """AIOS's round robin: a call keeps its slot for `quantum` seconds while others wait."""

    name = "B2-rr-kernel"
    params = ("quantum",)
    quantum = 1.0

    def key(self, call: LLMCall) -> float:
        return call.queued_at

    def should_preempt(self, call: LLMCall) -> bool:
        return len(self) > 0 and clock.now() - (call.segment_started or clock.now()) >= self.quantum


Ask = Callable[[LLMRequest], Awaitable[tuple[str, float, float]]]  # a request → (answer, wait_s, service_s)


async def run_agents(specs: list[AgentSpec], ask: Ask) -> list[dict[str, Any]]:
    """The `workload` agents as plain tasks, each call put to `ask`; their records, as the kernel's runs give."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    calls: list[dict[str, Any]] = []

    async def agent(spec: AgentSpec) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, start + spec.arrival - loop.time()))
        wait = 0.0
        messages = opening(spec.system, spec.family, spec.index)  # what the `workload` agent sends
        results = spec.results or (0,) * len(spec.steps)
        for i, ((tokens, pause), result) in enumerate(zip(spec.steps, results, strict=True)):
            request = LLMRequest(messages, max_tokens=spec.cap or tokens, stop=("<never>",),
                                 options={"tokens": tokens, "ignore_eos": True})
            text, waited, service = await ask(request)
            wait += waited
            calls.append({"service_s": service, "wait_s": waited, "overhead_s": 0.0})
            messages = [*messages, *after(i, text, result, spec.index, bool(spec.system))]
            if pause > 0:
                await asyncio.sleep(pause)
        return {"spec": spec, "arrived": spec.arrival, "ended": loop.time() - start, "wait": wait}

    agents = await asyncio.gather(*(agent(s) for s in specs))
    return [dict(a, calls=calls) for a in agents]


async def _answer(backend: Backend, request: LLMRequest, limit: float | None = None) -> tuple[str, bool]:
    """Stream a request to its end (or until `limit` seconds have passed): its text, and whether it ended."""
    loop = asyncio.get_running_loop()
    start, text = loop.time(), ""
    stream = backend.stream(request)
    try:
        async for chunk in stream:
            text += chunk.text
            if chunk.done:
                return text, True
            if limit is not None and loop.time() - start >= limit:
                return text, False
    finally:
        await stream.aclose()
    return text, True


async def run_direct(backend: Backend, specs: list[AgentSpec], slots: int) -> list[dict[str, Any]]:
    """B1: agents as plain tasks calling the backend through its own FIFO of P slots (Ollama's: a semaphore of
    OLLAMA_NUM_PARALLEL, `seqsSem` in its `runner/llamarunner/runner.go`), no kernel."""
    gate = asyncio.Semaphore(slots)
    loop = asyncio.get_running_loop()

    async def ask(request: LLMRequest) -> tuple[str, float, float]:
        asked = loop.time()
        async with gate:
            got = loop.time()
            text, _ = await _answer(backend, request)
            return text, got - asked, loop.time() - got

    return await run_agents(specs, ask)


async def run_aios_fifo(backend: Backend, specs: list[AgentSpec], slots: int,
                        interval: float = 1.0) -> list[dict[str, Any]]:
    """B2-fifo, AIOS's FIFO cycle (`aios/scheduler/fifo_scheduler.py`, `process_llm_requests`; the adapter's
    `execute_llm_syscalls` in `aios/llm_core/adapter.py`): sleep `interval`, take every request queued, send them
    all at once (no limit: the server serves P at a time, the rest in its own FIFO), and hand the answers back
    when the whole batch is done; only then the next sleep."""
    gate = asyncio.Semaphore(slots)  # the server's own parallelism
    loop = asyncio.get_running_loop()
    queue: list[tuple[LLMRequest, float, asyncio.Future[tuple[str, float, float]]]] = []

    async def ask(request: LLMRequest) -> tuple[str, float, float]:
        done: asyncio.Future[tuple[str, float, float]] = loop.create_future()
        queue.append((request, loop.time(), done))
        return await done

    async def serve(request: LLMRequest, asked: float) -> tuple[str, float, float]:
        async with gate:
            got = loop.time()
            text, _ = await _answer(backend, request)
            return text, got - asked, loop.time() - got

    async def cycle() -> None:
        while True:
            await asyncio.sleep(interval)
            batch, queue[:] = list(queue), []
            answers = await asyncio.gather(*(serve(r, asked) for r, asked, _ in batch))
            for (_, _, done), answer in zip(batch, answers, strict=True):
                done.set_result(answer)  # all at once, when the last one is done

    scheduler = loop.create_task(cycle())
    try:
        return await run_agents(specs, ask)
    finally:
        scheduler.cancel()


async def run_aios_rr(backend: Backend, specs: list[AgentSpec], quantum: float = 1.0) -> list[dict[str, Any]]:
    """B2-rr, AIOS's round robin (`aios/scheduler/rr_scheduler.py`, `process_llm_requests`): one request at a time,
    for at most `quantum` seconds; one not done goes to the back of the queue with what it has so far, and
    continues from it (the server reads prompt and partial answer again, less what its cache holds)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[LLMRequest, float, asyncio.Future[tuple[str, float, float]], str, float]] = \
        asyncio.Queue()

    async def ask(request: LLMRequest) -> tuple[str, float, float]:
        done: asyncio.Future[tuple[str, float, float]] = loop.create_future()
        queue.put_nowait((request, loop.time(), done, "", 0.0))
        return await done

    async def one_at_a_time() -> None:
        while True:
            request, asked, done, partial, service = await queue.get()
            got = loop.time()
            produced = len(partial.split())
            text, ended = await _answer(backend, request.continued(partial, produced), limit=quantum)
            service += loop.time() - got
            if ended or produced + len(text.split()) >= request.max_tokens:
                done.set_result((partial + text, loop.time() - asked - service, service))
            else:
                queue.put_nowait((request, asked, done, partial + text, service))

    scheduler = loop.create_task(one_at_a_time())
    try:
        return await run_agents(specs, ask)
    finally:
        scheduler.cancel()
