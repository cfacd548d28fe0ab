"""`aios serve` (the kernel headless), `--detach`, `--stop`, and the hand-over of a hosting shell's kernel.

A hosting shell keeps its agents in its own process, so to hand them over it must leave the terminal without
ending: the `aios` the terminal started forks first, before any thread exists (`Launcher`). The parent only waits
— the terminal's shell waits on it — and passes on the signals sent to it; the child is the real `aios`. On
hand-over the child starts a session of its own (`setsid`: no terminal, no SIGHUP when it closes), points its
output at AIOS_HOME/serve.log and tells the parent to exit 0. The kernel goes on headless, as `aios serve` would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from kernel.api import process_running
from kernel.api.wire import Connection, RemoteError, WireError, short_path, socket_path

LOG_NAME = "serve.log"
PID_NAME = "serve.pid"
_PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP, signal.SIGCONT)
_WAITED = {*_PASSED_ON, signal.SIGCHLD, signal.SIGUSR1}


def kernel_answers(home: Path) -> bool:
    """Whether something listens on the home's socket (a quick look, without saying hello)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(short_path(socket_path(home)))
        return True
    except OSError:
        return False
    finally:
        sock.close()


class Launcher:
    """The fork that lets a hosting `aios` hand its kernel over and give the terminal back."""

    parent: int | None = None  # in the child: the waiting parent's pid

    @classmethod
    def start(cls) -> None:
        """Fork; the parent waits for the child and never returns. Skipped (no hand-over) where threads run."""
        if threading.active_count() > 1:
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)  # none lost between the fork and the wait
        parent = os.getpid()
        child = os.fork()
        if child == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)
            cls.parent = parent
            return
        _wait_for(child)

    @classmethod
    def can_hand_over(cls) -> bool:
        return cls.parent is not None

    @classmethod
    def hand_over(cls, home: Path) -> None:
        """Leave the terminal: a session of our own, output to the log, and the parent told to exit 0."""
        assert cls.parent is not None
        os.setsid()
        log = os.open(Path(home) / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.kill(cls.parent, signal.SIGUSR1)
        cls.parent = None


def _wait_for(child: int) -> NoReturn:
    """The parent: pass on what is sent to it (the terminal's own signals reach the child anyway), and exit as
    the child does, or with 0 when it says it has handed the kernel over."""
    while True:
        info = signal.sigwaitinfo(_WAITED)
        if info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                if code < 0:  # killed by a signal: so are we, for whoever waits on us
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)
                    signal.signal(-code, signal.SIG_DFL)
                    os.kill(os.getpid(), -code)
                os._exit(code if code >= 0 else 128 - code)
        elif info.si_signo == signal.SIGUSR1 and info.si_pid == child:
            os._exit(0)
        elif info.si_code <= 0 and info.si_signo in _PASSED_ON:  # sent by a process (kill), not the terminal
            try:
                os.kill(child, info.si_signo)
            except ProcessLookupError:
                pass


async def headless(stopping: asyncio.Event, say: Callable[[str], None], home: Path) -> int:
    """Serve until SIGTERM or SIGINT, or `aios serve --stop` (`stopping`); SIGHUP is ignored."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    pid_file = Path(home) / PID_NAME
    pid_file.write_text(f"{os.getpid()}\n")
    say(f"serving the kernel for {home} (pid {os.getpid()}); `aios serve --stop` or SIGTERM stops it")
    try:
        await stopping.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        pid_file.unlink(missing_ok=True)
    say("stopping: the kernel's agents are hung up")
    return 0


def detach(home: Path, argv: list[str], timeout: float = 120.0) -> int:
    """`aios serve --detach`: start `aios serve` in a session of its own, logging to AIOS_HOME/serve.log, and
    return once it answers on the socket."""
    if kernel_answers(home):
        print(f"aios: a kernel already serves {home}", file=sys.stderr)
        return 1
    Path(home).mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(Path(home) / LOG_NAME, "ab") as log:
        child = subprocess.Popen([sys.executable, "-m", "aios_shell.cli", *argv, "serve"], stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kernel_answers(home):
            print(f"aios: serving the kernel for {home} (pid {child.pid}); its log: {Path(home) / LOG_NAME}")
            return 0
        if child.poll() is not None:
            break
        time.sleep(0.05)
    tail = (Path(home) / LOG_NAME).read_text(errors="replace").splitlines()[-1:]
    print(f"aios: the server did not start{': ' + tail[0] if tail else ''}", file=sys.stderr)
    return 1


async def stop(home: Path, user: str | None, timeout: float = 60.0) -> int:
    """`aios serve --stop`: ask the home's headless kernel to stop, and wait until its process has gone."""
    try:
        conn = await Connection.open(home, user)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"aios: no kernel serves {home}", file=sys.stderr)
        return 1
    except RemoteError as exc:
        print(f"aios: {exc}", file=sys.stderr)
        return 1
    pid = int(conn.hello.get("kernel_pid") or 0)
    try:
        _, reply = conn.request({"op": "stop"})
        answer = await reply
    except WireError:
        answer = {}
    finally:
        await conn.close()
    if "error" in answer:
        print(f"aios: {answer['error']}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and _alive(pid):
        await asyncio.sleep(0.05)
    if _alive(pid):
        print(f"aios: the kernel (pid {pid}) is still stopping", file=sys.stderr)
        return 1
    print(f"aios: stopped the kernel for {home} (pid {pid})")
    return 0


def _alive(pid: int) -> bool:
    return pid > 0 and process_running(pid)
