"""The kernel's API over its Unix socket: frames, hello, identity, calls, events, and clients that misbehave."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernel.api.wire import MAX_FRAME, PROTOCOL, Connection, RemoteError, encode, read_frame, short_path, socket_path
from kernel.events import Event
from kernel.kernel import Kernel
from kernel.process import Signal
from kernel.server import KernelServer, may_act_as
from tests.conftest import until


@pytest.fixture
async def server(kernel: Kernel) -> AsyncIterator[KernelServer]:
    s = await KernelServer(kernel, socket_path(kernel.config.home)).start()
    try:
        yield s
    finally:
        await s.close()


async def raw(kernel: Kernel) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(short_path(socket_path(kernel.config.home)))


async def test_a_client_calls_the_api_as_the_user_the_os_says(server: KernelServer, kernel: Kernel) -> None:
    conn = await Connection.open(kernel.config.home, user="alice")
    try:
        assert conn.hello["aios"] == PROTOCOL and conn.user == "alice" and conn.hello["kernel_pid"] == os.getpid()
        proc = await conn.call("spawn", program="chat", argv=["hi"])
        assert proc["user"] == "alice" and proc["cmd"] == "chat hi"
        listed = await conn.call("ps", all=True)
        assert [p["pid"] for p in listed] == [proc["pid"]]
        stopped = await conn.call("signal", pid=proc["pid"], sig="STOP")
        assert stopped["state"] == "STOPPED" and kernel.get(proc["pid"]).state.name == "STOPPED"
        with pytest.raises(RemoteError, match=r"\(99\) - No such process"):
            await conn.call("signal", pid=99, sig="TERM")
        with pytest.raises(RemoteError, match="invalid signal specification"):
            await conn.call("signal", pid=proc["pid"], sig="BOGUS")
        with pytest.raises(RemoteError, match="no API call 'shutdown'"):
            await conn.call("shutdown")
        with pytest.raises(RemoteError, match="bad request"):
            await conn.call("ps", colour="red")
    finally:
        await conn.close()


async def test_another_users_client_cannot_signal_or_read(server: KernelServer, kernel: Kernel) -> None:
    """bob (acted as by root, as an admin may) is held to bob's rights: the API decides, not the client."""
    alice = await Connection.open(kernel.config.home, user="alice")
    bob = await Connection.open(kernel.config.home, user="bob")
    try:
        proc = await alice.call("spawn", program="chat", argv=["secret plans"])
        pid = proc["pid"]
        seen = (await bob.call("proc", pid=pid))
        assert seen["user"] == "alice" and "secret" not in seen["cmd"]
        for method, args in (("signal", {"sig": "KILL"}), ("renice", {"nice": 5}), ("transcript", {})):
            with pytest.raises(RemoteError) as caught:
                await bob.call(method, pid=pid, **args)
            assert caught.value.kind == "PermissionDenied", method
        assert kernel.get(pid).alive
    finally:
        await alice.close()
        await bob.close()


def test_who_may_act_as_whom() -> None:
    admins = {"root", "ops"}.__contains__
    assert may_act_as(1000, "bob", "bob", admins)
    assert not may_act_as(1000, "bob", "alice", admins)
    assert may_act_as(1001, "ops", "alice", admins)  # an admin
    assert may_act_as(0, "root", "alice", admins)


async def test_a_client_of_another_protocol_version_is_told_and_let_go(server: KernelServer,
                                                                        kernel: Kernel) -> None:
    reader, writer = await raw(kernel)
    writer.write(encode({"aios": PROTOCOL + 1}))
    answer = await read_frame(reader, timeout=5, idle=5)
    assert answer is not None and answer["kind"] == "version"
    assert f"speaks aios protocol {PROTOCOL}" in answer["error"]
    assert await read_frame(reader, timeout=5, idle=5) is None  # closed
    writer.close()


async def test_events_reach_a_subscriber_only_for_processes_it_may_follow(server: KernelServer,
                                                                          kernel: Kernel) -> None:
    alice = await Connection.open(kernel.config.home, user="alice")
    bob = await Connection.open(kernel.config.home, user="bob")
    try:
        seen: dict[str, list[Event]] = {"alice": [], "bob": []}

        async def follow(conn: Connection, name: str) -> None:
            async for data in conn.events("ProcessSpawned", "ProcessExited"):
                event = Event.from_dict(data)
                assert event is not None
                seen[name].append(event)

        tasks = [asyncio.create_task(follow(alice, "alice")), asyncio.create_task(follow(bob, "bob"))]
        await until(lambda: len(kernel.bus._handlers) >= 3)
        proc = kernel.spawn("chat", ["hi"], user="alice")
        await proc.exited.wait()
        await until(lambda: [type(e).__name__ for e in seen["alice"]] == ["ProcessSpawned", "ProcessExited"])
        theirs = kernel.spawn("chat", ["hi"], user="bob")
        await theirs.exited.wait()
        await until(lambda: len(seen["bob"]) == 2)
        assert {getattr(e, "pid", None) for e in seen["bob"]} == {theirs.pid}
        for task in tasks:
            task.cancel()
        with pytest.raises(RemoteError, match="no event type 'Nonsense'"):
            async for _ in alice.events("Nonsense"):
                pass
    finally:
        await alice.close()
        await bob.close()


# -- hostile clients: the kernel keeps answering everyone else -----------------------------------------------
async def ps_answers(kernel: Kernel) -> bool:
    conn = await Connection.open(kernel.config.home, user="alice")
    try:
        return isinstance(await asyncio.wait_for(conn.call("ps"), 5), list)
    finally:
        await conn.close()


async def test_an_oversized_frame_closes_only_that_connection(server: KernelServer, kernel: Kernel) -> None:
    reader, writer = await raw(kernel)
    writer.write(encode({"aios": PROTOCOL}))
    assert (await read_frame(reader, timeout=5, idle=5) or {}).get("aios") == PROTOCOL
    writer.write(struct.pack(">I", MAX_FRAME + 1) + b"{")
    gone = await read_frame(reader, timeout=5, idle=5)
    assert gone is not None and "over the limit" in gone["gone"]
    assert await read_frame(reader, timeout=5, idle=5) is None
    assert await ps_answers(kernel)


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n\r\n", b"\x00\x00\x00\x05\xff\xfe\xfd\xfc\xfb",
                                     b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x01\x00"])
async def test_garbage_is_refused(server: KernelServer, kernel: Kernel, garbage: bytes) -> None:
    reader, writer = await raw(kernel)
    writer.write(garbage)
    frames = []
    while (frame := await read_frame(reader, timeout=5, idle=15)) is not None:
        frames.append(frame)
    assert frames and ("gone" in frames[-1] or "error" in frames[-1])
    assert await ps_answers(kernel)


async def test_half_a_frame_then_silence_is_cut_off(server: KernelServer, kernel: Kernel,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kernel.server.FRAME_TIMEOUT", 0.3)
    reader, writer = await raw(kernel)
    writer.write(encode({"aios": PROTOCOL}))
    await read_frame(reader, timeout=5, idle=5)
    writer.write(struct.pack(">I", 100) + b'{"op":')  # and nothing more
    assert await ps_answers(kernel)  # meanwhile
    gone = await read_frame(reader, timeout=10, idle=10)
    assert gone is not None and "not finished within" in gone["gone"]


async def test_a_client_that_never_says_hello_is_let_go(server: KernelServer, kernel: Kernel,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kernel.server.HELLO_TIMEOUT", 0.2)
    reader, writer = await raw(kernel)
    gone = await read_frame(reader, timeout=10, idle=10)
    assert gone is not None and "no frame within" in gone["gone"]


async def test_two_hundred_idle_connections_do_not_stop_ps(server: KernelServer, kernel: Kernel) -> None:
    idle = [await raw(kernel) for _ in range(200)]
    for _, writer in idle[:100]:  # half of them said hello and then nothing
        writer.write(encode({"aios": PROTOCOL}))
    assert await ps_answers(kernel)
    for _, writer in idle:
        writer.close()


async def test_one_user_cannot_open_connections_without_end(server: KernelServer, kernel: Kernel,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kernel.server.MAX_CLIENTS", 20)
    held = [await raw(kernel) for _ in range(20)]
    await until(lambda: sum(server.connections.values()) == 20)
    reader, writer = await raw(kernel)  # the 21st
    refused = await read_frame(reader, timeout=5, idle=5)
    assert refused is not None and refused["kind"] == "busy" and "too many connections of uid" in refused["error"]
    for _, w in held:
        w.close()
    await until(lambda: sum(server.connections.values()) == 0)
    assert await ps_answers(kernel)


async def test_a_client_that_reads_nothing_loses_events_not_the_kernel(server: KernelServer, kernel: Kernel,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kernel.server.MAX_BUFFER", 64 << 10)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(short_path(socket_path(kernel.config.home)))
    sock.sendall(encode({"aios": PROTOCOL}) + encode({"op": "events", "id": 1}))
    await until(lambda: any(c.unsubscribe for c in server.clients))
    slow = next(c for c in server.clients if c.unsubscribe)
    from kernel.events import ProcessOutput

    pid = kernel.spawn("chat", ["hi"], user="alice").pid
    for _ in range(5000):  # far more than its buffer holds
        kernel.bus.publish(ProcessOutput(pid=pid, text="x" * 100))
    assert slow.dropped > 0
    assert await ps_answers(kernel)
    sock.close()


async def test_the_socket_is_its_owners_only_and_a_stale_one_is_replaced(kernel: Kernel) -> None:
    path = socket_path(kernel.config.home)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(short_path(path))  # left by a kernel that died: nobody listens
    stale.close()
    server = await KernelServer(kernel, path).start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert await ps_answers(kernel)
    finally:
        await server.close()
    assert not path.exists()


async def test_a_long_home_path_still_binds(kernel: Kernel, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "kernel.sock"
    assert len(str(path)) > 108
    server = await KernelServer(kernel, path).start()
    try:
        reader, writer = await asyncio.open_unix_connection(short_path(path))
        writer.write(encode({"aios": PROTOCOL}))
        assert (await read_frame(reader, timeout=5, idle=5) or {}).get("aios") == PROTOCOL
        writer.close()
    finally:
        await server.close()


def test_frames_round_trip_and_refuse_what_does_not_fit() -> None:
    data = encode({"text": "héllo"})
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4
    assert json.loads(data[4:].decode()) == {"text": "héllo"}
    with pytest.raises(Exception, match="over the limit"):
        encode({"text": "x" * (MAX_FRAME + 1)})


async def test_the_table_is_sent_again_only_for_rows_an_event_changed(server: KernelServer, kernel: Kernel) -> None:
    """A queued call's wait grows by the second; the monitor draws it on from `as_of` and `accruing` instead of
    fetching 500 rows that only time changed."""
    from aios_shell.tui.remote import RemoteProc
    from kernel.api.models import ProcInfo

    procs = [kernel.spawn("workload", ["2000:0"], user="alice") for _ in range(3)]  # 2 slots: one call queued
    await until(lambda: sorted(p.accruing() for p in procs) == [(0, 1), (1, 0), (1, 0)])
    [queued] = [p for p in procs if p.accruing() == (0, 1)]
    conn = await Connection.open(kernel.config.home, user="alice")
    try:
        first = await conn.call_op("table")
        assert sorted(row["pid"] for row in first["changed"]) == [p.pid for p in procs] and first["gone"] == []
        row = next(r for r in first["changed"] if r["pid"] == queued.pid)
        assert row["accruing"] == [0, 1]
        drawn = RemoteProc(ProcInfo.from_dict(row), row["as_of"], row["accruing"])
        await until(lambda: queued.usage().queue_wait > row["queue_wait_s"] + 0.05)  # time passes, no event
        assert abs(drawn.usage().queue_wait - queued.usage().queue_wait) < 0.05  # drawn on, not fetched
        second = await conn.call_op("table")
        assert queued.pid not in {r["pid"] for r in second["changed"]}  # only time changed it
        assert {r["pid"] for r in second["changed"]} <= {p.pid for p in procs if p is not queued}
        kernel.signal(queued.pid, Signal.KILL, sender="alice")
        await until(lambda: not queued.alive)
        third = await conn.call_op("table")
        assert queued.pid in {r["pid"] for r in third["changed"]}  # an event: sent again
    finally:
        await conn.close()
        for p in procs:
            if p.alive:
                kernel.signal(p.pid, Signal.KILL, sender="alice")


async def test_the_events_of_one_turn_go_as_one_frame_in_order_before_a_reply(server: KernelServer,
                                                                             kernel: Kernel) -> None:
    from kernel.events import ProcessOutput

    reader, writer = await raw(kernel)
    writer.write(encode({"aios": PROTOCOL, "user": "alice"}) + encode({"op": "events", "id": 1}))
    assert "aios" in await read_frame(reader) and (await read_frame(reader))["id"] == 1
    pid = kernel.spawn("chat", ["hi"], user="alice").pid
    await kernel.wait(pid)
    writer.write(encode({"op": "call", "method": "whoami", "id": 2}))
    while (frame := await read_frame(reader)) is not None and frame.get("id") != 2:  # the chat's own events
        pass
    for n in range(3):
        kernel.bus.publish(ProcessOutput(pid=pid, text=f"part {n}"))
    client = next(c for c in server.clients if c.user == "alice")
    client.send({"id": 3, "result": "after them"})  # a reply in the same turn comes after the events before it
    frame = await read_frame(reader)
    assert [e["text"] for e in frame["events"]] == ["part 0", "part 1", "part 2"]
    assert (await read_frame(reader)) == {"id": 3, "result": "after them"}
    writer.close()
