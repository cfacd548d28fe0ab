"""The interface every scheduling policy implements, and a heap-backed base for them.

A policy owns the order of the ready queue (`push`, `pop`, `remove`), learns how
much service each call gets (`on_token`, `on_done`), and may ask the dispatcher to
preempt a running call at the next token boundary (`should_preempt`). Keys are
computed when a call is queued so `pop` is O(log n) with a thousand agents.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kernel import clock

if TYPE_CHECKING:
    from kernel.scheduler.sizes import CallSizes
    from kernel.syscall import LLMCall


SWITCH_SHARE = 0.25  # a preemption may cost at most this share of what the preempted call ran since its last slot


def worth_switching(call: LLMCall) -> bool:
    """Whether preempting `call` now costs little next to what it has run: its cost of resuming after a switch
    is at most SWITCH_SHARE of the time it has held its slot. The cost is its process's as measured (reading prompt
    and partial answer again), or, on a prompt-caching server, at least reading them at the rate measured there
    (`call.read_tps`: the slot will hold another's prompt by then); with neither, go ahead."""
    proc = call.proc
    if call.segment_started is None:
        return True
    cost = proc.switch_cost_s / proc.ctx_switches if proc.ctx_switches else 0.0
    if call.read_tps:
        cost = max(cost, (call.prompt_estimate + call.chunks) / call.read_tps)
    return cost <= SWITCH_SHARE * (clock.now() - call.segment_started)


class Policy:
    """Base class: a heap of calls ordered by `key(call)`, ties broken by arrival."""

    name = "base"
    params: tuple[str, ...] = ()
    wake: Callable[[], None] | None = None  # set by the dispatcher: call it when calls become ready later
    sizes: CallSizes | None = None  # set by the dispatcher: answer sizes and run lengths learned so far

    def __init__(self, **params: Any) -> None:
        self._heap: list[list[Any]] = []
        self._entries: dict[int, list[Any]] = {}
        self._count = itertools.count()
        for key, value in params.items():
            if key not in self.params:
                raise ValueError(f"policy {self.name} has no parameter {key!r}")
            setattr(self, key, value)

    # -- the queue ---------------------------------------------------------------------------
    def key(self, call: LLMCall) -> Any:
        return call.seq

    def push(self, call: LLMCall) -> None:
        entry = [self.key(call), next(self._count), call]
        self._entries[call.sid] = entry
        heapq.heappush(self._heap, entry)

    def _clean(self) -> None:
        while self._heap and self._heap[0][2] is None:
            heapq.heappop(self._heap)

    def peek(self) -> LLMCall | None:
        self._clean()
        return self._heap[0][2] if self._heap else None

    def pop(self) -> LLMCall | None:
        self._clean()
        if not self._heap:
            return None
        entry = heapq.heappop(self._heap)
        del self._entries[entry[2].sid]
        return entry[2]

    def remove(self, call: LLMCall) -> bool:
        entry = self._entries.pop(call.sid, None)
        if entry is None:
            return False
        entry[2] = None
        return True

    def first(self, n: int) -> list[LLMCall]:
        """The first `n` queued calls, in the order `pop` would give them."""
        return [e[2] for e in heapq.nsmallest(n, self._entries.values(), key=lambda e: (e[0], e[1]))]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LLMCall]:
        return iter([e[2] for e in sorted(self._entries.values(), key=lambda e: (e[0], e[1]))])

    # -- service -----------------------------------------------------------------------------
    def on_dispatch(self, call: LLMCall) -> None:
        """A call got a slot."""

    def on_token(self, call: LLMCall) -> None:
        """A running call produced one token."""

    def on_done(self, call: LLMCall) -> None:
        """A call finished, failed or was cancelled."""

    def should_preempt(self, call: LLMCall) -> bool:
        """Whether a running call should give its slot back at this token boundary."""
        return False

    def forget(self, pid: int) -> None:
        """Process `pid` has exited: drop what is kept about it."""

    def reason(self, call: LLMCall) -> str:
        """Why `call` sits where it does, in a few words (shown by `sched`)."""
        return f"arrived #{call.seq}, waiting {clock.now() - call.queued_at:.1f}s"

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, **{p: getattr(self, p) for p in self.params}}
