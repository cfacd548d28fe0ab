"""priority — lower nice first, with aging so nothing starves.

A waiting call's effective nice falls by one for every `aging` seconds it waits,
so even nice 19 eventually overtakes a stream of nice −20 arrivals. A running call
is preempted when a queued one is better by at least one step and the running one
has had `quantum` tokens, and only once it has run long enough to pay for the switch (`worth_switching`):
with equal nices, aging alone would otherwise take turns every few tokens, and each turn reads a long
conversation again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import clock
from kernel.scheduler.policy import Policy, worth_switching

if TYPE_CHECKING:
    from kernel.syscall import LLMCall


class PriorityPolicy(Policy):
    name = "priority"
    params = ("aging", "quantum")
    aging = 1.0  # seconds of waiting worth one nice step
    quantum = 16  # tokens a call keeps its slot before it can be preempted

    def key(self, call: LLMCall) -> float:
        # effective nice = nice - waited/aging; ordering by nice*aging + queued_at is the same, and static
        return call.proc.nice * self.aging + call.queued_at

    def effective(self, call: LLMCall, now: float | None = None) -> float:
        now = clock.now() if now is None else now
        return call.proc.nice - (now - call.queued_at) / self.aging

    def should_preempt(self, call: LLMCall) -> bool:
        if call.segment_tokens < self.quantum:
            return False
        head = self.peek()
        return head is not None and self.effective(head) <= call.proc.nice - 1 and worth_switching(call)

    def reason(self, call: LLMCall) -> str:
        return f"nice {call.proc.nice}, effective {self.effective(call):.1f} after aging"
