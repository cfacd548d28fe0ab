"""The interactive shell of an `aios` attached to a kernel another process hosts.

Lines are read here (prompt-toolkit, history per user in AIOS_HOME) and run in the kernel's process, in a shell
of this terminal's own; Tab asks that shell for the candidates; job reports print above the prompt as they come.
Leaving detaches: the agents started here go on in the kernel, and any `aios` reaches them (`aios ps`, `wait`,
`logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from aios_shell.asker import PermissionAsker, PromptPaused
from aios_shell.attach import Client, KernelGone, gone_line, top_theme
from kernel.api import Event, PermissionDecided, PermissionRequested, one_line, strip_controls
from kernel.api.models import SchedInfo
from kernel.api.wire import Connection, RemoteError, WireError

BANNER = ("aios {version} — attached to the kernel for {home} (pid {pid}: {backend} backend, model {model}). "
          "Type `help` for commands, `exit` or Ctrl-D to leave; agents started here go on.")
TOOLBAR_EVERY = 1.0  # seconds between the bottom bar's looks at the scheduler
COMPLETE_TIMEOUT = 2.0  # seconds a Tab waits for the kernel's candidates


def shlex_split(line: str) -> list[str]:
    import shlex

    try:
        return shlex.split(line)
    except ValueError:
        return []


class RemoteCompleter(Completer):
    """Tab in an attached shell: the kernel's process completes the line, in this terminal's shell there (its
    jobs, its user's view), as the hosting shell's completer would."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        return iter(())  # (prompt-toolkit asks the async one)

    async def get_completions_async(self, document: Document,
                                    complete_event: CompleteEvent) -> AsyncGenerator[Completion, None]:
        try:
            found = await asyncio.wait_for(self.conn.call_op("complete", text=document.text_before_cursor),
                                           COMPLETE_TIMEOUT)
        except (TimeoutError, RemoteError, WireError):
            return
        for pair in found if isinstance(found, list) else ():
            if (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], int) and -len(document.text_before_cursor) <= pair[1] <= 0):
                yield Completion(strip_controls(pair[0]), start_position=pair[1])


class RemotePermissions:
    """The permission asker's view of a kernel over the socket: this terminal is an answerer there, and the
    requests it may answer (its user's processes'; an admin's: all) come as events."""

    def __init__(self, conn: Connection, client: Client) -> None:
        self.conn = conn
        self.client = client
        self._pending: list[PermissionRequested] = []
        self._handlers: list[Callable[[Any], None]] = []
        self._change = asyncio.Event()
        client.on_event = self._event

    async def start(self) -> None:
        await self.conn.call_op("answerer")
        await self.conn.call_op("events", types=["PermissionRequested", "PermissionDecided"])
        found = [Event.from_dict(d) for d in await self.conn.call("pending_permissions")]
        self._pending = [e for e in found if isinstance(e, PermissionRequested)]

    def _event(self, data: dict[str, Any]) -> None:
        event = Event.from_dict(data)
        if isinstance(event, PermissionDecided):
            self._change.set()
            self._change = asyncio.Event()
        if event is not None:
            for handler in list(self._handlers):
                handler(event)

    def subscribe(self, handler: Callable[[Any], None]) -> Callable[[], None]:
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    def attach_answerer(self) -> Any:
        return None  # (attached in `start`, for the connection's life)

    def pending_permissions(self) -> list[PermissionRequested]:
        return list(self._pending)

    def may_answer(self, request: PermissionRequested) -> bool:
        return True  # the kernel sends only the requests this user may answer

    async def answer_permission(self, request_id: int, decision: str) -> bool:
        try:
            return bool(await self.conn.call("answer_permission", request_id=request_id, decision=decision))
        except RemoteError:
            return False

    async def permissions_changed(self) -> None:
        await self._change.wait()

    def now(self) -> float:
        return time.time()


class AttachedRepl:
    def __init__(self, conn: Connection, home: Path, input: Input | None = None,
                 output: Output | None = None) -> None:
        self.conn = conn
        self.home = home
        self.client = Client(conn, home, interactive=True)
        self.sched: SchedInfo | None = None
        keys = KeyBindings()

        @keys.add("c-z")
        def _nothing_to_stop(event: Any) -> None:
            """Ctrl-Z at the prompt: nothing runs in the foreground (as in bash)."""

        self.session: PromptSession[str] = PromptSession(
            input=input, output=output, history=self._history(), bottom_toolbar=self.toolbar,
            refresh_interval=1.0, key_bindings=keys, completer=RemoteCompleter(conn), complete_while_typing=False,
        )
        self.permissions = RemotePermissions(conn, self.client)
        self.asker = PermissionAsker(self.permissions, self.permissions.subscribe, self.session, self._print,
                                     self._pause_prompt)
        self._typed = ""
        self._prompting = False
        self._prompt_gone = asyncio.Event()
        self._prompt_gone.set()

    @staticmethod
    def _print(text: str) -> None:
        print(strip_controls(text))

    def _history(self) -> History:
        try:
            path = self.home / f"history-{self.client.user}"
            path.touch(exist_ok=True)
            return FileHistory(str(path))
        except OSError:  # a home shared with a group: another user's file, or none we may write
            return InMemoryHistory()

    def prompt(self) -> str:
        return f"{one_line(self.client.user, 30)}@aios {'#' if self.client.admin else '$'} "

    def toolbar(self) -> str:
        """`you │ simulated sim-1 │ srpt 1/4 run, 0 queued │ attached (kernel pid 123)`, as the host's bar."""
        hello = self.conn.hello
        line = f" {one_line(self.client.user, 20)} │ {one_line(hello.get('backend'), 12)} " \
               f"{one_line(hello.get('model') or '', 24)} │ "
        if self.sched is not None:
            info = self.sched
            line += f"{one_line(info.policy, 10)} {info.busy}/{len(info.slots)} run, {info.queued} queued │ "
        return line + f"attached (kernel pid {hello.get('kernel_pid')}) "

    async def _watch_sched(self) -> None:
        while True:
            with contextlib.suppress(RemoteError, KeyError, TypeError, ValueError):
                self.sched = SchedInfo.from_dict(await self.conn.call("sched", queue_limit=0))
            await asyncio.sleep(TOOLBAR_EVERY)

    async def run(self) -> int:
        from aios_shell import __version__

        hello = self.conn.hello
        print(BANNER.format(version=__version__, home=self.home, pid=hello.get("kernel_pid"),
                            backend=one_line(hello.get("backend"), 20), model=one_line(hello.get("model"), 40)))
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch_sched())
        self.client.background = loop.create_task(self.client.pump())
        status = 0
        try:
            await self.permissions.start()
            self.asker.start()
            while True:
                try:
                    line = await self.read(default=self._typed)
                    self._typed = ""
                except PromptPaused:  # a permission question: it asks, then the prompt comes back as it was
                    self._typed = self.session.default_buffer.text
                    await self.asker.idle.wait()
                    continue
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not line.strip():
                    continue
                if (theme := top_theme(shlex_split(line))) is not None:  # the monitor runs here, attached too
                    status = await self._top(theme)
                    continue
                reply = await self.client.run(line)
                status = int(reply.get("status", 1))
                if reply.get("exit") is not None:
                    status = int(reply["exit"])
                    break
            await self._leaving()
            return status
        except (KernelGone, WireError):
            print(gone_line(self.home))
            return 1
        finally:
            self.asker.stop()
            for task in (watcher, self.client.background):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await self.conn.close()

    async def read(self, default: str = "") -> str:
        """A line; frames that come meanwhile (job reports) print above the prompt."""
        if not self.asker.idle.is_set():  # a permission question comes first
            await self.asker.idle.wait()
        pump = self.client.background
        assert pump is not None
        prompt = asyncio.get_running_loop().create_task(self._prompt(default))
        self._prompting = True
        self._prompt_gone.clear()
        try:
            done, _ = await asyncio.wait([pump, prompt], return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                prompt.cancel()
                pump.result()  # KernelGone
            return prompt.result()
        finally:
            self._prompting = False
            self._prompt_gone.set()
            if not prompt.done():
                prompt.cancel()
            with contextlib.suppress(BaseException):
                await prompt

    async def _pause_prompt(self) -> None:
        """Make the prompt step aside for a permission question and wait until it has let go of the terminal."""
        app = self.session.app
        if self._prompting and app.is_running:
            with contextlib.suppress(Exception):
                app.exit(exception=PromptPaused())
        await self._prompt_gone.wait()

    async def _top(self, theme: str) -> int:
        from aios_shell.tui.remote import attached_top

        try:
            conn = await Connection.open(self.home, self.client.user)
        except (OSError, RemoteError, WireError) as exc:
            print(f"top: {exc}")
            return 1
        return await attached_top(conn, self.home, theme or None)

    async def _prompt(self, default: str = "") -> str:
        with patch_stdout(raw=True):
            return await self.session.prompt_async(self.prompt(), default=default)

    async def _leaving(self) -> None:
        with contextlib.suppress(RemoteError, WireError):
            live = [p["pid"] for p in await self.conn.call("ps", user=self.client.user)]
            if not live:
                return
            noun = "agent goes" if len(live) == 1 else "agents go"
            print(f"aios: {len(live)} {noun} on in the kernel (pid {' '.join(map(str, live))}); "
                  "`aios ps`, `aios wait`, `aios logs` reach them from any terminal")
