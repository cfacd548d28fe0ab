"""An outside program as an aios process's child (`run ext -- CMD ARGS…`).

It runs in the tool sandbox (bubblewrap's namespaces, its user's uid as root, AIOS_HOME hidden) with the host's
network, so that it reaches the kernel's HTTP front on 127.0.0.1 and nothing of the kernel's state; its working
directory is its process's workspace (`run ext` in the shell: the shell's directory). The Python aios runs on
comes first on its PATH, so `python` there has the `ollama` and `openai` clients. What it writes (stdout and
stderr) is the process's output as it comes, control sequences stripped. `kill -STOP` / `kill -CONT` of the
process stop and continue it too; a process that ends (killed, hung up) takes it down. Its exit status is the
process's (128 + N after signal N).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from kernel.events import SignalDelivered
from kernel.process import Signal
from kernel.sanitize import strip_controls

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.process import Process

READ_MAX = 64 * 1024


def _tree(pid: int) -> list[psutil.Process]:
    try:
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    except psutil.Error:
        return []


def _signal_tree(pid: int, sig: int) -> None:
    for p in _tree(pid):
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


async def _pump(kernel: Kernel, proc: Process, child: asyncio.subprocess.Process, decoder: codecs.IncrementalDecoder
                ) -> int:
    """What the program writes, as the process's output as it comes (a streamed answer shows as it is written),
    until it exits; returns its exit code."""
    assert child.stdout is not None
    while data := await child.stdout.read(READ_MAX):
        kernel.emit_output(proc, strip_controls(decoder.decode(data)))
    kernel.emit_output(proc, strip_controls(decoder.decode(b"", final=True)))
    return await child.wait()


async def run_external(kernel: Kernel, proc: Process, argv: list[str], env: dict[str, str]) -> int:
    """Run `argv` for `proc` until it exits; returns its exit status."""
    if not argv:
        raise ValueError("no command to run")
    workspace: Path = kernel.workspace(proc)
    # the Python aios runs on first: `python` there has the ollama and openai clients
    path = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH") or os.environ.get("PATH", "")])
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=path)
    if program is None or not os.path.isfile(program):
        raise FileNotFoundError(2, "command not found", argv[0])
    argv = [os.path.abspath(program) if "/" in program else program, *argv[1:]]
    confined = await asyncio.to_thread(kernel.sandbox.confine, argv, workspace, user=proc.user,
                                       own=kernel.made_workspace(proc), net=True, memfd=True)
    child_env = {**confined.env, **env, "PATH": path}
    try:
        child = await asyncio.create_subprocess_exec(
            *confined.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=child_env, cwd=str(workspace), start_new_session=True,
            pass_fds=() if confined.fd is None else (confined.fd,))
    finally:
        confined.close()

    def forward(event: SignalDelivered) -> None:
        if event.pid == proc.pid and event.name in ("SIGSTOP", "SIGCONT"):
            _signal_tree(child.pid, signal.SIGSTOP if event.name == "SIGSTOP" else signal.SIGCONT)

    off = kernel.bus.on(forward, SignalDelivered)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        code = await _pump(kernel, proc, child, decoder)
    except asyncio.CancelledError:  # hung up, terminated or killed: so is the program
        if proc.pending_signal is not Signal.KILL:  # its model call just failed: let it say so and end, then TERM
            _signal_tree(child.pid, signal.SIGCONT)
            drained = asyncio.ensure_future(_pump(kernel, proc, child, decoder))  # its last words (its error)
            for sig in (None, signal.SIGTERM):
                if sig is not None:
                    for p in _tree(child.pid)[1:]:
                        with contextlib.suppress(psutil.Error):
                            if p.name() != "bwrap":
                                p.send_signal(sig)
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(drained), kernel.config.term_grace / 2)
                if drained.done():
                    break
            drained.cancel()
        for p in reversed(_tree(child.pid)):
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(child.wait(), 5)
        raise
    finally:
        off()
    return 128 - code if code < 0 else code
