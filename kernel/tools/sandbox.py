"""Run one program in a subprocess with limits: wall time, CPU, memory, processes, file size, output.

`run_sandboxed(argv, cwd, limits)` execs `argv` directly (never through a shell) in its own session, with
RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE and RLIMIT_CORE=0 set in the child, stdin closed, and an
environment built from an allowlist (secret-looking names are never passed). stdout and stderr are read
together in chunks up to `output_bytes`. When the program exits, runs past `timeout_s`, fills the output cap
or the awaiting task is cancelled, the whole session is killed with SIGKILL and reaped, so no descendant
(a background `sleep`, a fork bomb) outlives the call.

Running as root: RLIMIT_NPROC does not bind root, so the child runs as a dedicated unprivileged uid/gid
(`SANDBOX_UID`, 65533 unless `AIOS_SANDBOX_UID` says otherwise; pick one nothing else uses) with no
supplementary groups, and the workspace directory is chowned to it so the program can write there. After a
run, a process of that uid that left its session with setsid (its session leader is gone, or was started by
init or by another sandboxed process) is killed too; one adopted by a subreaper other than init can survive.
All runs share the uid, so they share the `nproc` budget.

Not running as root: the child keeps the caller's uid; RLIMIT_NPROC counts all of that user's processes, so
the limit is the user's current count plus `nproc`, and a process that calls setsid escapes the cleanup
(it still carries the CPU, memory and file-size limits).

This is a resource sandbox, not a filesystem jail: the program sees the files its uid can see. Going over
RLIMIT_AS makes allocations fail inside the program (Python: MemoryError), it is not a kill.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import resource
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

MiB = 1 << 20
GiB = 1 << 30
SANDBOX_UID = int(os.environ.get("AIOS_SANDBOX_UID", "65533"))
SANDBOX_GID = SANDBOX_UID
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASS|CRED|AUTH|COOKIE|SESSION|PRIVATE|AWS_|OPENAI|ANTHROPIC|OLLAMA|GITHUB|HUGGING|HF_",
    re.IGNORECASE,
)
_CHUNK = 64 * 1024
_POLL_S = 0.01
_DRAIN_S = 2.0  # how long to wait for the output pipe to close once the session is dead


@dataclass
class Limits:
    """Limits of one sandboxed run."""

    timeout_s: float = 30.0
    cpu_s: int = 10
    memory_bytes: int = GiB
    nproc: int = 64
    output_bytes: int = MiB
    file_bytes: int = 64 * MiB


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended. `exit_code` is negative when a signal ended the program (-9: killed)."""

    exit_code: int
    output: str  # stdout and stderr interleaved, decoded as UTF-8 with replacement
    truncated: bool
    killed: str | None  # "timeout", "output", "cpu", "file size", "signal SIGSEGV", … or None
    duration_s: float


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name suggests it holds a credential."""
    return bool(_SECRET_NAME.search(name))


# git reads config that can run commands; a tool's git uses no system/global config and no hooks or fsmonitor
_GIT_GUARD = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_COUNT": "3",
    "GIT_CONFIG_KEY_0": "core.fsmonitor", "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "core.hooksPath", "GIT_CONFIG_VALUE_1": "/dev/null",
    "GIT_CONFIG_KEY_2": "core.pager", "GIT_CONFIG_VALUE_2": "cat",
}


def sandbox_env(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: an allowlist of the parent's, HOME=cwd, TERM=dumb, plus `extra` minus secrets."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ and not looks_secret(k)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=str(cwd), TERM="dumb")
    env.update(_GIT_GUARD)
    for k, v in (extra or {}).items():
        if not looks_secret(k):
            env[k] = v
    return env


def _as_root() -> bool:
    return os.geteuid() == 0


def _rlimit_setter(limits: Limits, dedicated_uid: bool) -> Callable[[], None]:
    """A preexec_fn that only calls setrlimit with values computed here, in the parent."""
    nproc = limits.nproc
    if not dedicated_uid:  # RLIMIT_NPROC counts every process of the real uid
        me = os.getuid()
        nproc += sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == me)
    cpu = max(1, int(limits.cpu_s))
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL one second later
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    pairs = []
    for res, soft, hard in wanted:
        _, cap = resource.getrlimit(res)
        if cap != resource.RLIM_INFINITY:
            soft, hard = min(soft, cap), min(hard, cap)
        pairs.append((res, (soft, hard)))

    def apply() -> None:
        for res, value in pairs:
            resource.setrlimit(res, value)

    return apply


def _check_program(program: str, cwd: Path, path: str) -> None:
    """FileNotFoundError when `program` is on no PATH entry (or, with a slash, not there relative to cwd).
    Checked here because exec reports EACCES, not ENOENT, when some PATH entry was unreadable to the child."""
    if "/" in program:
        found = (cwd / program).exists()
    else:
        found = shutil.which(program, path=path) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, "command not found", program)


def ensure_workspace(path: Path, give: bool = True) -> Path:
    """Create the workspace directory if needed; as root, give it to the sandbox uid so programs can write it
    (the fs tools give what they create there the same owner). A directory the user chose (`run -w DIR`) is
    never given away (`give=False`): there the sandboxed program has what the directory's modes allow."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if give and _as_root():
        st = os.stat(path)
        if (st.st_uid, st.st_gid) != (SANDBOX_UID, SANDBOX_GID):
            os.chown(path, SANDBOX_UID, SANDBOX_GID)
    return path


def _credentials(cwd: Path, give: bool = True) -> dict[str, object]:
    """Arguments that drop root to the sandbox uid (and let it write the workspace); none for other users."""
    if not _as_root():
        return {}
    ensure_workspace(cwd, give)
    return {"user": SANDBOX_UID, "group": SANDBOX_GID, "extra_groups": []}


def _kill_session(sid: int) -> None:
    """SIGKILL the process group and every process still in the session `sid`."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except OSError:
        pass
    me = os.getpid()
    for pid in psutil.pids():
        try:
            if pid != me and os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _sweep_escaped() -> None:
    """Kill processes of the sandbox uid that no live run owns: those whose session leader is gone or was not
    started by a process of another uid (they left their run's session with setsid). Runs of this or any
    other kernel are left alone: their leader's parent is the kernel."""
    table: dict[int, tuple[int, int]] = {}
    for p in psutil.process_iter(["uids", "ppid", "status"]):
        if p.info["uids"] is not None and p.info["status"] != psutil.STATUS_ZOMBIE:
            table[p.pid] = (p.info["uids"].real, p.info["ppid"] or 0)
    for pid, (uid, _) in table.items():
        if uid != SANDBOX_UID:
            continue
        try:
            leader = table.get(os.getsid(pid))
        except OSError:
            continue
        parent = table.get(leader[1]) if leader is not None else None
        if leader is None or leader[0] != SANDBOX_UID or leader[1] <= 1 or parent is None or parent[0] == SANDBOX_UID:
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


def _signal_name(code: int) -> str | None:
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


async def run_sandboxed(argv: list[str], cwd: Path, limits: Limits, env: dict[str, str] | None = None,
                        give_cwd: bool = True) -> SandboxResult:
    """Run `argv` in `cwd` under `limits`; raises FileNotFoundError/PermissionError when it cannot start.
    `give_cwd=False` leaves a directory the user chose to its owner (see `ensure_workspace`)."""
    if not argv:
        raise ValueError("empty command")
    cwd = Path(cwd)
    started = time.monotonic()
    child_env = sandbox_env(cwd, env)
    _check_program(argv[0], cwd, child_env["PATH"])
    creds = _credentials(cwd, give_cwd)
    spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=child_env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        preexec_fn=_rlimit_setter(limits, bool(creds)), **creds,  # type: ignore[arg-type]
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
        _kill_session(proc.pid)
        if creds:
            _sweep_escaped()
        try:
            await asyncio.wait_for(reader, _DRAIN_S)  # EOF once every writer of the pipe is dead
            await asyncio.wait_for(proc.wait(), _DRAIN_S)  # reaped
        except TimeoutError:  # a process outside the session still holds the pipe
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    if killed is None:
        killed = _signal_name(code)
    return SandboxResult(exit_code=code, output=out.decode("utf-8", errors="replace"),
                         truncated=capped.is_set(), killed=killed, duration_s=time.monotonic() - started)
