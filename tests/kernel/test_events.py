"""The event bus: typed events, sync handlers, async subscriptions; a bad subscriber harms nobody."""

from __future__ import annotations

from kernel.events import Event, EventBus, ProcessOutput, ProcessReniced
from kernel.sanitize import strip_controls


async def test_handlers_and_subscriptions_filter_by_type() -> None:
    bus = EventBus()
    outputs: list[ProcessOutput] = []
    bus.on(outputs.append, ProcessOutput)
    with bus.subscribe(ProcessReniced) as sub:
        bus.publish(ProcessOutput(pid=1, text="hi"))
        bus.publish(ProcessReniced(pid=1, old=0, new=5))
        event = await sub.get()
    assert outputs == [ProcessOutput(pid=1, text="hi", ts=outputs[0].ts)]
    assert isinstance(event, ProcessReniced) and event.new == 5
    assert event.to_dict()["type"] == "ProcessReniced"


async def test_a_failing_handler_does_not_stop_the_others() -> None:
    bus = EventBus()
    seen: list[object] = []

    def broken(_event: object) -> None:
        raise OSError("database or disk is full")

    bus.on(broken)
    bus.on(seen.append)
    bus.publish(ProcessOutput(pid=1, text="x"))
    assert len(seen) == 1 and bus.handler_errors == 1


async def test_a_slow_subscriber_drops_the_oldest() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=2)
    for i in range(5):
        bus.publish(ProcessOutput(pid=i, text=""))
    assert sub.dropped == 3
    assert [(await sub.get()).pid for _ in range(2)] == [3, 4]
    sub.close()
    bus.publish(ProcessOutput(pid=9, text=""))
    assert sub.queue.empty()


def test_strip_controls() -> None:
    hostile = "ok\x1b[2J\x1b]0;pwned\x07 red\x1b[31m!\x1b[0m\r\nbell\x07 nul\x00 tab\tend\x9b1m"
    assert strip_controls(hostile) == "ok red!\nbell nul tab\tend"


def test_an_event_comes_back_from_its_stored_form() -> None:
    from kernel.events import Event, PermissionRequested, ToolCalled

    called = ToolCalled(pid=3, sid=4, tool="shell", args={"cmd": "ls"}, ts=12.5)
    assert Event.from_dict(called.to_dict()) == called
    asked = PermissionRequested(request_id=1, pid=3, user="a", program="p", tool="t", args={}, timeout=1, deadline=2)
    assert Event.from_dict(asked.to_dict()) == asked
    assert Event.from_dict({"type": "NoSuchEvent", "pid": 1}) is None
    assert Event.from_dict({"type": "ToolCalled", "pid": 1}) is None  # fields missing: another version's


def test_no_event_field_shadows_what_names_its_type() -> None:
    """`kind` names an event's type (and is stored as `type`): a field of that name would store the wrong type."""
    from kernel.events import _kinds

    clashing = {name: sorted({"kind", "type"} & set(cls.__dataclass_fields__)) for name, cls in _kinds().items()}
    assert {name: fields for name, fields in clashing.items() if fields} == {}


def test_a_preemption_says_its_cause_and_goes_through_storage_as_its_own_type() -> None:
    from kernel.events import PreemptReason, SyscallPreempted

    event = SyscallPreempted(pid=1, sid=2, reason="retry: boom", partial_tokens=3, cause=PreemptReason.RETRY)
    stored = event.to_dict()
    assert stored["type"] == "SyscallPreempted" and stored["cause"] == "retry"
    assert Event.from_dict(stored) == event
