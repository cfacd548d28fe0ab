"""What a sandboxed run may use, how it ended, and the environment it gets.

Limits are set as rlimits in the child before it execs (RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
RLIMIT_CORE=0); the wall-clock and output limits are kept by the runner. The environment is built from an
allowlist: secret-looking names are never passed, HOME is a private directory (never the workspace), Python's
user site directory is off, and git ignores every config file but the repository's own, never runs hooks,
fsmonitor or a pager, and does not take a workspace for a bare repository.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Callable
from dataclasses import dataclass

import psutil

MiB = 1 << 20
GiB = 1 << 30
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASS|CRED|AUTH|COOKIE|SESSION|PRIVATE|AWS_|OPENAI|ANTHROPIC|OLLAMA|GITHUB|HUGGING|HF_",
    re.IGNORECASE,
)


@dataclass
class Limits:
    """Limits of one sandboxed run."""

    timeout_s: float = 30.0
    cpu_s: int = 10
    memory_bytes: int = GiB
    nproc: int = 64
    output_bytes: int = MiB
    file_bytes: int = 64 * MiB
    tmp_bytes: int = 64 * MiB  # the private /tmp (a tmpfs of this size where bubblewrap can size one)


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


# git reads config that can run commands; a tool's git reads only the repository's own config, runs no hooks,
# fsmonitor or pager, and never takes a directory for a bare repository unless told with --git-dir
_GIT_GUARD_PAIRS = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("safe.bareRepository", "explicit"),
)
_GIT_GUARD = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
              "GIT_CONFIG_COUNT": str(len(_GIT_GUARD_PAIRS))}
for _i, (_key, _value) in enumerate(_GIT_GUARD_PAIRS):
    _GIT_GUARD[f"GIT_CONFIG_KEY_{_i}"] = _key
    _GIT_GUARD[f"GIT_CONFIG_VALUE_{_i}"] = _value
# per-user hooks of interpreters and tools that a program in the workspace could plant are off
_HOOKS_OFF = {"PYTHONNOUSERSITE": "1", "PIP_NO_INPUT": "1"}


def sandbox_env(home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: an allowlist of the parent's, HOME=`home`, TERM=dumb, plus `extra` minus
    secrets."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ and not looks_secret(k)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=home, TERM="dumb", TMPDIR="/tmp")
    env.update(_GIT_GUARD)
    env.update(_HOOKS_OFF)
    for k, v in (extra or {}).items():
        if not looks_secret(k):
            env[k] = v
    return env


def rlimit_setter(limits: Limits, dedicated_uid: bool, extra_procs: int = 0) -> Callable[[], None]:
    """A function for the child (before exec) that only calls setrlimit with values computed here.
    Without a dedicated uid, RLIMIT_NPROC counts every process of the caller's uid, so those are added;
    `extra_procs` counts the sandbox's own helpers (bubblewrap's two processes)."""
    nproc = limits.nproc + extra_procs
    if not dedicated_uid:
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
