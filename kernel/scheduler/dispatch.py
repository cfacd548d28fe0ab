"""The dispatcher: admits at most P model calls at once, in the order the policy gives.

It owns the ready queue (so the kernel, not the backend's own queue, decides who
goes next), serves each admitted call by streaming from the backend, and yields
a slot at a token boundary when a call is preempted (its process stopped, or the
policy wants the slot for another call). The partial output is kept and the call
later continues from prompt + partial.

A call that fails for a passing reason (see `kernel.llm.retry`) gives its slot back and is
tried again after a back-off, keeping its partial output; its process shows `WAITING(llm)`
meanwhile and a `SyscallPreempted(cause="retry", reason="retry: …")` event says why. A backend whose capacity
changes (a pool with an endpoint down) offers `available_slots()`; then at most that many calls
run, and it calls `wake()` when the capacity grows again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from kernel import clock
from kernel.events import (
    PreemptReason,
    SchedulerChanged,
    SyscallDispatched,
    SyscallPreempted,
    SyscallQueued,
    TokenGenerated,
    WaitReason,
)
from kernel.llm.backend import (
    Backend,
    BackendError,
    CachesPrompts,
    ChoosesSlots,
    HoldsPrompts,
    LiveCapacity,
    LLMRequest,
)
from kernel.llm.retry import RetryPolicy, explain, is_transient
from kernel.process import State
from kernel.scheduler.fifo import FifoPolicy
from kernel.scheduler.policy import Policy
from kernel.scheduler.sizes import CallSizes
from kernel.scheduler.slots import SlotKeeper
from kernel.syscall import LLMCall, LLMResult

if TYPE_CHECKING:
    from kernel.events import Event
    from kernel.process import Process

log = logging.getLogger("aios.dispatch")

AFFINITY_LOOK = 16  # queued calls, in the policy's order, that may go first for a cached prompt
AFFINITY_BYPASS = 8  # times one call may be passed over for them
AFFINITY_MIN_TOKENS = 256  # prompt tokens a call must save, more than the first one would, to go first


class DispatchHost(Protocol):
    """What the dispatcher tells the kernel, and all it needs of it: the kernel implements this."""

    def publish(self, event: Event) -> None:
        """Put an event on the bus."""

    def set_state(self, proc: Process, state: State, waiting_on: str | None = None) -> None:
        """Move a process to `state` (a stopped one remembers where to go on CONT)."""

    def finish_llm(self, call: LLMCall, result: LLMResult | None = None, error: BaseException | None = None) -> None:
        """A call is done: settle its counters, log it, wake its agent."""

    def account_cancelled(self, call: LLMCall) -> None:
        """A call was cancelled: settle what it used."""

    def emit_output(self, proc: Process, text: str) -> None:
        """Write to a process's standard output (an echoed answer)."""


class Dispatcher:
    def __init__(self, host: DispatchHost, backend: Backend, policy: Policy | None = None) -> None:
        self.host = host
        self.backend = backend
        self.policy: Policy = policy if policy is not None else FifoPolicy()
        self.policy.wake = self._kick
        self.sizes = CallSizes()  # answer sizes learned per program and step, never from max_tokens
        self.policy.sizes = self.sizes
        self.slots = max(1, int(backend.slots))
        self.running: dict[int, LLMCall] = {}
        self.held: list[LLMCall] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.preemptions = 0
        self.retry = RetryPolicy.from_env()
        self.retried = 0  # retries started, all calls together
        self.backing_off: dict[int, LLMCall] = {}  # sid -> a failed call waiting to be tried again
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._attempts: dict[int, int] = {}  # sid -> retries so far
        self._live_slots = backend.available_slots if isinstance(backend, LiveCapacity) else None
        self._cache = backend if isinstance(backend, CachesPrompts) and backend.caches_prompts else None
        self.affinity = True  # serve a call whose prompt a free slot holds before one that must be read again
        self.affinity_picks = 0  # calls served out of the policy's order for it, so far
        # where the kernel names the server's slot: which one, and an agent's kept across its tool call
        chooses = isinstance(backend, ChoosesSlots) and backend.caches_prompts and self._live_slots is None
        self.keeper = SlotKeeper(backend) if chooses else None  # type: ignore[arg-type]
        self.keep_slots = True  # keep an answered call's slot for its process (the lever; off: `keep_slots=False`)
        self._returning: list[LLMCall] = []  # queued calls whose process has a slot kept
        self._last: dict[int, LLMRequest] = {}  # live pid -> its last answered call, answer included
        if isinstance(backend, LiveCapacity):
            backend.wake = self._kick

    # -- the queue -------------------------------------------------------------------------
    def submit(self, call: LLMCall) -> None:
        t0 = time.perf_counter()
        self.host.publish(SyscallQueued(pid=call.pid, sid=call.sid, call="llm"))
        self._enqueue(call)
        call.overhead_s += time.perf_counter() - t0
        self._kick()

    def _enqueue(self, call: LLMCall) -> None:
        """Into the ready queue — or held aside while its process is stopped."""
        if call.proc.state is State.STOPPED:
            call.held = True
            self.held.append(call)
        else:
            self.host.set_state(call.proc, State.READY)
            self.sizes.queued(call)
            self.policy.push(call)
            if self.keeper is not None and call.pid in self.keeper.by_pid:
                self._returning.append(call)

    def set_policy(self, policy: Policy) -> None:
        """Switch policy live: every queued call moves to the new queue, none is lost."""
        old, self.policy = self.policy, policy
        policy.wake = self._kick
        policy.sizes = self.sizes
        for call in list(old):
            policy.push(call)
        for call in self.running.values():
            policy.on_dispatch(call)
        self.host.publish(SchedulerChanged(policy=policy.name, slots=self.slots))
        self._kick()

    def set_slots(self, slots: int) -> None:
        """Change P live; calls above a lowered P give their slot back at the next token."""
        if slots < 1:
            raise ValueError("slots must be at least 1")
        if self._live_slots is not None:
            raise ValueError(f"the {self.backend.name} backend's slots are its endpoints' ({self.slots}); "
                             "change them on the endpoints")
        self.slots = slots
        if self.keeper is not None:
            self.keeper.drop_above(slots)
        for slot, call in list(self.running.items()):
            if slot >= slots:
                call.preempt = call.preempt or PreemptReason.SLOTS
        self.host.publish(SchedulerChanged(policy=self.policy.name, slots=slots))
        self._kick()

    def queue(self) -> list[LLMCall]:
        return list(self.policy)

    @property
    def policy_name(self) -> str:
        return self.policy.name

    @property
    def queued(self) -> int:
        """How many calls wait in the ready queue."""
        return len(self.policy)

    def describe(self) -> dict[str, Any]:
        """The policy's name and parameters, and P."""
        return self.policy.describe() | {"slots": self.slots}

    def exited(self, pid: int) -> None:
        """Process `pid` is gone: cancel its calls, forget its scheduling state (attained tokens, answer sizes)."""
        self.cancel_pid(pid)
        self.policy.forget(pid)
        self.sizes.exited(pid)
        self._last.pop(pid, None)
        if self.keeper is not None:
            self.keeper.release(pid, wake=self._kick)

    def _free_slots(self) -> list[int]:
        """Slots a queued call may take now: not running a call, not kept for a process in its tool call."""
        limit = self.slots
        if self._live_slots is not None:
            limit = min(limit, self._live_slots())
            if len(self.running) >= limit:
                return []
        keeper = self.keeper
        return [s for s in range(limit) if s not in self.running and (keeper is None or keeper.free(s))]

    def _next(self, free: list[int]) -> tuple[LLMCall, int] | None:
        """The call to serve now, and its slot: the policy's first, unless one of the next few finds its prompt in a
        free slot of a prompt-caching server and the first does not (it saves reading it all again: often seconds
        of the server's one loop, which every answer under way waits for). A call is passed over at most
        AFFINITY_BYPASS times, so none starves. Where the kernel names the slot, it is the one holding the most
        of the call's prompt."""
        call = self._affine(free)
        if call is None:
            return None
        return call, (self.keeper.choose(call.request, free) if self.keeper is not None else free[0])

    def _affine(self, free: list[int]) -> LLMCall | None:
        if not self.affinity or self._cache is None or len(self.policy) < 2:
            return self.policy.pop()
        candidates = self.policy.first(AFFINITY_LOOK)
        head = candidates[0]
        if head.bypassed >= AFFINITY_BYPASS:
            return self.policy.pop()
        keeper = self.keeper
        cached = [keeper.cached(c.request, free) if keeper is not None else self._cache.cached_tokens(c.request)
                  for c in candidates]
        best = max(range(len(candidates)), key=lambda i: (cached[i], -i))
        if cached[best] - cached[0] < AFFINITY_MIN_TOKENS:
            return self.policy.pop()
        for passed in candidates[:best]:
            passed.bypassed += 1
        self.policy.remove(candidates[best])
        self.affinity_picks += 1
        return candidates[best]

    def _kick(self) -> None:
        while self._returning:  # agents back from a tool, to the slot kept for them
            call = self._returning.pop()
            slot = self.keeper.take(call.pid) if self.keeper is not None else None
            if slot is None or call.cancelled or call.held or not self.policy.remove(call):
                continue
            self._start(call, slot)
        while free := self._free_slots():
            t0 = time.perf_counter()
            picked = self._next(free)
            if picked is None:
                return
            call, slot = picked
            if call.cancelled:
                continue
            self._start(call, slot, t0)

    def _start(self, call: LLMCall, slot: int, t0: float | None = None) -> None:
        t0 = time.perf_counter() if t0 is None else t0
        call.slot = slot
        call.segment_tokens = 0
        call.segment_started = clock.now()
        self.running[slot] = call
        if self.keeper is not None:
            self.keeper.started(call, slot)
            call.read_tps = self.keeper.read_tps
        self.policy.on_dispatch(call)
        call.overhead_s += time.perf_counter() - t0
        self._tasks[call.sid] = asyncio.get_running_loop().create_task(
            self._serve(call), name=f"llm-{call.pid}-{call.sid}"
        )

    # -- serving ---------------------------------------------------------------------------
    async def _serve(self, call: LLMCall) -> None:
        host, proc = self.host, call.proc
        now = clock.now()
        call.dispatched_at = call.dispatched_at or now
        call.wait_s += now - call.queued_at
        host.publish(SyscallDispatched(pid=call.pid, sid=call.sid, slot=call.slot or 0))
        host.set_state(proc, State.WAITING, WaitReason.LLM)
        request = call.request.continued(call.raw, call.chunks)
        started = clock.monotonic()
        stream = None
        outcome: LLMResult | BaseException | None = None
        try:
            if self.keeper is not None and call.slot is not None:
                request = replace(request, slot=call.slot)
                await self.keeper.prepare(call, call.slot)  # swap another's conversation out, this one's in
            stream = self.backend.stream(request)
            async for chunk in stream:
                if call.cancelled:
                    return
                if call.preempt and not chunk.done:
                    break  # yield the slot at this token boundary; the token is not consumed
                call.tool_calls.extend(chunk.tool_calls)
                if chunk.done:
                    call.prompt_tokens = chunk.prompt_tokens
                    call.completion_tokens += chunk.completion_tokens
                    outcome = LLMResult(call.raw.strip(), call.prompt_tokens, call.completion_tokens,
                                        chunk.finish_reason or "stop", tool_calls=tuple(call.tool_calls))
                    break
                if not chunk.text:
                    continue
                if call.segment_tokens == 0 and self.keeper is not None:
                    self.keeper.first_token(call)
                if call.first_token_at is None:
                    call.first_token_at = clock.now()
                if proc.state is State.WAITING:
                    host.set_state(proc, State.RUNNING)
                self._on_text(call, chunk.text)
                if call.preempt:
                    break  # the policy wants the slot: give it back right after this token
            else:
                outcome = BackendError("the model stream ended without a final chunk")
        except BackendError as exc:
            outcome = exc
        except Exception as exc:  # a backend bug must fail this call, not the kernel
            outcome = BackendError(f"{self.backend.name} backend failed: {type(exc).__name__}: {exc}")
        finally:
            if stream is not None:
                await stream.aclose()
            call.service_s += clock.monotonic() - started
            slot = call.slot
            self._vacate(call)
        if call.cancelled:
            return  # cancel() did the bookkeeping
        t0 = time.perf_counter()
        if self.keeper is not None and slot is not None and not isinstance(outcome, BaseException):
            self.keeper.left_in(call, slot)  # answered or preempted: the slot holds its conversation
        if outcome is None:  # preempted at a token boundary
            call.completion_tokens += call.segment_tokens
            self._park(call)
            self.policy.on_done(call)  # after the requeue: its user never looked idle
        else:
            call.answered = not isinstance(outcome, BaseException)
            if call.answered:
                self.sizes.answered(call)
                self._last[call.pid] = replace(call.request, partial="", messages=[
                    *call.request.messages, {"role": "assistant", "content": call.raw}])
            self.policy.on_done(call)
            if isinstance(outcome, BaseException):
                if not self._back_off(call, outcome):
                    self._attempts.pop(call.sid, None)
                    host.finish_llm(call, error=explain(outcome, self.backend.model))
            else:
                self._attempts.pop(call.sid, None)
                if self.keeper is not None and self.keep_slots and slot is not None and slot < self.slots:
                    self.keeper.keep(call, slot, self._kick)
                host.finish_llm(call, result=outcome)
        call.overhead_s += time.perf_counter() - t0
        self._kick()

    def _on_text(self, call: LLMCall, text: str) -> None:
        call.chunks += 1
        call.segment_tokens += 1
        call.raw += text
        self.policy.on_token(call)
        if not call.preempt and self.policy.should_preempt(call) and self._needs_slot():
            call.preempt = PreemptReason.SLICE
        self.host.publish(TokenGenerated(pid=call.pid, sid=call.sid, text=text))
        if call.on_text is not None:
            call.on_text(text)
        if call.echo:
            shown = text if call.echoed else text.lstrip()  # the answer's leading blanks are not shown
            if shown:
                call.echoed = True
                self.host.emit_output(call.proc, shown)

    def _needs_slot(self) -> bool:
        """Whether a queued call still lacks a slot that a running call is already giving back.

        One waiting call takes one slot: without this, every running call that reached a token
        boundary would yield to the same queued call, and all but one would only be read again.
        """
        leaving = sum(1 for c in self.running.values() if c.preempt)
        return leaving < len(self.policy)

    def _vacate(self, call: LLMCall) -> bool:
        """Take a call out of its slot; True if it held one."""
        held = call.slot is not None and self.running.get(call.slot) is call
        if held:
            del self.running[call.slot]
        call.slot = None
        self._tasks.pop(call.sid, None)
        return held

    def _park(self, call: LLMCall) -> None:
        """A preempted call keeps its partial output and waits to be requeued."""
        reason, call.preempt = call.preempt or PreemptReason.PREEMPTED, None
        self.preemptions += 1
        call.proc.ctx_switches += 1
        cause = reason if reason in tuple(PreemptReason) else PreemptReason.PREEMPTED
        self.host.publish(
            SyscallPreempted(pid=call.pid, sid=call.sid, reason=reason, partial_tokens=call.chunks, cause=cause)
        )
        call.queued_at = clock.now()
        self._enqueue(call)

    def holds(self, pid: int) -> str | None:
        """Where the model holds process `pid`'s conversation now, as a person reads it (None: nothing known)."""
        keeper = self.keeper
        if keeper is not None and pid in keeper.by_pid:
            slot = keeper.by_pid[pid]
            left = max(0.0, keeper.kept[slot].until - clock.now())
            return f"slot {slot}, kept for it while it runs a tool ({left:.1f} s left)"
        last = self._last.get(pid)
        if last is None or not isinstance(self.backend, HoldsPrompts):
            return None
        tokens, where = self.backend.held_tokens(last)
        if keeper is not None and (state := keeper.saved.get(pid)) is not None and state.tokens > tokens:
            return f"{state.tokens} tokens of its conversation saved on the server, out of any slot"
        if not where:
            return None  # this backend keeps no prompts
        return f"{tokens} tokens of its conversation in {where}" if tokens else "none of its conversation"

    # -- retries ---------------------------------------------------------------------------
    def _back_off(self, call: LLMCall, error: BaseException) -> bool:
        """Try a transient failure again later, without a slot; False when it must fail now."""
        attempt = self._attempts.get(call.sid, 0) + 1
        if attempt > self.retry.retries or not is_transient(error):
            return False
        self._attempts[call.sid] = attempt
        self.retried += 1
        call.preempt = None  # it has left its slot already; a STOP is seen when it comes due
        call.completion_tokens += call.segment_tokens  # what it produced is kept: it continues from there
        delay = self.retry.delay(attempt)
        error = explain(error, self.backend.model)
        self.host.set_state(call.proc, State.WAITING, WaitReason.LLM)
        reason = f"retry: {error} (attempt {attempt} of {self.retry.retries} in {delay:.1f}s)"
        log.info("pid %d: %s", call.pid, reason)
        self.host.publish(SyscallPreempted(pid=call.pid, sid=call.sid, reason=reason, partial_tokens=call.chunks,
                                           cause=PreemptReason.RETRY))
        self.backing_off[call.sid] = call
        self._timers[call.sid] = asyncio.get_running_loop().call_later(delay, self._retry_due, call)
        return True

    def _retry_due(self, call: LLMCall) -> None:
        self._timers.pop(call.sid, None)
        if self.backing_off.pop(call.sid, None) is None or call.cancelled:
            return
        call.queued_at = clock.now()
        self._enqueue(call)
        self._kick()

    def _forget_retry(self, call: LLMCall) -> None:
        self.backing_off.pop(call.sid, None)
        self._attempts.pop(call.sid, None)
        if (timer := self._timers.pop(call.sid, None)) is not None:
            timer.cancel()

    # -- signals ---------------------------------------------------------------------------
    def calls_of(self, pid: int) -> list[LLMCall]:
        calls = [c for c in self.running.values() if c.pid == pid]
        calls += [c for c in self.policy if c.pid == pid]
        calls += [c for c in self.held if c.pid == pid]
        calls += [c for c in self.backing_off.values() if c.pid == pid]
        return calls

    def hold(self, pid: int) -> None:
        """STOP: queued calls are held; a running call yields its slot at the next token; a kept slot is let go."""
        if self.keeper is not None:
            self.keeper.release(pid, wake=self._kick)
        for call in self.calls_of(pid):
            if call.slot is not None:
                call.preempt = PreemptReason.STOPPED
            elif not call.held and self.policy.remove(call):
                call.held = True
                self.held.append(call)

    def release(self, pid: int) -> None:
        """CONT: held calls go back to the ready queue, keeping their place."""
        for call in [c for c in self.held if c.pid == pid]:
            self.held.remove(call)
            call.held = False
            call.queued_at = clock.now()
            self.host.set_state(call.proc, State.READY)
            self.sizes.queued(call)
            self.policy.push(call)
        for call in self.running.values():
            if call.pid == pid and call.preempt == PreemptReason.STOPPED:
                call.preempt = None
        self._kick()

    def cancel(self, call: LLMCall) -> None:
        """Drop a call wherever it is; a running one stops at once and emits no further token."""
        if call.cancelled:
            return
        self.host.account_cancelled(call)
        call.cancelled = True
        self._forget_retry(call)
        self.policy.remove(call)
        if call in self.held:
            self.held.remove(call)
        task = self._tasks.get(call.sid)
        if task is not None:
            task.cancel()
        if not call.future.done():  # whoever waits for it learns at once (a client of the HTTP front, too)
            call.future.cancel()
        if self._vacate(call):
            self.policy.on_done(call)
            self._kick()

    def requeue_pid(self, pid: int) -> None:
        """Queued calls of `pid` take a new place (after a renice, say), keeping their arrival."""
        for call in [c for c in self.policy if c.pid == pid]:
            self.policy.remove(call)
            self.policy.push(call)

    def cancel_pid(self, pid: int) -> None:
        for call in self.calls_of(pid):
            self.cancel(call)

    async def drain(self) -> None:
        for call in list(self.backing_off.values()):
            self._forget_retry(call)
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
