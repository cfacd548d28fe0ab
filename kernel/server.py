"""The kernel's API over the Unix socket in AIOS_HOME (see `kernel.api.wire` for the frames).

Who a client is comes from the OS: the socket's peer credentials (SO_PEERCRED) give its uid, and the aios user is
that uid's login name; a client may ask to act as another user only when its uid is root or its user an admin.
Every request is answered by `KernelAPI` for that user, so the owner/admin decisions are the in-process ones.

No client can stall the kernel or the others: the hello must come within HELLO_TIMEOUT, a frame begun must end
within FRAME_TIMEOUT, a frame over MAX_FRAME closes the connection, and what the kernel writes never waits on a
client — a client that reads nothing loses events past its buffer (it is told how many) and is cut off when even
its replies do not fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kernel.api.door import KernelAPI
from kernel.api.wire import MAX_FRAME, PROTOCOL, WireError, encode, peer_credentials, read_frame, short_path
from kernel.errors import InvalidArgument, KernelError, PermissionDenied
from kernel.events import Event, kinds
from kernel.process import NoSuchSignal, Process, parse_signal

if TYPE_CHECKING:
    from kernel.kernel import Kernel

HELLO_TIMEOUT = 5.0
FRAME_TIMEOUT = 10.0
MAX_BUFFER = 8 << 20  # bytes waiting for one client before its events are dropped (and replies cut it off)
TABLE_SWEEP_EVERY = 2.0  # seconds: a table fetch reads every row at least this often (else only those events touched)
EVENTS_PER_FRAME = 256  # events sent together at most
MAX_CLIENTS = 256  # connections of one OS user at once (said hello or not): one user cannot crowd out the rest


def login_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no passwd entry (a container): still someone, never anyone else
        return f"uid{uid}"


def may_act_as(uid: int, own: str, wanted: str, is_admin: Callable[[str], bool]) -> bool:
    """Whether the OS user `uid` (aios user `own`) may act as `wanted`: themselves, or anyone if root or admin."""
    return wanted == own or uid == 0 or is_admin(own)


class Session(Protocol):
    """What a front end adds on a connection (a shell that runs command lines): the ops the API does not know."""

    def hello(self) -> dict[str, Any]: ...  # what the hello reply says of the session (its commands)

    async def handle(self, frame: dict[str, Any]) -> bool: ...  # False: not an op of ours

    async def close(self) -> None: ...


@dataclass(eq=False)
class Client:
    """One connected client: who it is (from the OS) and the way to write to it."""

    server: KernelServer
    writer: asyncio.StreamWriter
    pid: int
    uid: int
    user: str = ""
    dropped: int = 0  # events left out since the client last kept up
    batch: list[dict[str, Any]] = field(default_factory=list)  # events to send at the end of this turn of the loop
    shown: dict[int, dict[str, Any]] = field(default_factory=dict)  # the table as this client last got it
    touched: set[int] | None = None  # pids an event named since its last table fetch (None: not fetching)
    swept: float | None = None  # when its last table fetch read every row
    session: Session | None = None
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)

    @property
    def api(self) -> KernelAPI:
        return KernelAPI(self.server.kernel, caller=self.user)

    def send(self, frame: dict[str, Any]) -> None:
        """Write a frame now; a client too slow to take even this is cut off (the kernel never waits for it)."""
        if self.writer.is_closing():
            return
        if self.batch:  # (the events before it, first: a client sees them in the order they happened)
            self._flush_events()
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFER:
            self.server.kernel.kmsg.log(f"socket: client pid {self.pid} ({self.user}) reads nothing; cut off")
            self.writer.transport.abort()
            return
        try:
            self.writer.write(encode(frame))
        except WireError:  # a reply too big for one frame: say so instead
            if "id" in frame:
                self.writer.write(encode({"id": frame["id"], "error": "the reply is too big for one frame",
                                          "kind": "WireError"}))

    def send_event(self, event: Event) -> None:
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFER // 2:
            self.dropped += 1
            return
        if self.dropped:
            self.send({"lost": self.dropped})
            self.dropped = 0
        self.batch.append(event.to_dict())
        if len(self.batch) == 1:  # the events of one turn of the loop go as one frame (a decode step's tokens)
            asyncio.get_running_loop().call_soon(self._flush_events)
        elif len(self.batch) >= EVENTS_PER_FRAME:
            self._flush_events()

    def _flush_events(self) -> None:
        batch, self.batch = self.batch, []
        if not batch or self.writer.is_closing():
            return
        try:
            self.writer.write(encode({"events": batch}))
        except WireError:  # too big together: one by one (and one too big alone is left out, and counted)
            for data in batch:
                try:
                    self.writer.write(encode({"event": data}))
                except WireError:
                    self.dropped += 1


def _signal(api: KernelAPI, pid: int, sig: str | int) -> Process:
    return api.signal(int(pid), parse_signal(str(sig)))


# the API's operations a client may call by name, each with JSON arguments
CALLS: dict[str, Callable[..., Any]] = {
    "ps": lambda api, all=False, user=None: api.ps(all=bool(all), user=user),
    "proc": lambda api, pid: api.proc(int(pid)),
    "table": lambda api: api.table(),
    "describe": lambda api: api.describe(),
    "events": lambda api, pid=None, types=(), since=None, last=None: api.events(
        None if pid is None else int(pid), types=_event_types(types), since=since, last=last),
    "signal": _signal,
    "renice": lambda api, pid, nice: api.renice(int(pid), int(nice)),
    "spawn": lambda api, program, argv=(), nice=0: api.spawn(str(program), [str(a) for a in argv], nice=int(nice)),
    "resume": lambda api, pid: api.resume(int(pid)),
    "model": lambda api: api.model(),
    "sched": lambda api, queue_limit=None: api.sched(queue_limit=queue_limit),
    "set_sched": lambda api, policy=None, slice=None, slots=None: api.set_sched(policy, slice, slots),
    "kmsg": lambda api: api.kmsg(),
    "transcript": lambda api, pid: api.transcript(int(pid)),
    "users": lambda api: api.users(),
    "grants": lambda api, user=None: api.grants(user),
    "audit": lambda api, limit=None, pid=None: api.audit(limit=limit, pid=pid),
    "pending_permissions": lambda api: api.pending_permissions(),
    "answer_permission": lambda api, request_id, decision: api.answer_permission(int(request_id), str(decision)),
    "whoami": lambda api: {"user": api.caller, "admin": api.is_admin()},
}


def _event_types(names: Any) -> tuple[type[Event], ...]:
    """Event types by name (the names a request gave); ValueError for a name this kernel does not publish."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError("types: not a list of event names")
    known = kinds()
    if unknown := [n for n in names if n not in known]:
        raise ValueError(f"no event type {unknown[0][:40]!r}")
    return tuple(known[n] for n in names)


def jsonable(value: Any, api: KernelAPI) -> Any:
    """A result as JSON: read models and events by `to_dict`, a process as the caller's `ProcInfo`."""
    if isinstance(value, Process):
        value = api.proc_info(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [jsonable(v, api) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v, api) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _steady(row: dict[str, Any]) -> dict[str, Any]:
    """A table row without what only time changes (a waiting call's wait, a running one's model time grow by
    the second, and the client extrapolates them from `as_of` and `accruing`): equal until an event changes it."""
    run, wait = row["accruing"]
    key = {**row, "llm_time_s": round(row["llm_time_s"] - run * row["as_of"], 3),
           "queue_wait_s": round(row["queue_wait_s"] - wait * row["as_of"], 3)}
    del key["as_of"]
    return key


class KernelServer:
    """Listens on `path` for the kernel; `sessions` (from the front end that hosts it) adds its ops per client."""

    def __init__(self, kernel: Kernel, path: Path, sessions: Callable[[Client], Session] | None = None) -> None:
        self.kernel = kernel
        self.path = path
        self.sessions = sessions
        self.clients: set[Client] = set()
        self.connections: dict[int, int] = {}  # open connections by the peer's uid
        self.headless = False  # served by `aios serve` (or handed over): `stop` may end it
        self.stopping = asyncio.Event()  # set by a `stop` request
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, mode: int | None = None) -> KernelServer:
        """Bind and listen (a socket file left by a kernel that is gone is replaced: the caller holds the home's
        host lock). The socket is only its owner's, or its group's too where the home is shared with a group."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        if mode is None:
            mode = 0o660 if os.stat(self.path.parent).st_mode & stat.S_IWGRP else 0o600
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # never a moment when others could connect
        try:
            sock.bind(short_path(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, mode)
        sock.listen(128)
        self._server = await asyncio.start_unix_server(self._connected, sock=sock, limit=MAX_FRAME + 8)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.send({"gone": "the kernel is stopping"})
            client.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            if self._server is not None:
                os.unlink(self.path)

    def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer), name="aios-client")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, _gid = peer_credentials(sock)
        client = Client(self, writer, pid, uid)
        self.connections[uid] = self.connections.get(uid, 0) + 1
        try:
            if self.connections[uid] > MAX_CLIENTS:
                client.send({"error": f"too many connections of uid {uid} ({MAX_CLIENTS}); close some first",
                             "kind": "busy"})
                return
            if not self._hello(client, await read_frame(reader, timeout=FRAME_TIMEOUT, idle=HELLO_TIMEOUT)):
                return
            self.clients.add(client)
            while (frame := await read_frame(reader, timeout=FRAME_TIMEOUT)) is not None:
                await self._request(client, frame)
        except (WireError, ConnectionError) as exc:
            with contextlib.suppress(Exception):
                client.send({"gone": f"protocol error: {exc}"})
        finally:
            self.connections[uid] -= 1
            self.clients.discard(client)
            for off in client.unsubscribe:
                off()
            if client.session is not None:
                with contextlib.suppress(Exception):
                    await client.session.close()
            writer.close()

    def _hello(self, client: Client, frame: dict[str, Any] | None) -> bool:
        if frame is None:
            return False
        version = frame.get("aios")
        if version != PROTOCOL:
            client.send({"error": f"this kernel speaks aios protocol {PROTOCOL}, the client {version!r}; "
                                  "use the aios that started the kernel, or stop it (`aios serve --stop`)",
                         "kind": "version"})
            return False
        own = login_name(client.uid)
        wanted = frame.get("user") or own
        if not isinstance(wanted, str) or not wanted:
            client.send({"error": "user: not a name", "kind": "InvalidArgument"})
            return False
        if not may_act_as(client.uid, own, wanted, self.kernel.is_admin):
            client.send({"error": f"{own} (uid {client.uid}) may not act as {wanted}: only root and admins may",
                         "kind": "PermissionDenied"})
            return False
        client.user = wanted
        if self.sessions is not None:
            client.session = self.sessions(client)
        describe = self.kernel.backend.describe()
        client.send({"aios": PROTOCOL, "user": wanted, "admin": self.kernel.is_admin(wanted),
                     "home": str(self.kernel.config.home), "kernel_pid": os.getpid(),
                     "backend": describe.get("backend"), "model": describe.get("model"),
                     **(client.session.hello() if client.session is not None else {})})
        return True

    async def _request(self, client: Client, frame: dict[str, Any]) -> None:
        rid = frame.get("id")
        op = frame.get("op")
        try:
            if op == "call":
                result = self._call(client, frame.get("method"), frame.get("args") or {})
                client.send({"id": rid, "result": result})
            elif op == "stop":
                self._stop(client)
                client.send({"id": rid, "result": True})
            elif op == "answerer":  # this client can ask a person: requests wait for it (until the timeout)
                client.unsubscribe.append(client.api.attach_answerer().detach)
                client.send({"id": rid, "result": True})
            elif op == "table":
                client.send({"id": rid, "result": self._table(client)})
            elif op == "events":
                self._subscribe(client, frame.get("types") or [])
                client.send({"id": rid, "result": True})
            elif client.session is None or not await client.session.handle(frame):
                client.send({"id": rid, "error": f"unknown op {str(op)[:40]!r}", "kind": "InvalidArgument"})
        except (KernelError, NoSuchSignal, ValueError, TypeError, KeyError) as exc:
            kind = type(exc).__name__
            message = str(exc) if isinstance(exc, (KernelError, NoSuchSignal)) else f"bad request: {exc}"
            client.send({"id": rid, "error": message, "kind": kind})

    def _table(self, client: Client) -> dict[str, Any]:
        """This boot's process table as the client may see it, as a change to what it got last time: the rows
        that differ, and the pids that have left (the monitor fetches it after every batch of events)."""
        if client.touched is None:
            touched: set[int] = set()
            client.touched = touched
            client.unsubscribe.append(self.kernel.bus.on(lambda e: touched.add(getattr(e, "pid", 0))))
        clock = asyncio.get_running_loop().time()
        sweep = client.swept is None or clock - client.swept >= TABLE_SWEEP_EVERY  # (finds what changed with no event)
        rows = {row["pid"]: row for row in client.api.table_rows(None if sweep else client.touched)}
        client.touched.clear()
        if sweep:
            client.swept = clock
        live = set(client.api.table_pids())
        changed = []
        for pid, row in rows.items():
            key = _steady(row)
            if client.shown.get(pid) != key:
                changed.append(row)
                client.shown[pid] = key
        gone = [pid for pid in client.shown if pid not in live]
        for pid in gone:
            del client.shown[pid]
        return {"changed": changed, "gone": gone}

    def _stop(self, client: Client) -> None:
        """`aios serve --stop`: the kernel's owner or an admin may stop a headless kernel."""
        kernel = self.kernel
        if client.user != kernel.user and not kernel.is_admin(client.user):
            raise PermissionDenied(f"{client.user} may not stop {kernel.user}'s kernel (its owner and admins may)")
        if not self.headless:
            raise InvalidArgument(f"the kernel for {kernel.config.home} is hosted by an aios shell or script "
                                  f"(pid {os.getpid()}): it stops when that ends")
        self.stopping.set()

    def _call(self, client: Client, method: Any, args: Any) -> Any:
        call = CALLS.get(method) if isinstance(method, str) else None
        if call is None:
            raise ValueError(f"no API call {str(method)[:40]!r}")
        if not isinstance(args, dict):
            raise ValueError("args: not an object")
        api = client.api
        return jsonable(call(api, **args), api)

    def _subscribe(self, client: Client, types: Any) -> None:
        wanted = {t.__name__ for t in _event_types(types)}
        api = client.api
        owners: dict[int, bool] = {}

        def deliver(event: Event) -> None:
            if wanted and event.kind not in wanted:
                return
            pid = getattr(event, "pid", None)
            if isinstance(pid, int):
                if pid not in owners:
                    owners[pid] = api.may_see(pid)
                if not owners[pid]:
                    return
            client.send_event(event)

        client.unsubscribe.append(self.kernel.bus.on(deliver))
