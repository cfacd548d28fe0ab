"""Permission requests: a tool call that needs a person's decision waits here for an answer.

`await broker.request(...)` publishes `PermissionRequested` and waits for `broker.answer(id, decision)`
from user space (the monitor's modal, the REPL). No answer in time means deny; either way a
`PermissionDecided` event says what was decided and by whom. A front end that can ask a person
`attach()`es while it can and gets an `Answerer` handle; with nobody attached (`aios -c`, scripts, CI) the
kernel does not ask. An exclusive answerer (the monitor, whose dialog asks while it shows) has the turn
while it is attached; the others (the shell's inline prompt) wait for `changed()` and ask once they have it.
The broker holds no front end, only their handles.
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


class Answerer:
    """A front end's place at the broker. Call it (or `detach()`) when the front end goes."""

    def __init__(self, broker: PermissionBroker, exclusive: bool) -> None:
        self._broker = broker
        self.exclusive = exclusive
        self.attached = True

    @property
    def has_turn(self) -> bool:
        """Whether this front end should ask now: no other exclusive answerer is attached after it."""
        latest = self._broker.exclusive
        return self.attached and (latest is None or latest is self)

    def detach(self) -> None:
        if self.attached:
            self.attached = False
            self._broker._gone(self)

    __call__ = detach


class PermissionBroker:
    """Waits for answers to permission requests on the kernel's loop; no answer in time → deny."""

    def __init__(self, bus: EventBus, clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.clock = clock
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._answerers: list[Answerer] = []
        self._change = asyncio.Event()

    @property
    def answerers(self) -> int:
        """Front ends that can ask a person right now."""
        return len(self._answerers)

    @property
    def exclusive(self) -> Answerer | None:
        """The exclusive answerer that came last, which has the turn; None when there is none."""
        return next((a for a in reversed(self._answerers) if a.exclusive), None)

    def attach(self, exclusive: bool = False) -> Answerer:
        """A front end that can ask a person is here; `exclusive` when it asks in place of the others."""
        answerer = Answerer(self, exclusive)
        self._answerers.append(answerer)
        self._changed()
        return answerer

    def _gone(self, answerer: Answerer) -> None:
        self._answerers.remove(answerer)
        self._changed()

    def _changed(self) -> None:
        change, self._change = self._change, asyncio.Event()
        change.set()

    async def changed(self) -> None:
        """Return at the next change: a front end came or went, or a request was decided."""
        await self._change.wait()

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
            self._changed()
            raise
        self._pending.pop(rid, None)
        self.bus.publish(PermissionDecided(request_id=rid, pid=pid, tool=event.tool, decision=decision, by=by,
                                           ts=self.clock()))
        self._changed()
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
