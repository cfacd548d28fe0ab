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

Where the server can also save a slot's state and restore it (llama.cpp's `/slots/ID?action=save|restore`;
`SwapsSlots`), getting a conversation back costs a copy, not a reading, so the kernel swaps instead of waiting:

- a slot is kept only for as long as saving and restoring its conversation would take (a copy is a hundred
  times faster than reading, so a slot is seldom kept);
- a call given a slot that holds a conversation not saved since saves it first;
- a call restores the saved state holding the longest prefix of its prompt, its own or that of another process
  of the same user (a program's system prompt is the start of every one of its agents' conversations), when that
  saves reading more than `SWAP_MIN` tokens and the copy is quicker than the reading it saves. Other users'
  states are never restored for it: what a cache holds can be learned from how fast it answers;
- the saved states stay within `SWAP_BUDGET` bytes, least recently used first out, and outlive their process,
  so that its program's next agent finds the system prompt.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel import clock
from kernel.api.models import SwapInfo
from kernel.llm.backend import BackendError, ChoosesSlots, LLMRequest, SavedState, SwapsSlots

if TYPE_CHECKING:
    from kernel.syscall import LLMCall

KEEP_MAX_S = 30.0  # the longest a slot is kept for one process, however long its conversation
READ_TPS = 500.0  # prompt tokens a second assumed until a call has been measured (a small model on a CPU)
MEASURE_MIN = 256  # prompt tokens a call must have read to measure the reading rate by it
SWAP_TPS = 60_000.0  # tokens of state a second a save or restore is assumed to copy until one has been measured
SWAP_MIN = 256  # prompt tokens a restore must save reading
SWAP_BUDGET = 4 << 30  # bytes of saved states kept on the server (llama.cpp's `--cache-ram` defaults to 8 GiB)


def state_name(pid: int) -> str:
    """The name a process's saved state goes by on the server (a file name under llama.cpp's `--slot-save-path`)."""
    return f"aios-{pid}.bin"


@dataclass(frozen=True)
class Saved:
    tokens: int
    bytes: int
    user: str  # whose conversation it is: only that user's calls restore it


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
        # swapping: where the server saves and restores slots' states (the lever: `swap`)
        self.swaps: SwapsSlots | None = backend if isinstance(backend, SwapsSlots) else None
        self.swap = self.swaps is not None
        self.swap_budget = SWAP_BUDGET
        self.swap_tps = SWAP_TPS
        self.owner: dict[int, tuple[int, str]] = {}  # slot -> (pid, user) of the unsaved conversation it holds
        self.saved: OrderedDict[int, Saved] = OrderedDict()  # pid -> its saved state, least recently used first
        self.saved_bytes = 0
        self.saves = 0  # states saved, so far
        self.restores = 0  # states restored, so far

    # -- choosing ------------------------------------------------------------------------
    def cached(self, request: LLMRequest, free: list[int]) -> int:
        """The most of `request`'s prompt any of the free slots holds."""
        return max((self.backend.slot_cached(request, s) for s in free), default=0)

    def choose(self, request: LLMRequest, free: list[int]) -> int:
        """The free slot for `request`: the longest prefix held, then (where states are swapped) one with nothing
        to save first, then the least recently used."""
        return max(free, key=lambda s: (self.backend.slot_cached(request, s), not (self.swap and s in self.owner),
                                        -self.used_at.get(s, 0)))

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
        if self.swap:  # getting it back costs a save and a restore
            seconds = min(seconds, 2 * tokens / max(1.0, self.swap_tps))
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

    # -- swapping ------------------------------------------------------------------------
    def left_in(self, call: LLMCall, slot: int) -> None:
        """`call` ended in `slot` (answered or preempted): the slot holds its process's latest conversation."""
        for s in [s for s, (p, _) in self.owner.items() if p == call.pid]:
            del self.owner[s]
        self.owner[slot] = (call.pid, call.proc.user)

    async def prepare(self, call: LLMCall, slot: int) -> None:
        """Before `call` is served in `slot`: save the conversation the slot holds, then restore into it the
        saved state that holds most of `call`'s prompt, when that is worth it. A failed save or restore costs only
        what it would have saved."""
        swaps = self.swaps
        if swaps is None or not self.swap:
            return
        owner = self.owner.pop(slot, None)
        save = owner if owner is not None and owner[0] != call.pid else None
        restore = self._best(call, slot, skip=save[0] if save else None)
        if save is None and restore is None:
            return
        start = clock.now()
        jobs = []  # in this order on the server: what the slot holds is saved before the restore overwrites it
        if save is not None:
            jobs.append(swaps.save_slot(slot, state_name(save[0])))
        if restore is not None:
            jobs.append(swaps.restore_slot(slot, state_name(restore)))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        state = results.pop(0) if save is not None else None
        restored = results.pop(0) if restore is not None else None
        copied = 0
        if isinstance(state, SavedState) and state.tokens and save is not None:
            self._store(save[0], Saved(state.tokens, state.bytes, save[1]))
            self.saves += 1
            copied += state.tokens
        if isinstance(restored, int):
            if restore in self.saved:  # (another call's save may have pushed it out meanwhile)
                self.saved.move_to_end(restore)
            self.restores += 1
            copied += restored
        for failed in (state, restored):
            if isinstance(failed, BaseException) and not isinstance(failed, BackendError):
                raise failed
        self._measure(copied, clock.now() - start)

    def _best(self, call: LLMCall, slot: int, skip: int | None) -> int | None:
        """The process whose saved state is worth restoring into `slot` for `call` (None: none is)."""
        assert self.swaps is not None
        held = self.backend.slot_cached(call.request, slot)
        best, gain = None, 0
        for pid, saved in self.saved.items():
            if saved.user != call.proc.user or pid == skip:
                continue
            common = self.swaps.saved_cached(call.request, state_name(pid))
            if common - held > gain:
                best, gain = pid, common - held
        if best is None or gain < SWAP_MIN:
            return None
        if self.saved[best].tokens / self.swap_tps >= gain / max(1.0, self.read_tps):
            return None  # copying it in would take longer than reading what it saves
        return best

    def _measure(self, tokens: int, seconds: float) -> None:
        if tokens >= MEASURE_MIN and seconds > 0:
            self.swap_tps = 0.8 * self.swap_tps + 0.2 * tokens / seconds

    def _store(self, pid: int, state: Saved) -> None:
        old = self.saved.pop(pid, None)
        if old is not None:
            self.saved_bytes -= old.bytes
        self.saved[pid] = state
        self.saved_bytes += state.bytes
        while self.saved_bytes > self.swap_budget and self.saved:
            self._drop(next(iter(self.saved)))

    def _drop(self, pid: int) -> None:
        state = self.saved.pop(pid, None)
        if state is None:
            return
        self.saved_bytes -= state.bytes
        if self.swaps is not None:
            self.swaps.drop_saved(state_name(pid))

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

    def swap_info(self) -> SwapInfo | None:
        """The saved states, as `sched` shows them (None where the kernel does not swap)."""
        if not self.swap:
            return None
        return SwapInfo(len(self.saved), self.saved_bytes, self.swap_budget, self.saves, self.restores)
