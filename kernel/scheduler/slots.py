"""Which slot of a prompt-caching server a call goes to, and an agent's slot kept across its tool call.

A server that keeps each slot's last prompt (Ollama's runner, llama.cpp's server with `cache_prompt`) reads only
the part of a prompt that the slot does not hold. An agent works in turns: an answer, a tool, then the next call
with the whole conversation again. If another call takes the slot meanwhile, the conversation is read again from
the start, and on a server with one loop every answer under way waits while it is read. Where the server lets its
client name the slot (llama.cpp's `id_slot`), the kernel picks it:

- a call goes to the free slot that holds the longest prefix of its prompt, then the least recently used;
- when a call is answered, its slot is kept for its process for as long as reading that conversation again would
  take (its tokens at the prompt-reading rate measured so far): if the agent comes back in time, its call goes
  straight to its slot and reads only the tool's result; if not, the slot has idled no longer than the reading
  it was kept to save. That is rent-or-buy (ski rental): never worse than twice the better choice in hindsight,
  without knowing how long the tool will take. A process that exits or stops gives its kept slot back at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel import clock
from kernel.llm.backend import ChoosesSlots, LLMRequest

if TYPE_CHECKING:
    from kernel.syscall import LLMCall

KEEP_MAX_S = 30.0  # the longest a slot is kept for one process, however long its conversation
READ_TPS = 500.0  # prompt tokens a second assumed until a call has been measured (a small model on a CPU)
MEASURE_MIN = 256  # prompt tokens a call must have read to measure the reading rate by it


@dataclass
class Kept:
    pid: int
    until: float
    timer: asyncio.TimerHandle | None = None


class SlotKeeper:
    """The slots' last users as the kernel sent them, the reading rate measured, and the slots kept."""

    def __init__(self, backend: ChoosesSlots) -> None:
        self.backend = backend
        self.kept: dict[int, Kept] = {}  # slot -> the process it is kept for
        self.by_pid: dict[int, int] = {}  # pid -> its kept slot
        self.used_at: dict[int, int] = {}  # slot -> when it was last given a call (a counter)
        self._clock = 0
        self.read_tps = READ_TPS
        self._measured = False
        self._reads: dict[int, tuple[int, float]] = {}  # sid -> (prompt tokens its slot held, when it started)
        self.kept_n = 0  # slots kept, so far
        self.returned = 0  # of them, taken back by their process in time
        self.expired = 0  # of them, given up when their time ran out

    # -- choosing ------------------------------------------------------------------------
    def cached(self, request: LLMRequest, free: list[int]) -> int:
        """The most of `request`'s prompt any of the free slots holds."""
        return max((self.backend.slot_cached(request, s) for s in free), default=0)

    def choose(self, request: LLMRequest, free: list[int]) -> int:
        """The free slot for `request`: the longest prefix held, then the least recently used."""
        return max(free, key=lambda s: (self.backend.slot_cached(request, s), -self.used_at.get(s, 0)))

    def started(self, call: LLMCall, slot: int) -> None:
        self._clock += 1
        self.used_at[slot] = self._clock
        self._reads[call.sid] = (self.backend.slot_cached(call.request, slot), clock.now())

    def first_token(self, call: LLMCall) -> None:
        """Measure the prompt-reading rate by a call that read much of its prompt (a moving average)."""
        held, start = self._reads.pop(call.sid, (0, 0.0))
        read = call.prompt_estimate - held
        spent = clock.now() - start
        if read >= MEASURE_MIN and spent > 0:
            rate = read / spent
            self.read_tps = rate if not self._measured else 0.8 * self.read_tps + 0.2 * rate
            self._measured = True

    # -- keeping -------------------------------------------------------------------------
    def free(self, slot: int) -> bool:
        return slot not in self.kept

    def keep(self, call: LLMCall, slot: int, wake: Callable[[], None]) -> None:
        """`call` was answered in `slot`: keep the slot for its process while reading its conversation again
        would take longer than the slot has been kept."""
        self._reads.pop(call.sid, None)
        self.release(call.pid, wake=None)
        tokens = (call.prompt_tokens or call.prompt_estimate) + call.completion_tokens
        seconds = min(KEEP_MAX_S, tokens / max(1.0, self.read_tps))
        if seconds <= 0:
            return
        kept = Kept(call.pid, clock.now() + seconds)
        kept.timer = asyncio.get_running_loop().call_later(seconds, self._expire, slot, kept, wake)
        self.kept[slot] = kept
        self.by_pid[call.pid] = slot
        self.kept_n += 1

    def take(self, pid: int) -> int | None:
        """The slot kept for `pid`, now its call's (None if it has none)."""
        slot = self.by_pid.pop(pid, None)
        if slot is None:
            return None
        kept = self.kept.pop(slot)
        if kept.timer is not None:
            kept.timer.cancel()
        self.returned += 1
        return slot

    def release(self, pid: int, wake: Callable[[], None] | None) -> None:
        """`pid` exited or stopped: its kept slot is free for others now."""
        slot = self.by_pid.pop(pid, None)
        if slot is None:
            return
        kept = self.kept.pop(slot)
        if kept.timer is not None:
            kept.timer.cancel()
        if wake is not None:
            wake()

    def drop_above(self, slots: int) -> None:
        """P was lowered: slots at or above it are kept for nobody."""
        for slot in [s for s in self.kept if s >= slots]:
            self.release(self.kept[slot].pid, wake=None)

    def _expire(self, slot: int, kept: Kept, wake: Callable[[], None]) -> None:
        if self.kept.get(slot) is kept:
            del self.kept[slot]
            self.by_pid.pop(kept.pid, None)
            self.expired += 1
            wake()

    def describe(self) -> dict[str, object]:
        return {"kept": {s: k.pid for s, k in sorted(self.kept.items())}, "kept_so_far": self.kept_n,
                "kept_returned": self.returned, "kept_expired": self.expired,
                "read_tps": round(self.read_tps, 1)}
