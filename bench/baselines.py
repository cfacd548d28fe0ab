"""The systems aios is measured against.

- B0: sequential — one agent at a time, one model call at a time.
- B1: every agent calls the backend directly at the same P; the backend's own FIFO
  (a fair semaphore) decides, as Ollama's does. No kernel.
- B2-fifo / B2-rr: AIOS-style scheduling inside our kernel — FIFO that admits calls
  in batches gathered over 1 s, and round robin with 1 s time slices.
"""

from __future__ import annotations

import asyncio
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

    name = "B2-fifo"
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

    name = "B2-rr"
    params = ("quantum",)
    quantum = 1.0

    def key(self, call: LLMCall) -> float:
        return call.queued_at

    def should_preempt(self, call: LLMCall) -> bool:
        return len(self) > 0 and clock.now() - (call.segment_started or clock.now()) >= self.quantum


async def run_direct(backend: Backend, specs: list[AgentSpec], slots: int) -> list[dict[str, Any]]:
    """B1: agents as plain tasks calling the backend through its own FIFO of P slots."""
    gate = asyncio.Semaphore(slots)
    loop = asyncio.get_running_loop()
    start = loop.time()
    calls: list[dict[str, Any]] = []

    async def agent(spec: AgentSpec) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, start + spec.arrival - loop.time()))
        arrived = loop.time()
        wait = 0.0
        messages = opening(spec.system, spec.family, spec.index)  # what the `workload` agent sends
        results = spec.results or (0,) * len(spec.steps)
        for i, ((tokens, pause), result) in enumerate(zip(spec.steps, results, strict=True)):
            asked = loop.time()
            async with gate:
                got = loop.time()
                wait += got - asked
                text = ""
                request = LLMRequest(messages, max_tokens=spec.cap or tokens, stop=("<never>",),
                                     options={"tokens": tokens, "ignore_eos": True})
                async for chunk in backend.stream(request):
                    text += chunk.text
                calls.append({"service_s": loop.time() - got, "wait_s": got - asked, "overhead_s": 0.0})
            messages = [*messages, *after(i, text, result, spec.index, bool(spec.system))]
            if pause > 0:
                await asyncio.sleep(pause)
        del arrived
        return {"spec": spec, "arrived": spec.arrival, "ended": loop.time() - start, "wait": wait}

    agents = await asyncio.gather(*(agent(s) for s in specs))
    return [dict(a, calls=calls) for a in agents]
