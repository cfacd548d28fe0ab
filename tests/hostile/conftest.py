"""The hostile-input suite's helpers: a tiny tool-calling agent, runs through the kernel, audit and answers.

Every case goes through the kernel's syscall path (`ctx.tool` → access check → maybe a person → audit →
the tool), so a test sees what an agent sees and what the audit log keeps.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from kernel.events import PermissionRequested
from kernel.kernel import Kernel
from kernel.process import Process
from kernel.syscall import Pipe
from tests.conftest import until

# Calls come as JSON on stdin (so nothing secret sits in the process's argv) or in argv[0]; they run one after
# the other, and each result is one line: `ok OUTPUT` or `ERR ERROR`.
TOOLY = '''
import asyncio, json
async def main(ctx):
    piped = await ctx.stdin.read()
    calls = json.loads(piped or ctx.argv[0])
    if len(ctx.argv) > 1 and ctx.argv[1] == "parallel":
        results = await asyncio.gather(*(ctx.tool(c["tool"], **c["args"]) for c in calls))
    else:
        results = [await ctx.tool(c["tool"], **c["args"]) for c in calls]
    for r in results:
        await ctx.print(("ok " + r.output.rstrip()) if r.ok else ("ERR " + r.error))
    return 0
'''
SLEEPER = '''
import asyncio
async def main(ctx):
    await ctx.print("sleeping")
    await asyncio.sleep(3600)
    return 0
'''
REACT = "from agents.react import main  # noqa: F401\n"

MARKERS = ("\x1b", "\x9b", "\x9d", "\u202e", "\x07")  # what must never reach a terminal raw


@pytest.fixture(autouse=True)
def _agents(home: Path) -> None:
    """`tooly`, `sleeper` and `react` are spawnable in every hostile test."""
    agents = home / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / "tooly.py").write_text(TOOLY)
    (agents / "sleeper.py").write_text(SLEEPER)
    (agents / "react.py").write_text(REACT)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A directory whose workspaces the sandbox uid can reach (pytest's tmp dirs are root-only); removed after."""
    parent = Path(tempfile.mkdtemp(prefix="aios-hostile-"))
    parent.chmod(0o755)
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args}


def start_calls(kernel: Kernel, calls: list[dict[str, Any]], *, user: str | None = None,
                workspace: Path | None = None, parallel: bool = False) -> Process:
    """Spawn `tooly` on `calls` (given on its stdin); returns at once."""
    argv = ["", "parallel"] if parallel else []
    return kernel.spawn("tooly", argv, user=user, workspace=workspace, stdin=Pipe(json.dumps(calls), closed=True))


async def run_calls(kernel: Kernel, calls: list[dict[str, Any]], *, user: str | None = None,
                    workspace: Path | None = None, parallel: bool = False) -> tuple[Process, list[str]]:
    """Run `calls` through the kernel as one agent; its exit and its output lines, one per call."""
    proc = start_calls(kernel, calls, user=user, workspace=workspace, parallel=parallel)
    await asyncio.wait_for(kernel.wait(proc.pid), 60)
    assert proc.exit_code == 0, proc.error
    return proc, "".join(proc.output).splitlines()


def audit(kernel: Kernel, pid: int | None = None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(tool, decision, by, args) of each audit row, oldest first."""
    return [(r["tool"], r["decision"], r["by"], r["args"]) for r in kernel.access.audit_rows(pid=pid)]


def watch_requests(kernel: Kernel) -> list[PermissionRequested]:
    seen: list[PermissionRequested] = []
    kernel.bus.on(seen.append, PermissionRequested)
    return seen


async def answer_next(kernel: Kernel, decision: str, timeout: float = 10.0) -> PermissionRequested:
    """Wait for a pending permission request and answer the oldest one."""
    await until(lambda: bool(kernel.permissions.pending()), timeout)
    request = kernel.permissions.pending()[0]
    assert kernel.permissions.answer(request.request_id, decision)
    return request


def no_control_bytes(text: str) -> list[str]:
    """The terminal-control characters found in `text` (none is the only good answer)."""
    return [repr(m) for m in MARKERS if m in text]


def processes_with(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions `marker`."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
