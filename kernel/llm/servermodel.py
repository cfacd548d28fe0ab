"""How a real model server spends its time, for the simulated backend: batched decode and a prompt cache per slot.

A server decodes its busy sequences together, one step for all of them: the more it batches, the more tokens
a second in all and the fewer for each. `Profile.per_sequence(b)` is one sequence's rate with `b` decoding,
`decode_tps / (1 + slowdown × (b − 1))`, fitted to two measured points:

- `EMBEDDED`: the embedded model here (gemma3 270m Q4_K_M through llama-cpp-python on 2 CPU cores): raw batched
  decode 42 tokens/s at b = 1 and 75 in all at b = 8 (9.4 each), prefill ~480 tokens/s;
- `GPU`: a small model on a datacenter GPU, where a batch of 8 costs little more than one (decode is bound by
  reading the weights, not by arithmetic): 150 tokens/s at b = 1, 1000 in all at b = 8, prefill 8000 tokens/s.

Each slot keeps the tokens it last held, and a request is put in the free slot whose cache shares the longest
prefix with its prompt, as Ollama's runner does (`runner/llamarunner/cache.go`: `LoadCacheSlot`,
`findLongestCacheSlot`, the first of equal ones; its `OLLAMA_MULTIUSER_CACHE`, off by default, would fork the
prefix into the oldest free slot instead) and llama.cpp's server with `cache_prompt`; only the rest is read. The
prompt is compared message by message (a token-level match would reuse a little more of a changed message).
The server has one loop (`Engine`): each step reads a chunk of the prompts waiting to be read and makes a token
for every sequence past its prompt, and costs both, so a long prompt holds up every answer being made.

Its client may also save a slot's state (its KV cache) and restore it into a slot later, as llama.cpp's server
does (`POST /slots/ID?action=save|restore`, `tools/server/server.cpp`): a copy at `swap_tps` tokens a second,
in the same loop, far faster than reading the prompt again. The embedded model's state is 18,456 bytes a token,
saved at ~68,000 tokens a second and restored at ~385,000 here (`llama_state_seq_get_data`/`set_data`, 4000
tokens); `EMBEDDED` takes 60,000 for both. `GPU` assumes the same state moved over PCIe at ~10 GB/s.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    decode_tps: float  # one sequence's tokens a second when it decodes alone
    slowdown: float  # how much each more sequence in the batch slows every one of them
    prefill_tps: float  # prompt tokens read a second
    prefix_cache: bool = True
    swap_tps: float = 60_000.0  # tokens of KV state a second that a slot's save or restore copies
    state_bytes: int = 18_456  # bytes of KV state a token (the embedded model's, measured)

    def per_sequence(self, batch: int) -> float:
        """One sequence's decode rate with `batch` sequences decoding together."""
        return self.decode_tps / (1.0 + self.slowdown * max(0, batch - 1))

    def total(self, batch: int) -> float:
        return batch * self.per_sequence(batch)


def fitted(name: str, one: float, batch: int, total: float, prefill_tps: float,
           swap_tps: float = 60_000.0) -> Profile:
    """The profile through two measured points: `one` tokens/s alone, `total` in all with `batch` decoding."""
    slowdown = (batch * one / total - 1.0) / (batch - 1)
    return Profile(name, one, slowdown, prefill_tps, swap_tps=swap_tps)


EMBEDDED = fitted("embedded", one=42.0, batch=8, total=75.0, prefill_tps=480.0, swap_tps=60_000.0)
GPU = fitted("gpu", one=150.0, batch=8, total=1000.0, prefill_tps=8000.0, swap_tps=500_000.0)
PROFILES = {p.name: p for p in (EMBEDDED, GPU)}


def message_keys(messages: list[dict[str, Any]], tokens: list[int]) -> list[tuple[bytes, int]]:
    """The prompt as (digest of the messages so far, their tokens so far): equal keys mean an equal prefix."""
    keys = []
    digest = hashlib.blake2b(digest_size=16)
    total = 0
    for message, n in zip(messages, tokens, strict=True):
        digest.update(repr((message.get("role"), message.get("content"))).encode())
        total += n
        keys.append((digest.copy().digest(), total))
    return keys


@dataclass
class Slot:
    index: int
    busy: bool = False
    cached: list[tuple[bytes, int]] = field(default_factory=list)  # the prompt it last read, as `message_keys`
    used_at: int = 0
    held: dict[bytes, int] = field(default_factory=dict)  # `cached` as a lookup

    def common(self, keys: list[tuple[bytes, int]]) -> int:
        """Tokens of `keys`' prompt this slot's cache already holds (the longest common prefix)."""
        held = self.held
        best = 0
        for digest, n in keys:
            if held.get(digest) != n:
                break
            best = n
        return best


class SlotCaches:
    """The server's slots and what each holds; `take` picks one for a request as the server would."""

    def __init__(self, slots: int, enabled: bool = True) -> None:
        self.slots = [Slot(i) for i in range(max(1, slots))]
        self.enabled = enabled
        self._clock = 0
        self.reused_tokens = 0  # prompt tokens not read again, so far
        self.read_tokens = 0  # prompt tokens read
        self.saved: dict[str, Slot] = {}  # states its client saved, by name (as slots of their own)

    def take(self, keys: list[tuple[bytes, int]], want: int | None = None) -> tuple[Slot, int]:
        """A free slot for a prompt, and how many of its tokens it holds already: slot `want` if the client named
        a free one (llama.cpp's `id_slot`), else the longest common prefix, then the first (a
        request beyond the slots gets a slot of its own, with nothing cached)."""
        free = [s for s in self.slots if not s.busy]
        if want is not None and 0 <= want < len(self.slots) and not self.slots[want].busy:
            slot = self.slots[want]
        elif not free:
            slot = Slot(-1)
        elif self.enabled:
            slot = max(free, key=lambda s: (s.common(keys), -s.index))  # of equal ones the first, as Ollama
        else:
            slot = min(free, key=lambda s: s.used_at)
        reused = slot.common(keys) if self.enabled else 0
        slot.busy = True
        total = keys[-1][1] if keys else 0
        self.reused_tokens += reused
        self.read_tokens += total - reused
        return slot, reused

    def give_back(self, slot: Slot, keys: list[tuple[bytes, int]]) -> None:
        """The request is done: the slot holds its prompt now (the answer joins it as the next prompt's)."""
        self._clock += 1
        slot.busy = False
        slot.used_at = self._clock
        slot.cached = keys
        slot.held = dict(keys)

    def busy(self) -> int:
        return sum(1 for s in self.slots if s.busy)

    # -- saved states (llama.cpp's `/slots/ID?action=save|restore`) ----------------------
    def save(self, slot: Slot, name: str) -> int:
        """Keep what `slot` holds under `name` (replacing an older one); the tokens saved."""
        self.saved[name] = Slot(-1, cached=list(slot.cached), held=dict(slot.held))
        return slot.cached[-1][1] if slot.cached else 0

    def restore(self, slot: Slot, name: str) -> int:
        """`slot` holds the state saved as `name` now; the tokens restored (0: nothing saved by that name)."""
        state = self.saved.get(name)
        if state is None:
            return 0
        slot.cached, slot.held = list(state.cached), dict(state.held)
        return state.cached[-1][1] if state.cached else 0

    def saved_common(self, name: str, keys: list[tuple[bytes, int]]) -> int:
        """Tokens of `keys`' prompt the state saved as `name` holds (the longest common prefix)."""
        state = self.saved.get(name)
        return state.common(keys) if state is not None else 0


CHUNK = 512  # prompt tokens one step reads at most (llama.cpp's server: its batch size)


@dataclass(eq=False)
class Sequence:
    """One request in the server: its prompt still to read, then its answer, a token (or a tick) a step."""

    to_read: int
    wanted: int  # tokens it will have made when it ends
    produced: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    """The server's one loop, as llama.cpp's and Ollama's runners have it: each step reads up to CHUNK tokens of
    the oldest prompts still being read and makes the next token of every sequence past its prompt. A step costs
    the batch's decode time (`Profile`) plus its prompt tokens' reading time, so a long prompt holds up every
    answer being made, as it does on a real server."""

    def __init__(self, profile: Profile, tick: int = 1) -> None:
        self.profile = profile
        self.tick = max(1, tick)  # tokens each decoding sequence makes per step (benchmarks use a few)
        self.active: list[Sequence] = []
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        self.copies: list[tuple[int, asyncio.Future[None]]] = []  # slot states to save or restore, in tokens

    def add(self, seq: Sequence) -> None:
        self.active.append(seq)
        self._wake()

    def _wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="simulated-server")

    async def copy(self, tokens: int) -> None:
        """Save or restore a slot's state of `tokens` tokens: a task of the loop, costing the next step the copy."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.copies.append((tokens, done))
        self._wake()
        await done

    def remove(self, seq: Sequence) -> None:
        if seq in self.active:
            self.active.remove(seq)

    def step_cost(self, decoding: int, reading: int) -> float:
        """Seconds one step takes: `decoding` sequences making `tick` tokens each, and `reading` prompt tokens."""
        decode = self.tick / self.profile.per_sequence(decoding) if decoding else 0.0
        return decode + reading / self.profile.prefill_tps

    async def _run(self) -> None:
        while self.active or self.copies:
            decoders = [s for s in self.active if s.to_read == 0 and s.produced < s.wanted]
            budget, reads = CHUNK * self.tick, []
            for s in self.active:
                if s.to_read and budget > 0:
                    take = min(budget, s.to_read)
                    reads.append((s, take))
                    budget -= take
            if self.copies:  # tasks first, between batches, as llama.cpp's server takes them
                copies, self.copies = self.copies, []
                await asyncio.sleep(sum(t for t, _ in copies) / self.profile.swap_tps)
                for _, done in copies:
                    if not done.done():
                        done.set_result(None)
                continue
            if not decoders and not reads:
                return  # (every one left is done; its reader removes it)
            await asyncio.sleep(self.step_cost(len(decoders), sum(t for _, t in reads)))
            self.steps += 1
            for s, take in reads:
                s.to_read -= take
            for s in decoders:
                s.produced = min(s.wanted, s.produced + self.tick)
                s.ready.set()
