"""Run one program under the sandbox and its limits, and make sure nothing of it is left afterwards.

The program is exec'd directly (never through a shell) with stdin closed; stdout and stderr are read together
up to the output cap. When it exits, runs past its time, fills the output cap or the awaiting task is cancelled,
its whole session is killed with SIGKILL and reaped. Under bubblewrap that kills bwrap, which takes the pid
namespace — every descendant, whatever session or process group it made — down with it. In the weaker
`rlimit` mode, processes of the run's uid that left its session are swept afterwards (as root only).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from kernel.tools.sandbox.limits import Limits, SandboxResult, rlimit_setter

_CHUNK = 64 * 1024
_POLL_S = 0.01
_DRAIN_S = 2.0  # how long to wait for the output pipe to close once the session is dead
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def check_program(program: str, cwd: Path, path: str) -> None:
    """FileNotFoundError when `program` is on no PATH entry (or, with a slash, not there relative to cwd)."""
    found = (cwd / program).exists() if "/" in program else shutil.which(program, path=path) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, "command not found", program)


def _child_setup(limits: Limits, dedicated_uid: bool, extra_procs: int, die_with_kernel: bool) -> Callable[[], None]:
    set_limits = rlimit_setter(limits, dedicated_uid, extra_procs)
    prctl = _libc.prctl

    def setup() -> None:
        if die_with_kernel:  # bwrap gets SIGKILL when the kernel's thread that started it dies
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        set_limits()

    return setup


def kill_session(sid: int, scan: bool = True) -> None:
    """SIGKILL the process group and (with `scan`) every process still in the session `sid`."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except OSError:
        pass
    if not scan:
        return
    me = os.getpid()
    for pid in psutil.pids():
        try:
            if pid != me and os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def sweep_escaped(uid: int) -> None:
    """Kill processes of `uid` that no live run owns: those whose session leader is gone or was not started by
    a process of another uid (they left their run's session with setsid). Only for the rlimit mode."""
    table: dict[int, tuple[int, int]] = {}
    for p in psutil.process_iter(["uids", "ppid", "status"]):
        if p.info["uids"] is not None and p.info["status"] != psutil.STATUS_ZOMBIE:
            table[p.pid] = (p.info["uids"].real, p.info["ppid"] or 0)
    for pid, (owner, _) in table.items():
        if owner != uid:
            continue
        try:
            leader = table.get(os.getsid(pid))
        except OSError:
            continue
        parent = table.get(leader[1]) if leader is not None else None
        if leader is None or leader[0] != uid or leader[1] <= 1 or parent is None or parent[0] == uid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


async def _pump(stream: asyncio.StreamReader, out: bytearray, cap: int, capped: asyncio.Event) -> None:
    """Read until EOF, keeping the first `cap` bytes in `out`; past the cap, set `capped` and discard the rest."""
    while chunk := await stream.read(_CHUNK):
        room = cap - len(out)
        if len(chunk) > room:
            chunk = chunk[:room]
            capped.set()
        out += chunk


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Wait for the program itself to exit. (Python 3.11's proc.wait() also waits for every holder of the
    output pipe, such as a background child, to close it; the return code is known earlier.)"""
    while proc.returncode is None:
        await asyncio.sleep(_POLL_S)


async def _supervise(proc: asyncio.subprocess.Process, capped: asyncio.Event, timeout_s: float) -> str | None:
    """Wait for the program to exit; 'timeout' or 'output' when a limit stops it first."""
    exited = asyncio.create_task(_exited(proc))
    full = asyncio.create_task(capped.wait())
    try:
        await asyncio.wait({exited, full}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        full.cancel()
        await asyncio.gather(exited, full, return_exceptions=True)
    if capped.is_set():
        return "output"
    return None if proc.returncode is not None else "timeout"


def signal_name(code: int) -> str | None:
    if code >= 0:
        return None
    sig = -code
    if sig == signal.SIGXCPU:
        return "cpu"
    if sig == signal.SIGXFSZ:
        return "file size"
    try:
        return f"signal {signal.Signals(sig).name}"
    except ValueError:
        return f"signal {sig}"


async def run_process(argv: list[str], cwd: Path, env: dict[str, str], limits: Limits, *, uid: int | None = None,
                      dedicated_uid: bool = False, extra_procs: int = 0, die_with_kernel: bool = False,
                      sweep_uid: int | None = None, pass_fds: tuple[int, ...] = (),
                      namespaced: bool = False) -> SandboxResult:
    """Start `argv` (as `uid` when given), supervise it under `limits`, and leave nothing of it behind.
    `namespaced`: argv is bwrap with its own pid namespace, so killing it kills all (no session scan)."""
    started = time.monotonic()
    creds: dict[str, object] = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
    spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds,
        preexec_fn=_child_setup(limits, dedicated_uid, extra_procs, die_with_kernel), **creds,  # type: ignore[arg-type]
    ))
    cancelled = False
    try:
        proc = await asyncio.shield(spawn)
    except asyncio.CancelledError:  # cancelled while starting: let it start, so its session can be killed
        proc = await spawn
        cancelled = True
    assert proc.stdout is not None
    out, capped = bytearray(), asyncio.Event()
    reader = asyncio.create_task(_pump(proc.stdout, out, limits.output_bytes, capped))
    killed: str | None = None
    try:
        if cancelled:
            raise asyncio.CancelledError
        killed = await _supervise(proc, capped, limits.timeout_s)
    finally:
        # on exit, limit or cancellation alike: nothing of the session survives, and no task is left behind
        kill_session(proc.pid, scan=not namespaced)
        if sweep_uid is not None:
            sweep_escaped(sweep_uid)
        try:
            await asyncio.wait_for(reader, _DRAIN_S)  # EOF once every writer of the pipe is dead
            await asyncio.wait_for(proc.wait(), _DRAIN_S)  # reaped
        except BaseException as exc:  # a holder outside the session, or cancelled again while cleaning up
            reader.cancel()
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
            if not isinstance(exc, TimeoutError):
                raise
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    if killed is None:
        killed = signal_name(code)
    return SandboxResult(exit_code=code, output=out.decode("utf-8", errors="replace"),
                         truncated=capped.is_set(), killed=killed, duration_s=time.monotonic() - started)
