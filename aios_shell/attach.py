"""An `aios` attached to the kernel another process hosts: one-shot commands, `-c`, scripts and the shell.

The command line runs in the hosting process, in a shell of this client's own (see `aios_shell.host`); what it
prints comes back as frames and is written here, Ctrl-C and Ctrl-Z are passed on, and its exit status is ours.
When the kernel goes away, one line says so and the status is 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel.api import keep_colour, strip_controls
from kernel.api.wire import Connection, RemoteError, WireError

GONE = 3  # frames: the kernel went away while we waited


class KernelGone(Exception):
    """The kernel this client was attached to has gone."""


async def connect(home: Path, user: str | None = None) -> Connection | None:
    """The kernel of `home`, if one listens there (None: no socket, or a socket left by a kernel that is gone)."""
    try:
        return await Connection.open(home, user)
    except (FileNotFoundError, ConnectionRefusedError):
        return None


async def wait_for_kernel(home: Path, user: str | None = None, timeout: float = 120.0) -> Connection | None:
    """Another aios holds the home's host lock and is booting its kernel: attach once it listens (None if the
    lock's holder gives up or `timeout` passes first)."""
    from kernel.api import HostLock

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    while loop.time() < deadline:
        conn = await connect(home, user)
        if conn is not None:
            return conn
        probe = HostLock(home)
        if probe.acquire():  # the other one is gone without serving: nobody is starting it now
            probe.release()
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
    return None


def top_theme(args: list[str]) -> str | None:
    """For `aios top [--theme NAME]`: the theme ("" for the default); None for any other command line."""
    if args == ["top"]:
        return ""
    if len(args) == 3 and args[:2] == ["top", "--theme"]:
        return args[2]
    if len(args) == 2 and args[0] == "top" and args[1].startswith("--theme="):
        return args[1].split("=", 1)[1]
    return None


def gone_line(home: Path | str) -> str:
    return f"aios: the aios kernel for {home} has gone"


class Terminal:
    """Where a client's frames land: stdout, stderr, and the screen for `clear`."""

    def __init__(self) -> None:
        self.out = sys.stdout
        self.err = sys.stderr

    def show(self, frame: dict[str, Any]) -> None:
        # drawn by the kernel's shell (controls stripped there); stripped again here of all but colour
        if "out" in frame:
            self.out.write(_safe(frame["out"]))
            self.out.flush()
        elif "err" in frame:
            self.err.write(_safe(frame["err"]))
            self.err.flush()
        elif frame.get("clear") and self.out.isatty():
            self.out.write("\x1b[H\x1b[2J")
            self.out.flush()
        elif "gone" in frame:
            self.err.write(f"aios: {strip_controls(str(frame['gone']))}\n")
            self.err.flush()


def _safe(text: Any) -> str:
    """Text from the socket: every escape sequence gone except colour (our renderer's styles)."""
    return keep_colour(str(text))


class Client:
    """One attached `aios`: runs command lines in the kernel's process and shows what they print."""

    def __init__(self, conn: Connection, home: Path, interactive: bool = False) -> None:
        self.conn = conn
        self.home = home
        self.interactive = interactive
        self.term = Terminal()
        self.on_event: Callable[[dict[str, Any]], None] | None = None  # event frames (a subscription's)
        self.background: asyncio.Task[None] | None = None  # a pump for the client's life (the shell's)

    @property
    def user(self) -> str:
        return self.conn.user

    @property
    def admin(self) -> bool:
        return bool(self.conn.hello.get("admin"))

    def _drain(self) -> bool:
        """Show every frame that has come; False once the kernel has gone."""
        while not self.conn.unsolicited.empty():
            frame = self.conn.unsolicited.get_nowait()
            if frame is None:
                return False
            self._show(frame)
        return True

    def _show(self, frame: dict[str, Any]) -> None:
        if "event" in frame:
            if self.on_event is not None and isinstance(frame["event"], dict):
                self.on_event(frame["event"])
        else:
            self.term.show(frame)

    async def pump(self) -> None:
        """Show frames as they come (background job reports between commands), until the kernel goes."""
        while True:
            frame = await self.conn.unsolicited.get()
            if frame is None:
                raise KernelGone()
            self._show(frame)

    async def run(self, text: str, script: bool = False, signals: bool = True, tty: bool | None = None,
                  width: int | None = None) -> dict[str, Any]:
        """Run `text` in the kernel's process; its reply (`status`, `exit`, `live`) once it has ended."""
        width = width or shutil.get_terminal_size().columns
        _, reply = self.conn.request({
            "op": "run", "text": text, "script": script, "interactive": self.interactive,
            "tty": sys.stdout.isatty() if tty is None else tty,
            "err_tty": sys.stderr.isatty() if tty is None else tty, "width": width,
            "color": not os.environ.get("NO_COLOR"), "cwd": os.getcwd(),
        })
        loop = asyncio.get_running_loop()
        installed = []
        if signals:
            for signum, op in ((signal.SIGINT, "interrupt"), (signal.SIGTSTP, "suspend")):
                if signum == signal.SIGTSTP and not self.interactive:
                    continue
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.add_signal_handler(signum, self._pass_on, op)
                    installed.append(signum)
        pump = self.background or loop.create_task(self.pump())
        try:
            await asyncio.wait([reply, pump], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            if pump is not self.background:
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
        try:
            result = reply.result() if reply.done() else None
        except WireError:
            result = None
        if result is None or not self._drain():
            if result is None:
                raise KernelGone()
        if "error" in result:
            raise RemoteError(str(result["error"]), str(result.get("kind", "")))
        return result

    def _pass_on(self, op: str) -> None:
        with contextlib.suppress(WireError):
            self.conn.send({"op": op})


async def run_attached(conn: Connection, home: Path, command: str | None, args: list[str],
                       script_text: str | None) -> int:
    """`aios -c`, `aios FILE` and one-shot `aios CMD ARGS…`, attached; the exit status of what ran."""
    import shlex

    client = Client(conn, home)
    try:
        if command is not None:
            reply = await client.run(command, script=True)
        elif script_text is not None:
            reply = await client.run(script_text, script=True)
        else:
            reply = await client.run(shlex.join(args))
    except KernelGone:
        print(gone_line(home), file=sys.stderr)
        return 1
    except RemoteError as exc:
        print(f"aios: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    if reply.get("interrupted"):
        return 130
    code = reply.get("exit")
    return int(code if code is not None else reply.get("status", 1))
