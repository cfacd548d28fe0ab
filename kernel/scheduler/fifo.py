"""First come, first served: calls leave the ready queue in the order they arrived.

A call that was held (its process stopped) and requeued keeps its original place.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kernel.syscall import LLMCall


class FifoPolicy:
    name = "fifo"

    def __init__(self) -> None:
        self._heap: list[tuple[int, LLMCall]] = []

    def push(self, call: LLMCall) -> None:
        heapq.heappush(self._heap, (call.seq, call))

    def pop(self) -> LLMCall | None:
        return heapq.heappop(self._heap)[1] if self._heap else None

    def remove(self, call: LLMCall) -> bool:
        for i, (_, queued) in enumerate(self._heap):
            if queued is call:
                self._heap.pop(i)
                heapq.heapify(self._heap)
                return True
        return False

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[LLMCall]:
        return iter([call for _, call in sorted(self._heap, key=lambda item: item[0])])

    def reason(self, call: LLMCall) -> str:
        return f"arrived #{call.seq}, waiting {time.time() - call.queued_at:.1f}s"
