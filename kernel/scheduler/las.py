"""las — least attained service first (Autellix-style, per process).

A process's attained service is the tokens it has had from the model over all its
calls. Levels double (`base`, 2·base, 4·base, …), so a short agent always goes
before one that has already had a lot, and a long one is preempted at a token
boundary when a call from a lower level waits. Equal levels are served in arrival
order, so long agents still progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.scheduler.policy import Policy

if TYPE_CHECKING:
    from kernel.syscall import LLMCall


class LeastAttainedPolicy(Policy):
    name = "las"
    params = ("base", "quantum")
    base = 32
    quantum = 8

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.attained: dict[int, int] = {}

    def level(self, tokens: int) -> int:
        level, bound = 0, self.base
        while tokens >= bound:
            level, bound = level + 1, bound * 2
        return level

    def key(self, call: LLMCall) -> tuple[int, int]:
        return (self.level(self.attained.get(call.pid, 0)), call.seq)

    def on_token(self, call: LLMCall) -> None:
        self.attained[call.pid] = self.attained.get(call.pid, 0) + 1

    def should_preempt(self, call: LLMCall) -> bool:
        if call.segment_tokens < self.quantum:
            return False
        head = self.peek()
        if head is None:
            return False
        return self.level(self.attained.get(head.pid, 0)) < self.level(self.attained.get(call.pid, 0))

    def reason(self, call: LLMCall) -> str:
        tokens = self.attained.get(call.pid, 0)
        return f"attained {tokens} tokens (level {self.level(tokens)})"
