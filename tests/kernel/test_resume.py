"""Crash recovery: a kernel that dies leaves EXITED(lost) processes with their conversation, and
`resume PID` starts one again as a new process (ppid = the old pid) that carries that conversation on."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from kernel.errors import InvalidArgument, NoSuchProcess, PermissionDenied
from kernel.kernel import Kernel, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.recovery import resume
from kernel.storage import Storage
from tests.conftest import make_config, until
from tests.shell.helpers import add_agent, session

# an agent that shows what it carries on, then asks the model with it (or with its argv)
RECALL = '''
import json

async def main(ctx):
    await ctx.print("history " + json.dumps(ctx.history))
    messages = ctx.history or [{"role": "user", "content": " ".join(ctx.argv)}]
    answer = await ctx.llm(messages)
    await ctx.print(answer.text)
    return 0
'''


async def crash(kernel: Kernel) -> None:
    """Leave `kernel` as a crash would: no shutdown, its rows as last committed, its processes unfinished."""
    kernel.close_storage()  # nothing it does from here on reaches the database
    tasks = [p.task for p in kernel.procs if p.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await kernel.backend.close()


async def lost_recall(home: Path) -> tuple[int, int]:
    """A first kernel runs `recall long` (still answering) and `recall short` (done), then dies: their pids."""
    add_agent(home, "recall", RECALL)
    first = await boot(make_config(home), backend=SimulatedBackend(decode_tps=20))
    done = first.spawn("recall", ["short"])
    await first.wait(done.pid)
    lost = first.spawn("recall", ["long"], nice=5)
    await until(lambda: lost.output and first.storage.messages(lost.pid))  # reading commits the batch
    await crash(first)
    return lost.pid, done.pid


async def test_a_lost_process_resumes_with_its_conversation(home: Path) -> None:
    lost_pid, done_pid = await lost_recall(home)
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue("carried on")
    async with await boot(make_config(home), backend=sim) as kernel:
        assert kernel.lost_at_boot == [lost_pid]
        old = kernel.lookup(lost_pid)
        assert old.status == "EXITED(lost)"
        assert kernel.lookup(done_pid).status == "EXITED(0)"  # a finished process is not lost
        history = [{"role": "user", "content": "long"}]
        assert [{k: m[k] for k in ("role", "content")} for m in kernel.storage.messages(lost_pid)] == history

        new = resume(kernel, lost_pid, "alice")
        assert new.pid > lost_pid and new.ppid == lost_pid
        assert (new.program, new.argv, new.user, new.nice) == ("recall", ("long",), "alice", 5)
        assert kernel.workspace(new) == home / "workspaces" / str(lost_pid)  # the old one's files
        assert new.history == history
        await kernel.wait(new.pid)
        assert new.status == "EXITED(0)"
        assert "".join(new.output).splitlines() == ["history " + json.dumps(history), "carried on"]
        assert sim.requests[-1].messages == history  # the model saw the old conversation
        # the new process keeps a conversation of its own, so it can be resumed in turn
        assert [m["role"] for m in kernel.storage.messages(new.pid)] == ["user", "assistant"]


async def test_a_finished_process_resumes_too(kernel: Kernel, home: Path) -> None:
    work = home.parent / "project"  # beside AIOS_HOME: a workspace inside it is refused
    work.mkdir()
    done = kernel.spawn("chat", ["short"], workspace=work)
    await kernel.wait(done.pid)
    again = resume(kernel, done.pid, "alice")
    assert again.ppid == done.pid and kernel.workspace(again) == work.resolve()
    assert [m["role"] for m in again.history] == ["user", "assistant"]
    assert again.history[0]["content"] == "short"
    await kernel.wait(again.pid)
    assert again.exit_code == 0


async def test_a_live_process_is_not_resumed(kernel: Kernel) -> None:
    proc = kernel.spawn("chat", ["long"])
    with pytest.raises(InvalidArgument, match=rf"^\({proc.pid}\) is still running$"):
        resume(kernel, proc.pid, "alice")
    with pytest.raises(NoSuchProcess, match=r"\(999\) - No such process"):
        resume(kernel, 999, "alice")


async def test_another_users_process_needs_an_admin(kernel: Kernel) -> None:
    bobs = kernel.spawn("chat", ["short"], user="bob")
    await kernel.wait(bobs.pid)
    with pytest.raises(PermissionDenied, match="alice may not resume bob's process"):
        resume(kernel, bobs.pid, "alice")
    again = resume(kernel, bobs.pid, "root")  # an admin may; the process stays bob's
    assert again.user == "bob" and again.ppid == bobs.pid
    await kernel.wait(again.pid)


async def test_a_kernel_that_died_after_boot_loses_its_processes(kernel: Kernel, home: Path) -> None:
    """Another aios on the same home died while this one runs: its processes can be resumed at once."""
    other = Storage(home)
    rows = {"dead": 2**22 + 12345, "live": os.getppid()}  # no such OS process; our parent, alive
    pids = {}
    for name, kernel_pid in rows.items():
        pids[name] = other.allocate_pid()
        other.db["processes"].insert({
            "pid": pids[name], "ppid": 0, "user": "alice", "program": "chat", "argv": '["short"]', "nice": 0,
            "state": "RUNNING", "created_at": 1.0, "kernel_pid": kernel_pid,
        })
    other.close()
    new = resume(kernel, pids["dead"], "alice")
    assert kernel.lookup(pids["dead"]).status == "EXITED(lost)"
    with pytest.raises(InvalidArgument, match="still running"):
        resume(kernel, pids["live"], "alice")
    await kernel.wait(new.pid)
    assert new.exit_code == 0 and new.argv == ("short",)


async def test_the_resume_command(home: Path) -> None:
    lost_pid, _ = await lost_recall(home)
    async with session(home) as s:
        assert await s.run(f"resume {lost_pid}") == 0
        out, err = s.take()
        assert out.startswith('history [{"role": "user", "content": "long"}]\n') and err == ""
        new = max(s.kernel.procs, key=lambda p: p.pid)
        assert new.ppid == lost_pid and new.status == "EXITED(0)"
        assert await s.run(f"resume {new.pid} &") == 0 and await s.run("wait") == 0  # in the background
        again = max(s.kernel.procs, key=lambda p: p.pid)
        assert again.ppid == new.pid and again.status == "EXITED(0)"
        assert [m["role"] for m in again.history] == ["user", "assistant"]  # the first resume's conversation
        s.take()
        assert await s.run("resume 999") == 1
        assert s.take()[1].strip() == "resume: (999) - No such process"
        assert await s.run("resume") == 2
        assert "the following arguments are required: pid" in s.take()[1]
