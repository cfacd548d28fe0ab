"""The interactive shell of an `aios` attached to a kernel another process hosts.

Lines are read here (prompt-toolkit, history per user in AIOS_HOME) and run in the kernel's process, in a shell
of this terminal's own; job reports print above the prompt as they come. Leaving detaches: the agents started
here go on in the kernel, and any `aios` reaches them (`aios ps`, `aios wait`, `aios logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from aios_shell.attach import Client, KernelGone, gone_line
from kernel.api.wire import Connection, RemoteError, WireError
from kernel.sanitize import one_line

BANNER = ("aios {version} — attached to the kernel for {home} (pid {pid}: {backend} backend, model {model}). "
          "Type `help` for commands, `exit` or Ctrl-D to leave; agents started here go on.")
TOOLBAR_EVERY = 1.0  # seconds between the bottom bar's looks at the scheduler


class AttachedRepl:
    def __init__(self, conn: Connection, home: Path, input: Input | None = None,
                 output: Output | None = None) -> None:
        self.conn = conn
        self.home = home
        self.client = Client(conn, home, interactive=True)
        self.sched: dict[str, Any] = {}
        keys = KeyBindings()

        @keys.add("c-z")
        def _nothing_to_stop(event: Any) -> None:
            """Ctrl-Z at the prompt: nothing runs in the foreground (as in bash)."""

        self.session: PromptSession[str] = PromptSession(
            input=input, output=output, history=self._history(), bottom_toolbar=self.toolbar,
            refresh_interval=1.0, key_bindings=keys,
        )

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
        hello = self.conn.hello
        model = one_line(hello.get("model") or "", 24)
        sched = self.sched
        busy = sum(1 for s in sched.get("slots", ()) if s.get("pid") is not None)
        line = f" {one_line(self.client.user, 20)} │ {one_line(hello.get('backend'), 12)} {model} │ "
        if sched:
            line += (f"{one_line(sched.get('policy'), 10)} {busy}/{len(sched.get('slots', ()))} run, "
                     f"{sched.get('queued', 0)} queued │ ")
        return line + f"attached (kernel pid {hello.get('kernel_pid')}) "

    async def _watch_sched(self) -> None:
        while True:
            with contextlib.suppress(RemoteError):
                self.sched = await self.conn.call("sched", queue_limit=0)
            await asyncio.sleep(TOOLBAR_EVERY)

    async def run(self) -> int:
        from aios_shell import __version__

        hello = self.conn.hello
        print(BANNER.format(version=__version__, home=self.home, pid=hello.get("kernel_pid"),
                            backend=one_line(hello.get("backend"), 20), model=one_line(hello.get("model"), 40)))
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch_sched())
        status = 0
        try:
            while True:
                try:
                    line = await self.read()
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not line.strip():
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
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
            await self.conn.close()

    async def read(self) -> str:
        """A line; frames that come meanwhile (job reports) print above the prompt."""
        pump = asyncio.get_running_loop().create_task(self.client.pump())
        prompt = asyncio.get_running_loop().create_task(self._prompt())
        try:
            done, _ = await asyncio.wait([pump, prompt], return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                prompt.cancel()
                pump.result()  # KernelGone
            return prompt.result()
        finally:
            pump.cancel()
            for task in (pump, prompt):
                with contextlib.suppress(BaseException):
                    await task

    async def _prompt(self) -> str:
        with patch_stdout(raw=True):
            return await self.session.prompt_async(self.prompt())

    async def _leaving(self) -> None:
        with contextlib.suppress(RemoteError, WireError):
            live = [p["pid"] for p in await self.conn.call("ps", user=self.client.user)]
            if not live:
                return
            noun = "agent goes" if len(live) == 1 else "agents go"
            print(f"aios: {len(live)} {noun} on in the kernel (pid {' '.join(map(str, live))}); "
                  "`aios ps`, `aios wait`, `aios logs` reach them from any terminal")
