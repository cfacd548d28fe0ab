"""srpt — shortest remaining first, with aging.

A call's size is what it may still produce: its `max_tokens` less the tokens it has had. An agent
usually asks for more than it uses, so once a process has answered, twice its average answer is
the estimate when that is smaller (an answer that outgrows the estimate falls back to `max_tokens`).
Shorter calls go first, so a quick question never waits behind an essay; and waiting counts:
a call that has waited t seconds is treated as `age` × t tokens shorter, so a long call is never
starved. Both fit one key fixed when the call is queued, `submitted + remaining / age`, and
the queue stays a heap. `age` is 25 tokens a second, about one slot's decode speed on a small local
model, so a call waits at most about its own service time before it goes ahead of fresh short calls;
on the benchmark's busy traces it gave lower mean turnaround than 50 or 100 (seeds 1 and 3 of
`aios bench --agents 1000 --slots 8`: 0.58× and 0.59× of direct calls, against 0.66× and 0.61× at
100), at the price of a longer tail for long agents.

It does not preempt by default: where a switch makes the backend read prompt and partial answer
again, taking the slot from a long call cost more than it saved (`aios bench --agents 1000 --slots 8`,
seeds 0–19: with R = 4 mean turnaround 0.93× of direct calls at the median, against 0.76× without).
`age=auto` follows the backend instead: the tokens per second one slot has been giving (a moving average of the
answered calls' own rates), so that a second of waiting weighs as much as a second of service on any model.
With `ratio` R > 0, a running call gives its slot back at a token boundary to a call at least R
times shorter, after `quantum` tokens; the slot comes from the running call with the most left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kernel.scheduler.policy import Policy

if TYPE_CHECKING:
    from kernel.syscall import LLMCall


class ShortestRemainingPolicy(Policy):
    name = "srpt"
    params = ("age", "quantum", "ratio", "headroom", "scope")
    age = 25.0  # tokens a call's estimate shrinks by per second of waiting
    quantum = 32  # tokens a call keeps its slot before it can be preempted
    ratio = 0.0  # a running call yields to a call this many times shorter (0: never preempts)
    headroom = 2.0  # a call's size is this many times its learned estimate (answers vary), at most max_tokens
    scope = "call"  # "agent": add the work its agent's later calls will ask, as learned (agent-level priority)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.measured = self.age == "auto"  # age by the backend's own tokens per second per slot, as measured
        if self.measured:
            self.age = 25.0  # until a call has been answered
        elif not isinstance(self.age, (int, float)) or self.age <= 0:
            raise ValueError("srpt age must be above 0 (tokens per second of waiting) or auto")
        if self.scope not in ("call", "agent"):
            raise ValueError(f"srpt scope must be 'call' or 'agent', not {self.scope!r}")
        if not isinstance(self.headroom, (int, float)) or self.headroom <= 0:
            raise ValueError("srpt headroom must be above 0")
        self.answers: dict[int, tuple[int, int]] = {}  # live pid -> (calls answered, tokens in them)
        self.running: dict[int, LLMCall] = {}  # sid -> a call holding a slot

    def remaining(self, call: LLMCall) -> int:
        limit = max(1, call.request.max_tokens)
        learned = call.estimate
        if learned is None:  # nothing learned for its program (or its answers run to max_tokens, or no
            # dispatcher gave an estimate): the process's own answers, as before sizes were learned
            calls, tokens = self.answers.get(call.pid, (0, 0))
            learned = tokens / calls if calls else None
        if learned is not None and call.chunks < self.headroom * learned:
            limit = min(limit, round(self.headroom * learned))
        left = max(1, limit - call.chunks)
        if self.scope == "agent" and self.sizes is not None:
            left += round(self.sizes.work_left(call.proc))
        return left

    def key(self, call: LLMCall) -> float:
        return call.submitted_at + self.remaining(call) / self.age

    def on_dispatch(self, call: LLMCall) -> None:
        self.running[call.sid] = call

    def on_done(self, call: LLMCall) -> None:
        self.running.pop(call.sid, None)
        if not call.answered:
            return  # preempted, held while stopped, killed, or failed (perhaps to be tried again): not an answer
        calls, tokens = self.answers.get(call.pid, (0, 0))
        self.answers[call.pid] = (calls + 1, tokens + call.chunks)
        if self.measured and call.service_s > 0 and call.chunks >= 8:  # one slot's rate, as this call got it
            self.age = 0.9 * self.age + 0.1 * (call.chunks / call.service_s)

    def forget(self, pid: int) -> None:
        self.answers.pop(pid, None)

    def should_preempt(self, call: LLMCall) -> bool:
        if self.ratio <= 0 or call.segment_tokens < self.quantum:
            return False
        head = self.peek()
        left = self.remaining(call)
        if head is None or self.remaining(head) * self.ratio > left:
            return False
        # the slot goes from the running call with the most left, not from whichever reached a token first
        return not any(other.sid != call.sid and not other.preempt and other.segment_tokens >= self.quantum
                       and self.remaining(other) > left for other in self.running.values())

    def reason(self, call: LLMCall) -> str:
        return f"about {self.remaining(call)} tokens left (waiting counts {self.age:g}/s)"
