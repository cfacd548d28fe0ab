"""Resource limits of the shell tool, through the kernel (allowed by a grant): CPU, memory, output, processes,
the uid it runs as, and what is left behind when the agent is killed or the call times out.

Limits are made small per test (`kernel.toolsvc.services["limits"]`), so each case ends in about a second.
"""

from __future__ import annotations

import asyncio
import os
import random

import psutil
import pytest

from kernel.kernel import Kernel
from kernel.process import Signal
from kernel.tools.sandbox import Limits, sandbox_uid
from tests.conftest import until
from tests.hostile.conftest import audit, call, processes_with, run_calls, start_calls

pytestmark = pytest.mark.hostile

MiB = 1 << 20


@pytest.fixture
def shell_ok(kernel: Kernel) -> Kernel:
    """Any shell command is allowed (the limits, not access control, are under test)."""
    kernel.access.grant("alice", "shell(*)", scope="always")
    kernel.toolsvc.services["limits"] = Limits(timeout_s=15, cpu_s=1, memory_bytes=512 * MiB, nproc=128,
                                               output_bytes=64 * 1024, file_bytes=8 * MiB)
    return kernel


def sandbox_zombies() -> int:
    """Killed runs' orphans of the sandbox uid that init has not reaped yet (they count against nproc)."""
    count = 0
    for p in psutil.process_iter(["uids", "status"]):
        uids = p.info["uids"]
        count += bool(uids and uids.real == sandbox_uid("alice") and p.info["status"] == psutil.STATUS_ZOMBIE)
    return count


def unique() -> str:
    """A marker that only this test's processes carry in their command line (as sleep's fraction)."""
    return f"{random.randrange(10**8, 10**9)}"


async def one_shell(kernel: Kernel, command: str) -> tuple[int, str]:
    proc, _ = await run_calls(kernel, [call("shell", command=command)])
    assert audit(kernel, proc.pid) == [("shell", "allow", "grant:always", {"command": command})]
    return proc.pid, "".join(proc.output)


async def test_an_endless_loop_is_killed_at_the_cpu_limit(shell_ok: Kernel) -> None:
    _, out = await one_shell(shell_ok, "sh -c 'while :; do :; done'")
    assert out.startswith("ERR ") and "[killed: cpu limit (1 s)]" in out, out


async def test_a_2_gib_allocation_fails(shell_ok: Kernel) -> None:
    _, out = await one_shell(shell_ok, "python3 -c 'b = bytearray(2 * 1024 ** 3); print(\"allocated\")'")
    assert "MemoryError" in out and "[exit 1]" in out and "allocated" not in out, out


async def test_100_mb_of_output_is_capped(shell_ok: Kernel) -> None:
    pid, out = await one_shell(shell_ok, "sh -c 'yes | head -c 100000000'")
    assert "[output truncated at 64 KiB]" in out
    assert 64 * 1024 <= len(out) < 64 * 1024 + 200
    proc = shell_ok.get(pid)
    assert sum(len(piece) for piece in proc.output) == len(out)
    assert len(shell_ok.storage.process_rows([pid])[0]["output"]) <= shell_ok.storage.OUTPUT_CAP


async def test_the_sandbox_drops_root(shell_ok: Kernel) -> None:
    _, out = await one_shell(shell_ok, "id -u")
    uid = out.removeprefix("ok ").strip()
    assert uid == str(sandbox_uid("alice") if os.geteuid() == 0 else os.getuid()), out
    assert uid != "0"


async def test_a_fork_bomb_is_stopped_and_the_machine_is_fine_afterwards(shell_ok: Kernel) -> None:
    marker = f"bomb-{unique()}"
    shell_ok.toolsvc.services["limits"] = Limits(timeout_s=3, cpu_s=2, memory_bytes=256 * MiB, nproc=32)
    pid, out = await one_shell(shell_ok, f"bash -c ':(){{ :|:& }};:' {marker}")
    assert out.startswith("ok "), out
    await until(lambda: not processes_with(marker), timeout=5)  # every copy of the bomb is gone
    if os.geteuid() == 0:  # its killed orphans go to init; once reaped, the uid's nproc budget is back
        await until(lambda: sandbox_zombies() == 0, timeout=15)
    _, again = await one_shell(shell_ok, "sh -c 'sleep 0 & wait; echo still fine'")
    assert again == "ok still fine\n"
    assert shell_ok.get(pid).status == "EXITED(0)"


async def test_killing_the_agent_mid_shell_leaves_no_descendant_and_no_task(shell_ok: Kernel) -> None:
    marker = unique()
    command = f"sh -c 'sleep 1000.{marker} & sleep 1001.{marker}'"
    before = set(asyncio.all_tasks())
    proc = start_calls(shell_ok, [call("shell", command=command)])
    await until(lambda: len([p for p in processes_with(marker) if "sleep" in p.name()]) >= 2)
    shell_ok.signal(proc.pid, Signal.KILL)
    assert not proc.alive and proc.term_signal == int(Signal.KILL)
    await until(lambda: not processes_with(marker), timeout=5)
    me = asyncio.current_task()
    await until(lambda: not [t for t in asyncio.all_tasks() - before if t is not me and not t.done()], timeout=5)
    assert audit(shell_ok, proc.pid) == [("shell", "allow", "grant:always", {"command": command})]


async def test_the_sandbox_timeout_leaves_no_descendant(shell_ok: Kernel) -> None:
    shell_ok.toolsvc.services["limits"] = Limits(timeout_s=1, cpu_s=5)
    marker = unique()
    before = set(asyncio.all_tasks())
    _, out = await one_shell(shell_ok, f"sh -c 'sleep 1000.{marker} & sleep 1001.{marker}'")
    assert "[killed: timeout after 1 s]" in out, out
    await until(lambda: not processes_with(marker), timeout=5)
    me = asyncio.current_task()
    assert not [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]


async def test_the_tool_timeout_cancels_the_run_and_leaves_no_descendant(shell_ok: Kernel,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's own timeout (shorter than the sandbox's here) cancels the run mid-way: cleanup still runs."""
    tool = shell_ok.tools.get("shell")
    assert tool is not None
    monkeypatch.setattr(tool, "timeout", 1.0)
    marker = unique()
    before = set(asyncio.all_tasks())
    _, out = await one_shell(shell_ok, f"sh -c 'sleep 1000.{marker} & sleep 1001.{marker}'")
    assert out == "ERR shell timed out after 1 s\n", out
    await until(lambda: not processes_with(marker), timeout=5)
    me = asyncio.current_task()
    assert not [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]


async def test_a_setsid_escape_is_swept(shell_ok: Kernel) -> None:
    """A grandchild that leaves the run's session (setsid) is still killed when the run ends (its pid
    namespace ends with the run)."""
    marker = unique()
    _, out = await one_shell(shell_ok, f"sh -c 'setsid sleep 1000.{marker} & sleep 0.2'")
    assert out.startswith("ok "), out
    await until(lambda: not processes_with(marker), timeout=5)
