"""Permission requests: a tool call that needs a person's decision waits here for an answer.

`await broker.request(...)` publishes `PermissionRequested` and waits for `broker.answer(id, decision)`
from user space (the monitor's modal, the REPL). No answer in time means deny; either way a
`PermissionDecided` event says what was decided and by whom. A front end that can ask a person
`attach()`es while it can; with nobody attached (`aios -c`, scripts, CI) the kernel does not ask.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kernel.events import EventBus, PermissionDecided, PermissionRequested
from kernel.sanitize import strip_controls

DECISIONS = ("once", "session", "always", "deny")
DEFAULT_TIMEOUT = 30.0


@dataclass
class _Pending:
    event: PermissionRequested
    future: asyncio.Future[str]


class PermissionBroker:
    """Waits for answers to permission requests on the kernel's loop; no answer in time → deny."""

    def __init__(self, bus: EventBus, clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.clock = clock
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self.answerers = 0  # front ends that can ask a person right now
        self.screen: object | None = None  # a full-screen front end (the monitor) that asks while it shows

    def attach(self) -> Callable[[], None]:
        """A front end that can ask a person is here; call the returned function when it goes."""
        self.answerers += 1
        gone = False

        def detach() -> None:
            nonlocal gone
            if not gone:
                gone = True
                self.answerers -= 1

        return detach

    def pending(self) -> list[PermissionRequested]:
        """Requests still waiting for an answer, oldest first."""
        return [p.event for p in self._pending.values()]

    async def request(self, pid: int, user: str, program: str, tool: str, args: dict[str, Any],
                      timeout: float = DEFAULT_TIMEOUT) -> str:
        """Ask for a decision on `tool(args)` by process `pid`; returns once|session|always|deny."""
        decision, _by = await self.decide(pid, user, program, tool, args, timeout)
        return decision

    async def decide(self, pid: int, user: str, program: str, tool: str, args: dict[str, Any],
                     timeout: float = DEFAULT_TIMEOUT, workspace: str = "", rule: str = "") -> tuple[str, str]:
        """As `request`, also saying who decided: "user", "timeout"; `workspace` and `rule` are shown."""
        rid = next(self._ids)
        safe_args = {strip_controls(str(k)): strip_controls(str(v)) for k, v in args.items()}
        event = PermissionRequested(
            request_id=rid, pid=pid, user=user, program=program, tool=strip_controls(tool), args=safe_args,
            timeout=timeout, deadline=self.clock() + timeout, ts=self.clock(),
            workspace=strip_controls(workspace), rule=strip_controls(rule),
        )
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(event, future)
        self.bus.publish(event)
        by = "user"
        try:
            decision = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            decision, by = "deny", "timeout"
        except asyncio.CancelledError:
            self._pending.pop(rid, None)
            self.bus.publish(PermissionDecided(request_id=rid, pid=pid, tool=event.tool, decision="deny",
                                               by="cancelled", ts=self.clock()))
            raise
        self._pending.pop(rid, None)
        self.bus.publish(PermissionDecided(request_id=rid, pid=pid, tool=event.tool, decision=decision, by=by,
                                           ts=self.clock()))
        return decision, by

    def answer(self, request_id: int, decision: str) -> bool:
        """Answer an open request; False when it is no longer waiting (answered, timed out)."""
        if decision not in DECISIONS:
            raise ValueError(f"{decision!r}: a decision is one of {', '.join(DECISIONS)}")
        pending = self._pending.get(request_id)
        if pending is None or pending.future.done():
            return False
        pending.future.set_result(decision)
        return True
