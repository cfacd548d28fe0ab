"""A deterministic model with a service-time model, for tests and benchmarks.

Replies are words drawn from a seeded generator, so the same request always gets
the same reply; a prompt that mentions `long` or `short` gets a long (200
tokens) or short (8 tokens) reply. Time follows `prefill_tps` and `decode_tps`, on a timeline fixed
when a reply starts (the loop's lateness in reading one token does not delay the next).
Tests can script exact replies with `enqueue`, as simonw/llm's MockModel does, or
with a function, `script(fn)`, consulted for every request once the queue is empty:
`fn(request)` returns a str, a `Reply` or an exception to raise. A `Reply` may carry
tool calls: the simulated model has native tool calling, so they come out as
`Chunk.tool_calls` on the final chunk (whether or not the request listed tools).
`options={"tokens": n}` asks for a reply of exactly n tokens (benchmarks use it).
`tick` > 1 sleeps once per `tick` tokens, for benchmarks with many agents.

Offered tools, the model obeys a task that says `use TOOL: ARGUMENT` (e.g. `run react "use shell: ls"`):
it calls TOOL once with ARGUMENT as its first parameter (a tool with two required parameters gets the
first word and the rest: `use fs.write: notes.txt hello`), then answers with the result's first line —
enough to try tool calls and permission prompts by hand without a real model.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kernel.llm.backend import BackendError, Chunk, LLMRequest, SavedState
from kernel.llm.servermodel import Engine, Profile, Sequence, SlotCaches, message_keys

WORDS = (
    "the agent reads a file and plans its next step while the kernel schedules other work "
    "cats are curious animals that sleep most of the day and watch the world with care "
    "a process waits for the model then writes its answer to the shell"
).split()

_DIRECTIVE = re.compile(r"\buse ([A-Za-z_][\w.]*): *(.+)$", re.M)
LONG_TOKENS = 200
SHORT_TOKENS = 8


@dataclass
class Reply:
    """A scripted answer: text, and native tool calls as {"name": str, "arguments": dict}."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


Scripted = str | Reply | BaseException
ScriptFn = Callable[[LLMRequest], Scripted]


class SimulatedBackend:
    name: ClassVar[str] = "simulated"

    def __init__(
        self,
        model: str = "sim-1",
        slots: int = 4,
        prefill_tps: float = 2000.0,
        decode_tps: float = 50.0,
        seed: int = 0,
        context_window: int = 8192,
        tick: int = 1,
        profile: Profile | None = None,
    ) -> None:
        self.model = model
        self.slots = slots
        self.prefill_tps = profile.prefill_tps if profile else prefill_tps
        self.decode_tps = profile.decode_tps if profile else decode_tps
        # a server's timings (batched decode, a prompt cache per slot), or else each call alone at fixed rates
        self.profile = profile
        self.caches = SlotCaches(slots, enabled=profile.prefix_cache) if profile else None
        self.engine = Engine(profile, tick) if profile else None
        self._key_memo: dict[int, tuple[LLMRequest, list[tuple[bytes, int]]]] = {}
        self.seed = seed
        self.context_window = context_window
        self.tick = max(1, tick)
        self._script: list[Scripted] = []
        self._script_fn: ScriptFn | None = None
        # the reply chosen for a call that was preempted, so its resumption continues the same reply
        self._in_flight: dict[int, tuple[list[Any], Reply]] = {}
        self.requests: list[LLMRequest] = []

    def enqueue(self, *replies: Scripted) -> None:
        """Queue exact replies (str or `Reply`, or errors to raise) for the next calls, in order."""
        self._script.extend(replies)

    def script(self, fn: ScriptFn | None) -> None:
        """Answer every request (after the queue) with `fn(request)`; `None` goes back to generated replies."""
        self._script_fn = fn

    def _choose(self, request: LLMRequest) -> Reply:
        key = id(request.messages)
        kept = self._in_flight.get(key)
        if request.partial and kept is not None and kept[0] is request.messages:
            return kept[1]
        scripted: Scripted
        if self._script:
            scripted = self._script.pop(0)
        elif self._script_fn is not None:
            scripted = self._script_fn(request)
        elif (directed := self._directed(request)) is not None:
            scripted = directed
        else:
            scripted = self.reply_for(request)
        if isinstance(scripted, BaseException):
            raise scripted
        reply = scripted if isinstance(scripted, Reply) else Reply(str(scripted))
        self._in_flight[key] = (request.messages, reply)
        if len(self._in_flight) > 10_000:  # calls killed mid-reply never come back for theirs
            del self._in_flight[next(iter(self._in_flight))]
        return reply

    @staticmethod
    def _directed(request: LLMRequest) -> Reply | None:
        """`use TOOL: ARGUMENT` in a user message, with TOOL offered: call it once, then report."""
        asked = [f for m in request.messages if m.get("role") == "user"
                 for f in [_DIRECTIVE.search(str(m.get("content", "")))] if f]
        if not asked:
            return None
        found = asked[-1]
        name, argument = found.group(1), found.group(2).strip().strip("\"'")
        schema = next((t["function"] for t in request.tools if t.get("function", {}).get("name") == name), None)
        if schema is None:
            return None
        results = [str(m.get("content", "")) for m in request.messages if m.get("role") == "tool"]
        if results:
            first = (results[-1].strip().splitlines() or [""])[0]
            return Reply(f"{name} said: {first}")
        params = list(schema.get("parameters", {}).get("properties", {}))
        required = [p for p in params if p in schema.get("parameters", {}).get("required", [])]
        if len(required) >= 2:  # `use fs.write: notes.txt some text`: the first word, then the rest
            first, _, rest = argument.partition(" ")
            return Reply(tool_calls=[{"name": name, "arguments": {required[0]: first, required[1]: rest}}])
        return Reply(tool_calls=[{"name": name, "arguments": {params[0]: argument} if params else {}}])

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def message_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        """Each message's tokens, as the prompt counts them (its words, and 4 for its role and framing)."""
        return [self.count_tokens(str(m.get("content", ""))) + 4 for m in messages]

    def prompt_tokens(self, request: LLMRequest) -> int:
        return sum(self.message_tokens(request.messages))

    def reply_for(self, request: LLMRequest) -> str:
        last = str(request.messages[-1].get("content", "")) if request.messages else ""
        digest = hashlib.sha256(f"{self.seed}|{self.model}|{request.messages}".encode()).digest()
        rng = random.Random(digest)
        lowered = last.lower()
        if isinstance(request.options.get("tokens"), int) and request.options["tokens"] > 0:
            n = request.options["tokens"]
        elif "long" in lowered.split():
            n = LONG_TOKENS
        elif "short" in lowered.split():
            n = SHORT_TOKENS
        else:
            n = rng.randint(12, 40)
        words = [rng.choice(WORDS) for _ in range(n)]
        words[0] = words[0].capitalize()
        return " ".join(words) + "."

    def _pieces(self, reply: str) -> list[str]:
        if not reply:
            return []
        words = reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        if len(self.requests) > 10_000:  # tests look at recent requests; a soak must not grow without bound
            del self.requests[:5_000]
        reply = self._choose(request)
        pieces = self._pieces(reply.text)
        done_text = ""
        skip = 0
        if request.partial:
            # continue after what was already produced for this call
            for piece in pieces:
                if not request.partial.startswith(done_text + piece):
                    break
                done_text += piece
                skip += 1
        prompt_tokens = self.prompt_tokens(request) + skip
        if self.caches is None:
            async for chunk in self._serve(request, reply, pieces, skip, prompt_tokens, prompt_tokens):
                yield chunk
            return
        slot, reused = self.caches.take(self._keys(request), want=request.slot)
        answer: list[str] = []
        try:
            # a prompt past the window is cut to its last `context_window` tokens, as Ollama's runner cuts one
            to_read = max(0, min(prompt_tokens, self.context_window) - reused)
            async for chunk in self._batched(request, reply, pieces[skip:], prompt_tokens, to_read):
                answer.append(chunk.text)
                yield chunk
        finally:  # the slot holds the prompt and the answer now: the agent's next turn starts with both
            held = [*request.messages, {"role": "assistant", "content": request.partial + "".join(answer)}]
            self.caches.give_back(slot, message_keys(held, self.message_tokens(held)))

    async def _serve(self, request: LLMRequest, reply: Reply, pieces: list[str], skip: int, prompt_tokens: int,
                     to_read: int) -> AsyncIterator[Chunk]:
        """The answer at fixed rates, as if this call had the model to itself."""
        # the model keeps its own pace, as a server does: each token is due at a time fixed from the start,
        # so a consumer that is slow to read one does not slow the ones after it
        loop = asyncio.get_running_loop()
        due = loop.time()
        if self.prefill_tps > 0:
            due += to_read / self.prefill_tps
            await asyncio.sleep(due - loop.time())
        produced = 0
        for piece in pieces[skip:]:
            if produced >= request.max_tokens:
                yield self._finished(request, reply, prompt_tokens, produced, cut=True)
                return
            if self.decode_tps > 0 and produced % self.tick == 0:
                due += self.tick / self.decode_tps
                await asyncio.sleep(max(0.0, due - loop.time()))  # one timer per `tick` tokens
            produced += 1
            yield Chunk(text=piece)
        yield self._finished(request, reply, prompt_tokens, produced)

    @property
    def caches_prompts(self) -> bool:
        return self.caches is not None

    def cached_tokens(self, request: LLMRequest) -> int:
        """How many of `request`'s prompt tokens a free slot of this server holds (0 without a profile)."""
        if self.caches is None:
            return 0
        keys = self._keys(request)
        return max((s.common(keys) for s in self.caches.slots if not s.busy), default=0)

    def held_tokens(self, request: LLMRequest) -> tuple[int, str]:
        """The most of `request`'s prompt any slot holds (busy or not), and which slot."""
        if self.caches is None:
            return 0, ""
        keys = self._keys(request)
        best = max(self.caches.slots, key=lambda s: s.common(keys))
        return best.common(keys), f"slot {best.index}'s prompt cache"

    def slot_cached(self, request: LLMRequest, slot: int) -> int:
        """How many of `request`'s prompt tokens slot `slot` holds (0 without a profile, or no such slot)."""
        if self.caches is None or not 0 <= slot < len(self.caches.slots):
            return 0
        return self.caches.slots[slot].common(self._keys(request))

    # -- saved states: llama.cpp's `/slots/ID?action=save|restore` -------------------------
    def _slot(self, slot: int) -> Any:
        if self.caches is None or self.engine is None or not 0 <= slot < len(self.caches.slots):
            raise BackendError(f"no slot {slot} to save or restore")
        return self.caches.slots[slot]

    async def save_slot(self, slot: int, name: str) -> SavedState:
        """Save what slot `slot` holds as `name`, at the profile's copy rate in the server's loop."""
        held = self._slot(slot)
        assert self.caches is not None and self.engine is not None and self.profile is not None
        tokens = self.caches.save(held, name)
        await self.engine.copy(tokens)
        return SavedState(tokens, tokens * self.profile.state_bytes)

    async def restore_slot(self, slot: int, name: str) -> int:
        """Slot `slot` holds the state saved as `name` now; the tokens restored."""
        held = self._slot(slot)
        assert self.caches is not None and self.engine is not None
        if held.busy:
            raise BackendError(f"slot {slot} is busy")
        tokens = self.caches.restore(held, name)
        await self.engine.copy(tokens)
        return tokens

    def saved_cached(self, request: LLMRequest, name: str) -> int:
        return self.caches.saved_common(name, self._keys(request)) if self.caches is not None else 0

    def drop_saved(self, name: str) -> None:
        if self.caches is not None:
            self.caches.saved.pop(name, None)

    def _keys(self, request: LLMRequest) -> list[tuple[bytes, int]]:
        """The prompt's `message_keys`, kept for the requests asked about lately (a queued call is asked often)."""
        found = self._key_memo.get(id(request))
        if found is not None and found[0] is request:
            return found[1]
        keys = message_keys(request.messages, self.message_tokens(request.messages))
        self._key_memo[id(request)] = (request, keys)
        if len(self._key_memo) > 4096:
            del self._key_memo[next(iter(self._key_memo))]
        return keys

    async def _batched(self, request: LLMRequest, reply: Reply, pieces: list[str], prompt_tokens: int,
                       to_read: int) -> AsyncIterator[Chunk]:
        """The answer as the profile's server makes it: in its one loop, batched with the others (`Engine`)."""
        assert self.engine is not None
        seq = Sequence(to_read=to_read, wanted=min(len(pieces), request.max_tokens))
        self.engine.add(seq)
        given = 0
        try:
            while given < seq.wanted:
                while seq.produced <= given:
                    seq.ready.clear()
                    await seq.ready.wait()
                for piece in pieces[given:seq.produced]:
                    yield Chunk(text=piece)
                given = seq.produced
        finally:
            self.engine.remove(seq)
        yield self._finished(request, reply, prompt_tokens, given, cut=given < len(pieces))

    def _finished(self, request: LLMRequest, reply: Reply, prompt_tokens: int, produced: int,
                  cut: bool = False) -> Chunk:
        """The last chunk: cut at `max_tokens` (`length`), or the whole reply with its tool calls."""
        self._in_flight.pop(id(request.messages), None)
        if cut:
            return Chunk(done=True, prompt_tokens=prompt_tokens, completion_tokens=produced, finish_reason="length")
        calls = tuple({"name": c["name"], "arguments": dict(c.get("arguments") or {})} for c in reply.tool_calls)
        return Chunk(done=True, prompt_tokens=prompt_tokens, completion_tokens=produced, finish_reason="stop",
                     tool_calls=calls)

    async def start(self) -> None:
        if self.slots < 1:
            raise BackendError("slots must be at least 1")

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "slots": self.slots,
            "context_window": self.context_window,
            "prefill_tps": self.prefill_tps,
            "decode_tps": self.decode_tps,
            "seed": self.seed,
            **({"profile": self.profile.name} if self.profile else {}),
        }
