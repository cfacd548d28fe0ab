"""Typed kernel events and the bus that carries them to storage and user space.

The kernel publishes; the shell, the monitor and the storage writer subscribe.
Nobody polls kernel internals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from kernel import clock


class Decision(StrEnum):
    """What access control made of a tool call: run it, refuse it, or it could not be decided (no such tool,
    invalid arguments)."""

    ALLOW = "allow"
    DENY = "deny"
    ERROR = "error"


class PreemptReason(StrEnum):
    """Why a call left its slot before it was done (`SyscallPreempted.cause`)."""

    SLICE = "slice"  # its policy's turn is over and another call waits
    SLOTS = "slots"  # P was lowered below its slot
    STOPPED = "stopped"  # its process got STOP
    PREEMPTED = "preempted"  # any other reason
    RETRY = "retry"  # it failed for a passing reason and will be tried again: not a switch


class WaitReason(StrEnum):
    """What a WAITING process waits for (`ps`: WAITING(llm))."""

    LLM = "llm"
    TOOL = "tool"
    PERMISSION = "permission"
    QUOTA = "quota"
    CHILD = "child"


@dataclass(frozen=True)
class Event:
    """Base of every kernel event; `ts` is wall-clock seconds."""

    ts: float = field(default_factory=clock.now, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """The fields by name, as stored (a shallow copy: `asdict`'s deep copy cost ~80 µs an event)."""
        out: dict[str, Any] = {"type": self.kind}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.copy() if isinstance(value, (dict, list)) else value
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Event | None:
        """The event `to_dict` made (as stored); None for a type this kernel does not know or fields that do
        not fit it (an event stored by another version)."""
        cls = _kinds().get(str(data.get("type")))
        if cls is None:
            return None
        try:
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except TypeError:
            return None


def kinds() -> dict[str, type[Event]]:
    """Every event type this kernel publishes, by name."""
    return dict(_kinds())


def _kinds() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    todo = [Event]
    while todo:
        for sub in todo.pop().__subclasses__():
            found[sub.__name__] = sub
            todo.append(sub)
    return found


@dataclass(frozen=True)
class ProcessSpawned(Event):
    pid: int
    ppid: int
    user: str
    program: str
    argv: tuple[str, ...]
    nice: int


@dataclass(frozen=True)
class ProcessStateChanged(Event):
    pid: int
    old: str
    new: str


@dataclass(frozen=True)
class ProcessExited(Event):
    pid: int
    status: str
    exit_code: int
    signal: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class SignalDelivered(Event):
    pid: int
    signal: int
    name: str
    sender: str


@dataclass(frozen=True)
class ProcessReniced(Event):
    pid: int
    old: int
    new: int


@dataclass(frozen=True)
class ProcessOutput(Event):
    """Text a process wrote to its standard output (agent answers, messages)."""

    pid: int
    text: str


@dataclass(frozen=True)
class SyscallQueued(Event):
    pid: int
    sid: int
    call: str


@dataclass(frozen=True)
class SyscallDispatched(Event):
    pid: int
    sid: int
    slot: int


@dataclass(frozen=True)
class SyscallPreempted(Event):
    pid: int
    sid: int
    reason: str  # as a person reads it ("retry: the server closed the connection (attempt 1 of 3 in 0.5s)")
    partial_tokens: int
    cause: str = PreemptReason.PREEMPTED  # a PreemptReason (`kind` is the event type's name)


@dataclass(frozen=True)
class TokenGenerated(Event):
    pid: int
    sid: int
    text: str


@dataclass(frozen=True)
class SyscallDone(Event):
    pid: int
    sid: int
    call: str
    ok: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wait_s: float = 0.0
    service_s: float = 0.0
    error: str | None = None
    overhead_s: float = 0.0  # kernel time on this call outside the backend (queueing, events, storage)


@dataclass(frozen=True)
class ToolCalled(Event):
    """A process asked for a tool (before access control decides); arguments redacted and cut short."""

    pid: int
    sid: int
    tool: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ToolCallDecided(Event):
    """Access control's decision on the tool call `(pid, sid)`, before it runs: `by` says who decided as the audit
    log has it (`policy`, `grant:session`, `user:once`, `timeout`, `no terminal`, `kernel`), `reason` why."""

    pid: int
    sid: int
    tool: str
    decision: Decision
    by: str
    reason: str = ""

    @property
    def asked(self) -> bool:
        """Whether a person was asked (or the question timed out)."""
        return self.by.startswith("user") or self.by in ("timeout", "cancelled")


@dataclass(frozen=True)
class MessageLogged(Event):
    """One turn of a process's conversation with the model."""

    pid: int
    role: str
    content: str


@dataclass(frozen=True)
class ContextCompacted(Event):
    """A process's context neared the model's window: older turns were dropped (and marked) or cut.

    `how` is `dropped`, `cut` or `dropped+cut`; tokens are as the backend's tokenizer counts them."""

    pid: int
    before_tokens: int
    after_tokens: int
    dropped_turns: int
    how: str


@dataclass(frozen=True)
class ContextSwitched(Event):
    """A call that left its slot (preempted, stopped) produced again: what resuming it cost.

    `tokens` is what the model had to read again (prompt + partial answer); `resume_s` the time from
    its new slot to its first new token; `cost_s` that less the call's usual time per token."""

    pid: int
    sid: int
    reason: str
    tokens: int
    resume_s: float
    cost_s: float


@dataclass(frozen=True)
class SchedulerChanged(Event):
    policy: str
    slots: int


E = TypeVar("E", bound=Event)
Handler = Callable[[Event], None]


class Subscription:
    """An async iterator over events, fed by the bus; bounded, drops the oldest when full."""

    def __init__(self, bus: EventBus, types: tuple[type[Event], ...], maxsize: int) -> None:
        self._bus = bus
        self.types = types
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if self.types and not isinstance(event, self.types):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._subs.pop(self, None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Synchronous publish, asynchronous or callback delivery.

    `publish` never blocks and never raises because of a subscriber: a failing
    handler is counted in `handler_errors`, reported (the kernel's log: `dmesg`), and the others still run.
    """

    def __init__(self, report: Callable[[Handler, Event, BaseException], None] | None = None) -> None:
        self._report = report  # told of a failing handler (the kernel's log, `dmesg`)
        self._handlers: list[tuple[tuple[type[Event], ...], Handler]] = []
        self._subs: dict[Subscription, None] = {}  # in the order they came: delivery never depends on addresses
        self.handler_errors = 0
        self.last_handler_error: BaseException | None = None

    def on(self, handler: Handler, *types: type[Event]) -> Callable[[], None]:
        """Call `handler(event)` synchronously for each event of `types` (all if none)."""
        entry = (types, handler)
        self._handlers.append(entry)
        return lambda: self._handlers.remove(entry)

    def subscribe(self, *types: type[Event], maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, types, maxsize)
        self._subs[sub] = None
        return sub

    def publish(self, event: Event) -> None:
        for types, handler in list(self._handlers):
            if types and not isinstance(event, types):
                continue
            try:
                handler(event)
            except Exception as exc:  # a subscriber must not break the kernel
                self.handler_errors += 1
                self.last_handler_error = exc
                if self._report is not None:
                    try:
                        self._report(handler, event, exc)
                    except Exception:  # noqa: S110 - the report must not break delivery either
                        pass
        for sub in list(self._subs):
            sub._offer(event)


@dataclass(frozen=True)
class PermissionRequested(Event):
    """A tool call needs a person's decision (see kernel.permissions)."""

    request_id: int
    pid: int
    user: str
    program: str
    tool: str
    args: dict[str, Any]
    timeout: float
    deadline: float  # wall-clock seconds after which the request is denied
    workspace: str = ""  # where the call would run
    rule: str = ""  # what `always` (or `session`) would save, e.g. shell(git status)


@dataclass(frozen=True)
class PermissionDecided(Event):
    """The answer to a PermissionRequested: once | session | always | deny; `by` is `user` or `timeout`."""

    request_id: int
    pid: int
    tool: str
    decision: str
    by: str
