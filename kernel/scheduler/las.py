"""las — least attained service first (Autellix-style).

Attained service is the tokens a process has had from the model over all its calls
(`scope="process"`, the default), or the tokens the current call has had
(`scope="call"`, closer to shortest-remaining-first when agents make many calls).
Levels double (`base`, 2·base, 4·base, …; 128 by default), so a short agent always goes before one
that has already had a lot, and a long one is preempted at a token boundary when a
call from a lower level waits. Equal levels are served in arrival order, so long
agents still progress. A call gives its slot only once it has run long enough to pay for the switch
(`worth_switching`): on a prompt-caching server, reading its conversation again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.scheduler.policy import Policy, worth_switching

if TYPE_CHECKING:
    from kernel.syscall import LLMCall


class LeastAttainedPolicy(Policy):
    name = "las"
    params = ("base", "quantum", "scope")
    base = 128  # tokens of level 0; measured with `aios bench` against 32 and 64: fewer, better switches
    quantum = 64  # tokens a call keeps its slot before it can be preempted
    scope = "process"

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.scope not in ("process", "call"):
            raise ValueError(f"las scope must be 'process' or 'call', not {self.scope!r}")
        self.attained: dict[int, int] = {}

    def level(self, tokens: int) -> int:
        level, bound = 0, self.base
        while tokens >= bound:
            level, bound = level + 1, bound * 2
        return level

    def service(self, call: LLMCall) -> int:
        return call.chunks if self.scope == "call" else self.attained.get(call.pid, 0)

    def key(self, call: LLMCall) -> tuple[int, int, int]:
        return (self.level(self.service(call)), self.level(self.attained.get(call.pid, 0)), call.seq)

    def on_token(self, call: LLMCall) -> None:
        self.attained[call.pid] = self.attained.get(call.pid, 0) + 1

    def forget(self, pid: int) -> None:
        self.attained.pop(pid, None)

    def should_preempt(self, call: LLMCall) -> bool:
        if call.segment_tokens < self.quantum:
            return False
        head = self.peek()
        return (head is not None and self.level(self.service(head)) < self.level(self.service(call))
                and worth_switching(call))

    def reason(self, call: LLMCall) -> str:
        tokens = self.service(call)
        return f"attained {tokens} tokens (level {self.level(tokens)}, per {self.scope})"
