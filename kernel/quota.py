"""Admission limits and token quotas: overload gets a clear refusal, not unbounded memory.

- at most `max_procs` live processes per user (`spawn` refuses the next one);
- at most `max_queued` model calls waiting in the ready queue (the next syscall fails);
- per-user tokens per minute (prompt + completion, over a sliding 60 s window): a process whose user
  is over quota waits as `WAITING(quota)` before its model call joins the queue, until the window
  has room again. 0 means no quota.

Limits come from the environment (`AIOS_MAX_PROCS`, `AIOS_MAX_QUEUED`, `AIOS_TOKENS_PER_MINUTE`) and
can be changed live by an admin (`quota set USER N`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kernel.settings import whole

WINDOW = 60.0


@dataclass
class Quotas:
    max_procs: int = field(default_factory=lambda: whole("AIOS_MAX_PROCS", 1000))
    max_queued: int = field(default_factory=lambda: whole("AIOS_MAX_QUEUED", 20000))
    tokens_per_minute: int = field(default_factory=lambda: whole("AIOS_TOKENS_PER_MINUTE", 0))
    per_user: dict[str, int] = field(default_factory=dict)  # user → tokens per minute, beats the default
    clock: Callable[[], float] = time.monotonic
    _spent: dict[str, deque[tuple[float, int]]] = field(default_factory=dict, repr=False)
    _total: dict[str, int] = field(default_factory=dict, repr=False)  # the sum of each user's window

    def limit(self, user: str) -> int:
        return self.per_user.get(user, self.tokens_per_minute)

    def used(self, user: str) -> int:
        """Tokens `user` spent in the last minute."""
        spent = self._spent.get(user)
        if not spent:
            return 0
        cutoff = self.clock() - WINDOW
        while spent and spent[0][0] <= cutoff:
            self._total[user] -= spent.popleft()[1]
        if not spent:
            del self._spent[user], self._total[user]
            return 0
        return self._total[user]

    def charge(self, user: str, tokens: int) -> None:
        if tokens > 0:
            self._spent.setdefault(user, deque()).append((self.clock(), tokens))
            self._total[user] = self._total.get(user, 0) + tokens
            self.used(user)  # drop what left the window, so a user without a quota costs no memory

    def over(self, user: str) -> bool:
        limit = self.limit(user)
        return limit > 0 and self.used(user) >= limit

    def retry_in(self, user: str) -> float:
        """Seconds until `user` is under quota again (0 when already under)."""
        limit = self.limit(user)
        if limit <= 0:
            return 0.0
        spent = self._spent.get(user) or deque()
        total = self.used(user)
        for ts, n in spent:
            if total < limit:
                break
            total -= n
            wait = ts + WINDOW - self.clock()
            if total < limit:
                return max(0.0, wait)
        return 0.0

    async def admit(self, user: str) -> None:
        """Wait until `user` is under quota."""
        while self.over(user):
            await asyncio.sleep(min(1.0, max(0.05, self.retry_in(user))))  # quotas may change meanwhile

    def describe(self, user: str) -> str:
        """`1.2k/5k` tokens in the last minute, or `-` without a quota."""
        limit = self.limit(user)
        return f"{_short(self.used(user))}/{_short(limit)}" if limit > 0 else "-"


def _short(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)
