"""fair — token-weighted fair share across users, then across each user's processes.

Every token a call receives adds to its user's and its process's virtual time,
scaled by the process's weight (CFS weights from nice: nice 0 = 1024, each step
about 1.25×). The user with the least virtual time goes next, then that user's
process with the least. A user who arrives (or returns) starts at the current
minimum, as in VTC, so idleness banks no credit; a running call is preempted when
its user is ahead of the least-served waiting user by more than `slice` tokens,
which bounds the service gap between two backlogged users — once it has run long
enough to pay for the switch (`worth_switching`: a process whose resumes cost seconds,
a long context read again, is not preempted every few tokens).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from kernel.scheduler.policy import Policy, worth_switching

if TYPE_CHECKING:
    from kernel.syscall import LLMCall

NICE_0_WEIGHT = 1024


def weight(nice: int) -> float:
    """CFS's weight curve: 1024 at nice 0, ×1.25 per step towards −20."""
    return NICE_0_WEIGHT / (1.25**nice)


class FairPolicy(Policy):
    name = "fair"
    params = ("slice",)
    slice = 32

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.user_vt: dict[str, float] = defaultdict(float)
        self.proc_vt: dict[int, float] = defaultdict(float)
        self._by_user: dict[str, Policy] = {}
        self._running: dict[int, str] = {}  # sid → user of calls holding a slot

    def _floor(self, vts: dict[Any, float], keys: list[Any]) -> float:
        return min((vts[k] for k in keys), default=0.0)

    def push(self, call: LLMCall) -> None:
        user, queue = call.proc.user, self._by_user.get(call.proc.user)
        active = {u for u, q in self._by_user.items() if len(q)} | set(self._running.values())
        if user not in active:  # an arriving (or returning) user banks no credit
            self.user_vt[user] = max(self.user_vt[user], self._floor(self.user_vt, list(active)))
        if queue is None:
            queue = self._by_user[user] = Policy()
            queue.key = lambda c: (self.proc_vt[c.pid], c.seq)  # type: ignore[method-assign]
        queue.push(call)
        self._entries[call.sid] = [None, None, call]

    def pop(self) -> LLMCall | None:
        users = [u for u, q in self._by_user.items() if len(q)]
        if not users:
            return None
        user = min(users, key=lambda u: (self.user_vt[u], u))
        call = self._by_user[user].pop()
        if call is not None:
            self._entries.pop(call.sid, None)
        return call

    def peek(self) -> LLMCall | None:
        users = [u for u, q in self._by_user.items() if len(q)]
        if not users:
            return None
        return self._by_user[min(users, key=lambda u: (self.user_vt[u], u))].peek()

    def remove(self, call: LLMCall) -> bool:
        self._entries.pop(call.sid, None)
        queue = self._by_user.get(call.proc.user)
        return queue.remove(call) if queue is not None else False

    def __iter__(self):  # noqa: ANN204 - the order pop would give now
        snapshot = {u: list(q) for u, q in self._by_user.items()}
        vt = dict(self.user_vt)
        out = []
        while any(snapshot.values()):
            user = min((u for u, calls in snapshot.items() if calls), key=lambda u: (vt[u], u))
            out.append(snapshot[user].pop(0))
            vt[user] += self.slice
        return iter(out)

    def first(self, n: int) -> list[LLMCall]:
        return list(itertools.islice(iter(self), n))

    def on_dispatch(self, call: LLMCall) -> None:
        self._running[call.sid] = call.proc.user

    def on_done(self, call: LLMCall) -> None:
        self._running.pop(call.sid, None)

    def forget(self, pid: int) -> None:
        self.proc_vt.pop(pid, None)

    def on_token(self, call: LLMCall) -> None:
        cost = NICE_0_WEIGHT / weight(call.proc.nice)
        self.user_vt[call.proc.user] += cost
        self.proc_vt[call.pid] += cost

    def should_preempt(self, call: LLMCall) -> bool:
        head = self.peek()
        if head is None or head.proc.user == call.proc.user:
            return False
        if self.user_vt[call.proc.user] - self.user_vt[head.proc.user] <= self.slice:
            return False
        return worth_switching(call)

    def reason(self, call: LLMCall) -> str:
        return f"user {call.proc.user} at {self.user_vt[call.proc.user]:.0f}, process at {self.proc_vt[call.pid]:.0f}"
