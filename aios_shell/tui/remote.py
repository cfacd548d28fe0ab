"""The monitor on a kernel another process hosts: what its panes read of a kernel, kept over the socket.

`AttachedKernel` has the few parts of a kernel the monitor reads — its process table, bus, backend, sandbox and
user — filled from the kernel's API: the table (only the rows that changed) and the scheduler are fetched again
after a batch of events (one fetch at a time, at most ten a second, and at most a fifth of the time when
fetching is slow), events come as they are published.
`RemoteAPI` answers the monitor's API calls from those copies (a process's conversation is fetched when its
screen opens); what it does (signal, renice, answer a permission
request) goes to the kernel, and a refusal comes back as a notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aios_shell.attach import Client
from kernel.api import Event, KernelError, NoSuchProcess, PermissionRequested, Signal, State, Usage
from kernel.api.models import Message, ModelInfo, ProcInfo, SchedInfo
from kernel.api.wire import Connection, RemoteError, WireError

FETCH_EVERY = 0.1  # seconds between two fetches of the table at most (events say when one is worth it)


class RemoteProc:
    """A process as the monitor draws it, from the `ProcInfo` the kernel sent."""

    inflight: tuple[Any, ...] = ()  # its calls' partial answers stay in the kernel's process

    def __init__(self, info: ProcInfo, as_of: float | None = None, accruing: Any = None) -> None:
        self.info = info
        self.as_of = as_of if isinstance(as_of, (int, float)) else None
        run, wait = accruing if isinstance(accruing, list) and len(accruing) == 2 else (0, 0)
        self.accruing = (run, wait) if isinstance(run, int) and isinstance(wait, int) else (0, 0)
        self.pid, self.ppid, self.user, self.nice = info.pid, info.ppid, info.user, info.nice
        self.status, self.program, self.argv = info.status, info.program, info.argv
        self.cmdline = info.cmd
        self.state = State(info.state)
        self.switch_cost_s, self.compactions, self.ctx_window = info.switch_cost_s, info.compactions, info.ctx_window
        self.ctx_switches, self.exit_code, self.error = info.ctx_switches, info.exit_code, info.error
        self.waiting_on, self.term_signal, self.lost = info.waiting_on, info.signal, info.status == "EXITED(lost)"

    @property
    def alive(self) -> bool:
        return self.info.alive

    def usage(self) -> Usage:
        """As the kernel read it, its model time and queue wait carried on to now (they grow by the second while
        its calls run or wait, and the kernel sends the row again only when an event changes it)."""
        i = self.info
        since = max(0.0, time.time() - self.as_of) if self.as_of is not None else 0.0
        run, wait = self.accruing
        return Usage(i.prompt_tokens, i.completion_tokens, i.llm_time_s + run * since, i.queue_wait_s + wait * since,
                     i.ctx_tokens)


class RemoteTable:
    def __init__(self) -> None:
        self.by_pid: dict[int, RemoteProc] = {}

    def __iter__(self) -> Iterator[RemoteProc]:
        return iter(list(self.by_pid.values()))

    def __len__(self) -> int:
        return len(self.by_pid)

    def get(self, pid: int) -> RemoteProc | None:
        return self.by_pid.get(pid)


class RemoteBus:
    def __init__(self) -> None:
        self.handlers: list[tuple[tuple[type[Event], ...], Callable[[Event], None]]] = []

    def on(self, handler: Callable[[Event], None], *types: type[Event]) -> Callable[[], None]:
        entry = (types, handler)
        self.handlers.append(entry)
        return lambda: self.handlers.remove(entry)

    def publish(self, event: Event) -> None:
        for types, handler in list(self.handlers):
            if not types or isinstance(event, types):
                handler(event)


class RemoteBackend:
    def __init__(self, described: dict[str, Any]) -> None:
        self.described = described
        self.name = str(described.get("backend", "?"))
        self.model = str(described.get("model", "?"))

    def describe(self) -> dict[str, Any]:
        return dict(self.described)


class RemoteSandbox:
    def __init__(self, d: dict[str, Any]) -> None:
        self.mode, self.ok, self.detail = str(d.get("mode", "?")), bool(d.get("ok")), str(d.get("detail", ""))

    def status(self) -> RemoteSandbox:
        return self

    def __str__(self) -> str:
        return f"{self.mode}: {self.detail}" if self.ok else f"{self.mode} (unavailable): {self.detail}"


class AttachedKernel:
    """The parts of a kernel the monitor reads, kept up to date over `conn`."""

    def __init__(self, conn: Connection, home: Path) -> None:
        self.conn = conn
        self.client = Client(conn, home)
        self.config = type("Config", (), {"home": home})()
        self.user = conn.user
        self.procs = RemoteTable()
        self.bus = RemoteBus()
        self.backend = RemoteBackend({})
        self.sandbox = RemoteSandbox({})
        self.boot_time = 0.0
        self.remote_api = RemoteAPI(self)
        self.notify: Callable[[str], None] = lambda text: None  # set by the monitor
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> AttachedKernel:
        api = self.remote_api
        described = await self.conn.call("describe")
        self.backend = RemoteBackend(described["backend"])
        self.sandbox = RemoteSandbox(described["sandbox"])
        self.boot_time = float(described["boot_time"])
        api.model_info = ModelInfo.from_dict(await self.conn.call("model"))
        await self._fetch()
        self.client.on_event = self._event
        await self.conn.call_op("events")
        api.pending = [e for e in map(Event.from_dict, await self.conn.call("pending_permissions"))
                       if isinstance(e, PermissionRequested)]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.client.pump()), loop.create_task(self._keep_fetching())]
        return self

    async def history(self, types: tuple[type[Event], ...], last: int) -> None:
        """The stored events the tool log starts from (fetched before the monitor mounts)."""
        rows = await self.conn.call("events", types=[t.__name__ for t in types], since=self.boot_time, last=last)
        self.remote_api.stored = [e for e in map(Event.from_dict, rows) if e is not None]

    def _event(self, data: dict[str, Any]) -> None:
        event = Event.from_dict(data)
        if event is not None:
            self._dirty.set()
            self.bus.publish(event)

    async def _fetch(self) -> None:
        delta = await self.conn.call_op("table")  # what changed since the last fetch
        table = dict(self.procs.by_pid)
        for pid in delta["gone"]:
            table.pop(pid, None)
        for row in delta["changed"]:
            info = ProcInfo.from_dict(row)
            table[info.pid] = RemoteProc(info, row.get("as_of"), row.get("accruing"))
        self.procs.by_pid = dict(sorted(table.items()))
        self.remote_api.sched_info = SchedInfo.from_dict(await self.conn.call("sched", queue_limit=50))

    async def _keep_fetching(self) -> None:
        """After events, fetch the table again (at most every FETCH_EVERY), and say so with a refresh."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            started = time.monotonic()
            with contextlib.suppress(RemoteError, KeyError, TypeError, ValueError):
                await self._fetch()
            self.bus.publish(Fetched())
            took = time.monotonic() - started  # a costly fetch is made less often: at most a fifth of the time
            await asyncio.sleep(max(FETCH_EVERY - took, 4 * took))

    def lookup(self, pid: int) -> RemoteProc:
        proc = self.procs.get(pid)
        if proc is None:
            raise NoSuchProcess(pid)
        return proc

    get = lookup

    async def shutdown(self) -> None:
        """The monitor has closed: let go of the kernel (it goes on)."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self.conn.close()


class Fetched(Event):
    """(The monitor's own: a fresh copy of the table arrived.)"""


class RemoteAPI:
    """What the monitor asks of `KernelAPI`, answered from the attached copies; actions go to the kernel."""

    def __init__(self, kernel: AttachedKernel) -> None:
        self.kernel = kernel
        self.model_info = ModelInfo(backend="?", model="?", slots=0, context_window=0)
        self.sched_info = SchedInfo(policy="?")
        self.pending: list[PermissionRequested] = []
        self.stored: list[Event] = []
        self.fetched: dict[int, tuple[list[Message], list[Event]] | str] = {}

    @property
    def caller(self) -> str:
        return self.kernel.user

    def cmdlines(self) -> Callable[[Any], str]:
        return lambda proc: proc.cmdline  # (the kernel hid another user's arguments already)

    def model(self) -> ModelInfo:
        return self.model_info

    def sched(self, queue_limit: int | None = None) -> SchedInfo:
        info = self.sched_info
        if queue_limit is None:
            return info
        return replace(info, queue=info.queue[:max(0, queue_limit)])

    async def prefetch(self, pid: int) -> None:
        """What process `pid` said and did, fetched before its screen opens (its owner and admins only: a
        refusal is kept, and the screen says it)."""
        from aios_shell.tui.screens.process import SYSCALL_EVENTS

        try:
            messages = [Message.from_dict(m) for m in await self.kernel.conn.call("transcript", pid=pid)]
            rows = await self.kernel.conn.call("events", pid=pid, types=[t.__name__ for t in SYSCALL_EVENTS])
            self.fetched[pid] = (messages, [e for e in map(Event.from_dict, rows) if e is not None])
        except RemoteError as exc:
            self.fetched[pid] = str(exc)

    def _fetched(self, pid: int) -> tuple[list[Message], list[Event]]:
        got = self.fetched.get(pid, "not fetched")
        if isinstance(got, str):
            raise KernelError(got)
        return got

    def events(self, pid: int | None = None, types: tuple[type[Event], ...] = (), since: float | None = None,
               last: int | None = None) -> list[Event]:
        if pid is not None:
            return list(self._fetched(pid)[1])
        return list(self.stored)

    def transcript(self, pid: int) -> list[Message]:
        return list(self._fetched(pid)[0])

    def pending_permissions(self) -> list[PermissionRequested]:
        return list(self.pending)

    def attach_answerer(self, exclusive: bool = False) -> Callable[[], None]:
        self._later(self.kernel.conn.call_op("answerer"))
        return lambda: None  # (detached when the connection closes)

    def may_answer(self, request: PermissionRequested) -> bool:
        return True  # the kernel sends only the requests this user may answer

    def answer_permission(self, request_id: int, decision: str) -> bool:
        self._later(self.kernel.conn.call("answer_permission", request_id=request_id, decision=decision))
        return True

    def signal(self, pid: int, sig: Signal) -> None:
        self.kernel.lookup(pid)
        self._later(self.kernel.conn.call("signal", pid=pid, sig=sig.name))

    def renice(self, pid: int, nice: int) -> None:
        self.kernel.lookup(pid)
        self._later(self.kernel.conn.call("renice", pid=pid, nice=nice))

    def _later(self, call: Any) -> None:
        async def run() -> None:
            try:
                await call
            except RemoteError as exc:
                self.kernel.notify(str(exc))
            except WireError:
                self.kernel.notify("the kernel has gone")

        asyncio.get_running_loop().create_task(run())


class RemoteShell:
    """The monitor's command line on an attached kernel: each line runs in the kernel's process (a shell of this
    client's own there), its output into the pane."""

    def __init__(self, kernel: AttachedKernel, out: Any, width: int) -> None:
        self.kernel = kernel
        self.width = width
        kernel.client.term.out = kernel.client.term.err = out

    async def run_line(self, line: str) -> int:
        try:
            reply = await self.kernel.client.run(line, signals=False, tty=False, width=self.width)
        except (RemoteError, WireError) as exc:
            self.kernel.client.term.err.write(f"aios: {exc}\n")
            return 1
        return int(reply.get("status", 1))


async def attached_top(conn: Connection, home: Path, theme: str | None = None) -> int:
    """`aios top` where another process hosts the kernel: the monitor here, on the kernel there."""
    from aios_shell.tui import make_monitor
    from kernel.api import PermissionDecided, SyscallDone, ToolCallDecided, ToolCalled

    kernel = AttachedKernel(conn, home)
    try:
        await kernel.start()
        await kernel.history((ToolCalled, PermissionRequested, PermissionDecided, ToolCallDecided, SyscallDone),
                             last=4000)
        app = make_monitor(kernel, theme=theme, home=home)  # type: ignore[arg-type] - it reads what it needs
        gone = asyncio.get_running_loop().create_task(conn.closed.wait())
        gone.add_done_callback(lambda _t: app.exit(return_code=1))
        try:
            await app.run_async()
        finally:
            gone.cancel()
        return int(app.return_code or 0)
    finally:
        await kernel.shutdown()
