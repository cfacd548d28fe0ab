"""rr — round robin: calls take turns in slices of `slice` tokens.

A call that used up its slice while others wait goes to the back of the queue,
keeping its partial answer; it continues from there on its next turn. A turn lasts at least until it has paid
for the switch (`worth_switching`): a call whose resumes cost seconds (a long context read again) is not made to
give its slot back every `slice` tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.scheduler.policy import Policy, worth_switching

if TYPE_CHECKING:
    from kernel.syscall import LLMCall


class RoundRobinPolicy(Policy):
    name = "rr"
    params = ("slice",)
    slice = 32

    def key(self, call: LLMCall) -> float:
        return call.queued_at  # requeued calls go to the back

    def should_preempt(self, call: LLMCall) -> bool:
        return call.segment_tokens >= self.slice and len(self) > 0 and worth_switching(call)

    def reason(self, call: LLMCall) -> str:
        return f"turn by arrival, slice {self.slice} tokens, {call.chunks} done"
