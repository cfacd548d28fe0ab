"""Hosting the kernel of an AIOS_HOME: the host lock, the socket, and a shell for each attached client.

The first `aios` for a home takes the host lock (`flock` on AIOS_HOME/kernel.lock, released by the OS when the
process dies, however it dies), boots the kernel and serves it on AIOS_HOME/kernel.sock; every later `aios`
finds the socket answering and attaches. A client's command lines run here, in a `Shell` of its own that acts as
the client's user (from the socket), as tmux runs its clients' commands in its server: its output and its job
reports go back as frames, Ctrl-C and Ctrl-Z come as `interrupt` and `suspend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from aios_shell.completion import ShellCompleter
from aios_shell.shell import Shell
from kernel.api import Client, HostLock, Kernel, KernelServer, Signal, login_name, may_act_as
from kernel.api.wire import socket_path

__all__ = ["HostLock", "ShellSession", "front_end", "login_name", "may_host_as", "serve", "wait_for_clients"]

MAX_COMPLETE_TEXT = 4096  # characters before the cursor a completion looks at
MAX_COMPLETIONS = 1000  # candidates one Tab gets back


class FrameFile(io.TextIOBase):
    """A text stream whose writes go to a client as `out` (or `err`) frames."""

    def __init__(self, client: Client, stream: str, tty: bool) -> None:
        self.client = client
        self.stream = stream
        self.tty = tty

    def write(self, text: str) -> int:
        if text:
            self.client.send({self.stream: text})
        return len(text)

    def isatty(self) -> bool:
        return self.tty


def _console(client: Client, stream: str, tty: bool, width: int, color: bool) -> Console:
    return Console(file=FrameFile(client, stream, tty), force_terminal=tty, width=width,
                   color_system="standard" if tty and color else None, no_color=not color or None,
                   highlight=False, soft_wrap=False)


class ShellSession:
    """An attached client's shell: one command line at a time, run here as the client's user."""

    def __init__(self, kernel: Kernel, client: Client) -> None:
        self.kernel = kernel
        self.client = client
        self.shell: Shell | None = None
        self.running: asyncio.Task[None] | None = None
        self.completer: ShellCompleter | None = None
        self._models: asyncio.Task[None] | None = None  # (a reference, so that the task is not collected)

    def hello(self) -> dict[str, Any]:
        from commands.registry import load_all

        return {"commands": sorted(load_all())}  # names and aliases: `aios NAME` runs one, not a script NAME

    def _shell_for(self, frame: dict[str, Any]) -> Shell:
        tty = bool(frame.get("tty"))
        width = frame.get("width") if isinstance(frame.get("width"), int) else 160
        width = max(20, min(int(width), 1000))
        color = bool(frame.get("color", True))
        out = _console(self.client, "out", tty, width, color)
        err = _console(self.client, "err", bool(frame.get("err_tty", tty)), width, color)
        if self.shell is None:
            cwd = frame.get("cwd")
            self.shell = Shell(self.kernel, out=out, err=err, interactive=bool(frame.get("interactive")),
                               cwd=Path(cwd) if isinstance(cwd, str) and os.path.isabs(cwd) else None,
                               user=self.client.user)
            self.shell.remote = True
            if self.client.uid not in (os.geteuid(), 0):
                self.shell.foreign = login_name(os.geteuid())
            self.shell.clear_screen = lambda: self.client.send({"clear": True})
        else:
            self.shell.out, self.shell.err = out, err
        self.shell.captured = not tty
        return self.shell

    async def handle(self, frame: dict[str, Any]) -> bool:
        op = frame.get("op")
        if op == "run":
            rid = frame.get("id")
            text = frame.get("text")
            if not isinstance(text, str):
                self.client.send({"id": rid, "error": "text: not a string", "kind": "InvalidArgument"})
            elif self.running is not None and not self.running.done():
                self.client.send({"id": rid, "error": "a command line is still running", "kind": "busy"})
            else:
                shell = self._shell_for(frame)
                self.running = asyncio.get_running_loop().create_task(
                    self._run(shell, rid, text, bool(frame.get("script"))), name="aios-client-line")
            return True
        if op == "complete":
            text = frame.get("text")
            if not isinstance(text, str):
                self.client.send({"id": frame.get("id"), "error": "text: not a string", "kind": "InvalidArgument"})
            else:
                self.client.send({"id": frame.get("id"), "result": self.complete(text[-MAX_COMPLETE_TEXT:])})
            return True
        if op in ("interrupt", "suspend"):
            if self.shell is not None:
                (self.shell.interrupt if op == "interrupt" else self.shell.suspend)()
            return True
        return False

    def complete(self, text: str) -> list[list[Any]]:
        """Tab at the end of `text` in the client's shell: `[candidate, start]` pairs (start ≤ 0, from the cursor),
        as the hosting shell's own completer finds them for this client's user and jobs."""
        from prompt_toolkit.completion import CompleteEvent
        from prompt_toolkit.document import Document

        if self.shell is None:
            self._shell_for({"interactive": True})
        if self.completer is None:
            assert self.shell is not None
            model = self.kernel.backend.model
            self.completer = ShellCompleter(self.shell, [model] if model else [])
            self._models = asyncio.get_running_loop().create_task(self.completer.load_models())
        found = self.completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
        return [[c.text, c.start_position] for c in itertools.islice(found, MAX_COMPLETIONS)]

    async def _run(self, shell: Shell, rid: Any, text: str, script: bool) -> None:
        shell.ctl.interrupted = False
        try:
            status = await (shell.run_script(text) if script else shell.run_line(text))
        except Exception as exc:  # never a traceback, never a client left waiting
            shell.error(f"aios: internal error: {type(exc).__name__}: {exc}")
            status = 1
        live = [p.pid for p in shell.live_agents()]
        self.client.send({"id": rid, "status": status, "exit": shell.exit_code, "interrupted": shell.interrupted,
                          "live": live})

    async def close(self) -> None:
        """The client went away: its foreground job is hung up, as a closed terminal's is; its background
        agents go on (the kernel lives on, and `aios ps`, `wait` and `logs` reach them from anywhere)."""
        if self.shell is not None:
            job = self.shell.ctl.fg
            if job is not None:
                for proc in self.shell.family(job):
                    with contextlib.suppress(Exception):
                        self.shell.api.signal(proc.pid, Signal.HUP)
        if self.running is not None and not self.running.done():
            self.running.cancel()
            with contextlib.suppress(BaseException):
                await self.running


async def wait_for_clients(server: KernelServer, say: Callable[[str], None]) -> None:
    """Before the host stops the kernel: let attached clients' command lines end (another terminal's `wait`
    or `run` is not cut off because this one's script ended); idle clients are told the kernel is going."""
    running = [c.session.running for c in server.clients
               if isinstance(c.session, ShellSession) and c.session.running and not c.session.running.done()]
    if running:
        noun = "client's command" if len(running) == 1 else "clients' commands"
        say(f"waiting for {len(running)} attached {noun} to end before the kernel stops (Ctrl-C: stop now)")
        await asyncio.wait(running)


def may_host_as(kernel: Kernel) -> bool:
    """Whether this process's OS user may host the kernel as its configured user (`--user`, AIOS_USER)."""
    uid = os.getuid()
    return may_act_as(uid, login_name(uid), kernel.user, kernel.is_admin)


async def serve(kernel: Kernel) -> KernelServer:
    """Serve `kernel` on its home's socket (the caller holds the host lock)."""
    server = KernelServer(kernel, socket_path(kernel.config.home), sessions=lambda c: ShellSession(kernel, c))
    return await server.start()


async def front_end(kernel: Kernel, server: KernelServer | None, mode: str, command: str | None, args: list[str],
                    say: Callable[[str], None], is_script: Callable[[str], bool], hand_over: bool = False) -> int:
    """What the hosting `aios` does with its kernel: the shell (`repl`), a script or one command (`script`), or
    nothing but serve (`serve`); at its end, maybe hand the kernel over to a headless server (it goes on)."""
    from aios_shell.serve import Launcher, headless

    home = Path(kernel.config.home)
    if mode == "serve":
        assert server is not None
        server.headless = True
        return await headless(server.stopping, say, home)
    others = (lambda: sum(1 for c in server.clients if c.session is not None)) if server else (lambda: 0)
    if mode == "repl":
        from aios_shell.repl import Repl

        repl = Repl(kernel)
        repl.can_hand_over = lambda: server is not None and Launcher.can_hand_over()
        repl.attached = others
        status = await repl.run()
        if repl.handed_over and server is not None:
            return await _hand_over(server, home, say, len(repl.shell.live_agents()))
        return status
    if command is None and not args:  # `aios < script` or a pipe: run it as a script
        command = sys.stdin.read()
    shell = Shell(kernel)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, shell.interrupt)
    try:
        if command is not None:
            status = await shell.run_script(command)
        elif is_script(args[0]):
            try:
                text = Path(args[0]).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                say(f"{args[0]}: {exc}")
                return 1
            status = await shell.run_script(text)
        else:  # one command, quoted word by word: its arguments are never shell syntax
            status = await shell.run_line(shlex.join(args))
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    left = shell.live_agents()
    if hand_over and server is not None and Launcher.can_hand_over() and (left or others()):
        await _hand_over(server, home, say, len(left))
        return 130 if shell.interrupted else status
    if left:  # the kernel ends with the script: say so, rather than hang them up without a word
        pids = " ".join(str(p.pid) for p in left)
        noun = "agent" if len(left) == 1 else "agents"
        say(f"{len(left)} {noun} still running when the script ended, hung up (pid {pids}); "
            "end it with `wait` to let them finish, or run it with --hand-over to leave them running")
    return 130 if shell.interrupted else status


async def _hand_over(server: KernelServer, home: Path, say: Callable[[str], None], live: int) -> int:
    """Leave the terminal; the kernel goes on headless until `aios serve --stop`."""
    from aios_shell.serve import Launcher, headless

    noun = "agent goes" if live == 1 else "agents go"
    say(f"the kernel for {home} goes on headless (pid {os.getpid()}): {live} {noun} on; "
        "`aios ps` reaches them, `aios serve --stop` stops it")
    Launcher.hand_over(home)
    server.headless = True
    return await headless(server.stopping, say, home)
