"""The context manager: how big each process's context is, what happens when it nears the model's window,
and what a context switch costs.

**Accounting.** Tokens are counted with the backend's tokenizer (`count_tokens`), plus `PER_MESSAGE` for the
role and turn markers a chat template adds, plus the tool schemas a request offers. Counting happens once per
message: each process's last request is kept with its counts, and the next request of a growing conversation
(the same messages and some new ones, as agents send them) only counts the new ones.

**Compaction.** When prompt + reply room (`max_tokens`, at most a quarter of the window) passes `HIGH` of the
window, older turns are dropped until it is under `LOW`: system messages, the process's task (the last user
message of its first request) and the newest turn always stay; then the newest turns that fit; the turns
dropped are replaced by one marked message, `[compacted: N earlier turns (T tokens) dropped]`, just before
the turns kept. An assistant message and the tool results that answer it are one turn (never split). A message
too big on its own is cut from its middle (`[… N tokens cut …]`). Dropping is honest where a summary by a small
model is not. The kept context stands in for those messages on later calls, so a conversation is compacted
again only when it nears the window again. (A process that keeps two conversations going at once is
counted afresh at each call: still right, only without the saving.)

**Switches.** A call that leaves its slot (preempted at a token boundary, or its process stopped) keeps its
partial answer; `snapshot` records it (`ContextSnapshot`) and `restore` gives the request it resumes with —
the one the dispatcher sends (prompt + partial). When it produces again, the switch's cost is measured: the
time from its new slot to its first new token, less its usual time per token (`ContextSwitched`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kernel import clock
from kernel.events import (
    ContextCompacted,
    ContextSwitched,
    Event,
    EventBus,
    PreemptReason,
    ProcessExited,
    SyscallDispatched,
    SyscallPreempted,
    TokenGenerated,
)
from kernel.llm.backend import Backend, LLMRequest, Message

if TYPE_CHECKING:
    from kernel.process import Process
    from kernel.syscall import LLMCall, LLMResult

DEFAULT_WINDOW = 4096
PER_MESSAGE = 4  # tokens a chat template spends around each message (role, turn markers)
HIGH = 0.85  # compact when prompt + reply room passes this share of the window…
LOW = 0.60  # …down to this share
REPLY_SHARE = 4  # reply room: max_tokens, but at most window // REPLY_SHARE
MIN_CUT = 16  # a message is never cut below this many tokens
MARKER = "[compacted: {turns} earlier turn{s} ({tokens} tokens) dropped]"
CUT = "\n[… {tokens} tokens cut …]\n"


@dataclass(frozen=True)
class ContextSnapshot:
    """A call's context when it left its slot: the request it was serving and what it had answered so far."""

    pid: int
    sid: int
    request: LLMRequest
    partial: str
    tokens: int  # what the model must read again to go on: prompt + partial
    reason: str
    produced: int = 0  # tokens of the partial answer
    ts: float = field(default_factory=clock.now)

    @property
    def messages(self) -> list[Message]:
        return self.request.messages


@dataclass
class _Context:
    """One process's context as the model saw it at its last call."""

    source: list[Message] = field(default_factory=list)  # the messages the agent sent
    kept: list[Message] = field(default_factory=list)  # what went to the model in their stead
    counts: list[int] = field(default_factory=list)  # tokens of each kept message
    anchor: Message | None = None  # the process's task: never dropped
    marker: Message | None = None  # the compaction marker in `kept`, if any
    changed: bool = False  # kept differs from source
    dropped_turns: int = 0
    dropped_tokens: int = 0


@dataclass
class _Switch:
    snapshot: ContextSnapshot
    per_token_s: float  # the call's time per token before it left its slot
    dispatched: float | None = None  # perf_counter when it got a slot again


class ContextManager:
    """Token accounting, window limits, compaction and snapshot/restore for the kernel's processes."""

    def __init__(self, backend: Backend, bus: EventBus) -> None:
        self.backend = backend
        self.bus = bus
        self.compactions = 0  # all processes together
        self.compaction_s = 0.0  # time spent compacting, all together
        self._contexts: dict[int, _Context] = {}
        self._calls: dict[int, tuple[LLMCall, int]] = {}  # sid -> (call, prompt tokens) while in flight
        self._switches: dict[int, _Switch] = {}  # sid -> a switched-out call, until it produces again
        self._resumed: set[int] = set()  # sids that left a slot at least once
        self._snapshots: dict[int, ContextSnapshot] = {}  # pid -> its latest snapshot
        self._tools: tuple[list[dict[str, Any]], int] = ([], 0)
        self._untokens: Callable[[], None] | None = None  # unsubscribes the token listener
        bus.on(self._on_event, SyscallPreempted, SyscallDispatched, ProcessExited)

    # -- counting --------------------------------------------------------------------------------
    def window(self, request: LLMRequest | None = None) -> int:
        """The model's window in tokens (a request's `num_ctx` option, for Ollama, wins)."""
        if request is not None and isinstance(request.options.get("num_ctx"), int) and request.options["num_ctx"] > 0:
            return request.options["num_ctx"]
        window = getattr(self.backend, "context_window", None) or self.backend.describe().get("context_window")
        return int(window) if window else DEFAULT_WINDOW

    def tokens(self, text: str) -> int:
        return self.backend.count_tokens(text) if text else 0

    def message_tokens(self, message: Message) -> int:
        """One message: its content, its tool calls, and the template's overhead."""
        n = self.tokens(str(message.get("content") or "")) + PER_MESSAGE
        if message.get("tool_calls"):
            n += self.tokens(json.dumps(message["tool_calls"], ensure_ascii=False, separators=(",", ":")))
        return n

    def count(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> int:
        """Prompt tokens of `messages` (and the tool schemas offered with them)."""
        return sum(self.message_tokens(m) for m in messages) + self.tools_tokens(tools or [])

    def tools_tokens(self, tools: list[dict[str, Any]]) -> int:
        """The tool schemas, as a backend with native tool calling puts them in the prompt (cached: agents
        offer the same schemas call after call)."""
        if not tools:
            return 0
        if tools != self._tools[0]:  # the same schema objects compare by identity first: cheap
            self._tools = (list(tools), self.tokens(json.dumps(tools, ensure_ascii=False, separators=(",", ":"))))
        return self._tools[1]

    # -- before and after a call -----------------------------------------------------------------
    def fit(self, proc: Process, request: LLMRequest) -> LLMRequest:
        """The request to send for `proc`: its kept context plus what is new, compacted when it nears the
        window, and `max_tokens` no more than the window leaves."""
        window = self.window(request)
        messages = request.messages
        ctx = self._contexts.get(proc.pid)
        n = len(ctx.source) if ctx is not None else 0
        if ctx is not None and len(messages) >= n and messages[:n] == ctx.source:
            kept, counts, new = list(ctx.kept), list(ctx.counts), messages[n:]
        else:  # a first call, or a conversation that is not the last one grown
            ctx = _Context(anchor=next((m for m in reversed(messages) if m.get("role") == "user"), None))
            kept, counts, new = [], [], messages
        kept += new
        counts += [self.message_tokens(m) for m in new]
        tools = self.tools_tokens(request.tools)
        prompt = sum(counts) + tools
        reserve = min(request.max_tokens, window // REPLY_SHARE)
        if prompt + reserve > HIGH * window:
            kept, counts = self._compact(proc, ctx, kept, counts, int(LOW * window) - reserve - tools, prompt)
            prompt = sum(counts) + tools
        ctx.source, ctx.kept, ctx.counts = list(messages), kept, counts
        self._contexts[proc.pid] = ctx
        proc.ctx_window = window
        max_tokens = max(1, min(request.max_tokens, window - prompt))
        if not ctx.changed and max_tokens == request.max_tokens:
            return request
        return replace(request, messages=list(kept) if ctx.changed else messages, max_tokens=max_tokens)

    def track(self, call: LLMCall) -> None:
        """`call` was submitted: follow it through switches until `done`."""
        ctx = self._contexts.get(call.pid)
        prompt = sum(ctx.counts) if ctx is not None else self.count(call.request.messages)
        self._calls[call.sid] = (call, prompt + self.tools_tokens(call.request.tools))
        call.prompt_estimate = self._calls[call.sid][1]

    def account(self, proc: Process, call: LLMCall, result: LLMResult) -> int:
        """The size of `proc`'s context after `call`, prompt + answer; sets `proc.ctx_tokens`.

        The backend's figure when it is the larger (it counts its template too), ours when it is not (a
        backend that reuses a cached prompt reports only what it read anew)."""
        # a resumed call's last prompt held its earlier answer: only its last stretch came after
        answer = call.segment_tokens if call.sid in self._resumed else result.completion_tokens
        counted = self._calls[call.sid][1] if call.sid in self._calls else self.count(call.request.messages)
        proc.ctx_tokens = max(result.prompt_tokens + answer, counted + result.completion_tokens)
        return proc.ctx_tokens

    def done(self, call: LLMCall) -> None:
        """`call` ended (answered, failed or cancelled)."""
        self._calls.pop(call.sid, None)
        self._resumed.discard(call.sid)
        switch = self._switches.pop(call.sid, None)
        if switch is not None and switch.dispatched is not None and not call.cancelled:
            self._switched(call.proc, switch)  # it resumed and ended without a new token
        self._listen()

    # -- snapshot and restore --------------------------------------------------------------------
    def snapshot(self, call: LLMCall, reason: str = "") -> ContextSnapshot:
        """`call`'s context as it leaves its slot."""
        prompt = self._calls[call.sid][1] if call.sid in self._calls else self.count(call.request.messages)
        snap = ContextSnapshot(pid=call.pid, sid=call.sid, request=call.request, partial=call.raw,
                               tokens=prompt + self.tokens(call.raw), reason=reason, produced=call.chunks)
        self._snapshots[call.pid] = snap
        return snap

    @staticmethod
    def restore(snapshot: ContextSnapshot) -> LLMRequest:
        """The request that continues a snapshotted call: its prompt, then its partial answer."""
        return snapshot.request.continued(snapshot.partial, snapshot.produced)

    def latest_snapshot(self, pid: int) -> ContextSnapshot | None:
        return self._snapshots.get(pid)

    def describe(self, proc: Process) -> dict[str, Any]:
        """Used and window tokens, compactions and switches of a live process."""
        window = proc.ctx_window or self.window()
        return {"used": proc.ctx_tokens, "window": window, "pct": round(100 * proc.ctx_tokens / window),
                "compactions": proc.compactions, "switches": proc.ctx_switches,
                "switch_cost_s": round(proc.switch_cost_s, 6)}

    # -- compaction ------------------------------------------------------------------------------
    def _compact(self, proc: Process, ctx: _Context, kept: list[Message], counts: list[int], budget: int,
                 before: int) -> tuple[list[Message], list[int]]:
        t0 = time.perf_counter()
        # turns: an assistant message and the tool results that answer it are one; system messages stand alone
        starts: list[int] = []
        size: list[int] = []
        keep: list[bool] = []  # pinned: system messages and the task
        system = False
        for i, m in enumerate(kept):
            role = m.get("role")
            if role == "tool" and starts and not system:
                size[-1] += counts[i]
                continue
            system = role == "system"
            starts.append(i)
            size.append(counts[i])
            keep.append(system or m is ctx.anchor)
        marker = -1 if ctx.marker is None else next((u for u, i in enumerate(starts) if kept[i] is ctx.marker), -1)
        keep[-1] = True  # the newest turn
        # room for the marker too (sized with numbers at least as long as its own will be)
        used = sum(n for n, k in zip(size, keep, strict=True) if k) + self._marker(ctx, len(size), sum(size))[1]
        for u in range(len(starts) - 2, -1, -1):  # then the newest turns that fit
            if keep[u] or u == marker:
                continue
            if used + size[u] > budget:
                break
            keep[u], used = True, used + size[u]
        starts.append(len(kept))
        out: list[Message] = []
        out_counts: list[int] = []
        gap, dropped, dropped_tokens = -1, 0, 0
        for u, k in enumerate(keep):
            if k:
                out += kept[starts[u]:starts[u + 1]]
                out_counts += counts[starts[u]:starts[u + 1]]
                continue
            gap = len(out)
            if u != marker:  # the old marker's turns are counted in ctx already
                dropped, dropped_tokens = dropped + 1, dropped_tokens + size[u]
        ctx.dropped_turns += dropped
        ctx.dropped_tokens += dropped_tokens
        if gap >= 0 and ctx.dropped_turns:
            ctx.marker, n = self._marker(ctx)
            out.insert(gap, ctx.marker)
            out_counts.insert(gap, n)
        cut = self._cut_to(out, out_counts, budget, ctx.marker)
        ctx.changed = True
        after = sum(out_counts) + (before - sum(counts))
        proc.compactions += 1
        self.compactions += 1
        self.compaction_s += time.perf_counter() - t0
        how = "+".join(w for w, did in (("dropped", dropped), ("cut", cut)) if did) or "dropped"
        self.bus.publish(ContextCompacted(pid=proc.pid, before_tokens=before, after_tokens=after,
                                          dropped_turns=dropped, how=how))
        return out, out_counts

    def _marker(self, ctx: _Context, more_turns: int = 0, more_tokens: int = 0) -> tuple[Message, int]:
        """The message that stands for every turn dropped so far, and its size."""
        turns, tokens = ctx.dropped_turns + more_turns, ctx.dropped_tokens + more_tokens
        marker = {"role": "user", "content": MARKER.format(turns=turns, s="" if turns == 1 else "s", tokens=tokens)}
        return marker, self.message_tokens(marker)

    def _cut_to(self, out: list[Message], counts: list[int], budget: int, marker: Message | None) -> bool:
        """Cut the biggest messages from their middle until `out` fits `budget` (system ones last)."""
        cut = False
        while (excess := sum(counts) - budget) > 0:
            order = sorted((i for i, m in enumerate(out) if m is not marker and counts[i] > MIN_CUT),
                           key=lambda i: (out[i].get("role") == "system", -counts[i]))
            if not order:
                break
            i = order[0]
            out[i], counts[i] = self._cut(out[i], max(MIN_CUT, counts[i] - excess))
            cut = True
        return cut

    def _cut(self, message: Message, target: int) -> tuple[Message, int]:
        """`message` with its content cut from the middle to about `target` tokens (whole message)."""
        text = str(message.get("content") or "")
        total = self.message_tokens(message)
        room = max(1, target - (total - self.tokens(text)) - self.tokens(CUT.format(tokens=total)))
        chars = len(text) * room // max(1, self.tokens(text))
        cut_message, n = message, total
        for _ in range(8):
            half = max(0, chars // 2)
            head, tail = text[:half], text[len(text) - half:] if half else ""
            cut_message = {**message, "content": head + CUT.format(tokens=self.tokens(text[half:len(text) - half]))
                           + tail}
            n = self.message_tokens(cut_message)
            if n <= target or half == 0:
                break
            chars = chars * 3 // 4
        return cut_message, n

    # -- switches --------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, SyscallDispatched):
            switch = self._switches.get(event.sid)
            if switch is not None:
                switch.dispatched = clock.monotonic()
                self._listen()
        elif isinstance(event, SyscallPreempted):
            entry = self._calls.get(event.sid)
            if entry is None:
                return
            call = entry[0]
            self._resumed.add(call.sid)
            if event.cause == PreemptReason.RETRY:
                return  # a failed attempt tried again, not a switch
            snap = self.snapshot(call, event.reason)
            elapsed = clock.now() - (call.segment_started or clock.now())
            self._switches[call.sid] = _Switch(snap, elapsed / max(1, call.segment_tokens))
        elif isinstance(event, ProcessExited):
            self._contexts.pop(event.pid, None)
            self._snapshots.pop(event.pid, None)

    def _listen(self) -> None:
        """Hear tokens only while a resumed call awaits its first one: no cost per token otherwise."""
        waiting = any(s.dispatched is not None for s in self._switches.values())
        if waiting and self._untokens is None:
            self._untokens = self.bus.on(self._on_token, TokenGenerated)
        elif not waiting and self._untokens is not None:
            self._untokens()
            self._untokens = None

    def _on_token(self, event: Event) -> None:
        switch = self._switches.get(event.sid)  # type: ignore[attr-defined]
        if switch is None or switch.dispatched is None:
            return
        del self._switches[switch.snapshot.sid]
        entry = self._calls.get(switch.snapshot.sid)
        if entry is not None:
            self._switched(entry[0].proc, switch)
        self._listen()

    def _switched(self, proc: Process, switch: _Switch) -> None:
        assert switch.dispatched is not None
        resume = clock.monotonic() - switch.dispatched
        cost = max(0.0, resume - switch.per_token_s)
        proc.switch_cost_s += cost
        snap = switch.snapshot
        self.bus.publish(ContextSwitched(pid=snap.pid, sid=snap.sid, reason=snap.reason, tokens=snap.tokens,
                                         resume_s=round(resume, 6), cost_s=round(cost, 6)))
