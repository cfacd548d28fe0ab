"""The kernel's own messages: a failing event handler is written where a person can read it (`dmesg`,
`cat /proc/kmsg`), the ring keeps the last ones, and only the kernel's owner and admins read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel.api import KernelAPI
from kernel.errors import PermissionDenied
from kernel.events import EventBus, ProcessSpawned
from kernel.kernel import Kernel
from kernel.kmsg import KernelLog
from tests.shell.helpers import check_shape, session


def broken_switch_accounting(event: object) -> None:
    raise KeyError("pid 7")


async def test_a_failing_handler_is_written_with_its_name_the_event_and_where(kernel: Kernel) -> None:
    seen = []
    kernel.bus.on(broken_switch_accounting)
    kernel.bus.on(seen.append)
    proc = kernel.spawn("chat", ["short"])
    assert seen  # the others still got the event
    (first, *_) = KernelAPI(kernel).kmsg()
    assert first.level == "error"
    assert first.text.startswith("event handler broken_switch_accounting failed on ProcessSpawned: KeyError: 'pid 7'")
    assert first.text.endswith(f"at test_kmsg.py:{broken_switch_accounting.__code__.co_firstlineno + 1}")
    await kernel.wait(proc.pid)


def test_the_ring_keeps_the_last_messages_and_counts_them_all() -> None:
    log = KernelLog(limit=3)
    bus = EventBus(report=log.handler_failed)
    bus.on(broken_switch_accounting)
    for pid in range(5):
        bus.publish(ProcessSpawned(pid=pid, ppid=0, user="a", program="chat", argv=(), nice=0))
    assert len(log.messages()) == 3 and log.written == 5 and bus.handler_errors == 5


def test_a_message_holds_no_terminal_control_sequence() -> None:
    log = KernelLog()
    log.write("error", "boom \x1b[2J\x1b]0;owned\x07 end")
    assert "\x1b" not in log.messages()[0].text and "\x07" not in log.messages()[0].text


async def test_only_the_owner_and_admins_read_the_kernels_messages(kernel: Kernel) -> None:
    assert KernelAPI(kernel, caller="root").kmsg() == []
    with pytest.raises(PermissionDenied, match="may not read the kernel's messages"):
        KernelAPI(kernel, caller="mallory").kmsg()


async def test_dmesg_and_proc_kmsg_show_them(home: Path) -> None:
    async with session(home) as s:
        s.kernel.bus.on(broken_switch_accounting, ProcessSpawned)
        await s.run("run chat short")
        s.take()
        assert await s.run("dmesg") == 0
        out = s.take()[0]
        assert out.count("\n") == 1 and " error: event handler broken_switch_accounting failed" in out
        assert await s.run("cat /proc/kmsg") == 0
        assert s.take()[0] == out
        assert await s.run("ls /proc") == 0
        assert "kmsg" in s.take()[0].split()
        assert await s.run("dmesg --json") == 0
        check_shape(json.loads(s.take()[0]), [{"ts": float, "level": str, "text": str}])
