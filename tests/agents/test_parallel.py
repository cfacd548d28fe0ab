"""`parallel`: one child per argument, their outputs in order, signals passed on, job control reaching the
children; and the tree it makes in `ps --forest`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kernel.kernel import Kernel, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Process, Signal
from kernel.syscall import Pipe
from tests.conftest import make_config, until
from tests.shell.helpers import session


async def run(kernel: Kernel, *argv: str, stdin: str | None = None) -> Process:
    proc = kernel.spawn("parallel", list(argv), stdin=None if stdin is None else Pipe(stdin, closed=True))
    await asyncio.wait_for(kernel.wait(proc.pid), 30)
    return proc


def out(proc: Process) -> str:
    return "".join(proc.output)


def children(kernel: Kernel, parent: Process) -> list[Process]:
    return [p for p in kernel.procs if p.ppid == parent.pid]


async def test_one_child_per_argument_and_their_outputs_in_argument_order(kernel: Kernel,
                                                                         sim: SimulatedBackend) -> None:
    sim.enqueue("first answer", "second answer", "third answer")
    proc = await run(kernel, "chat", "one", "two", "three")
    assert proc.status == "EXITED(0)", out(proc)
    kids = children(kernel, proc)
    assert [k.argv for k in kids] == [("one",), ("two",), ("three",)]
    assert all(k.program == "chat" and k.user == proc.user and k.nice == proc.nice for k in kids)
    assert out(proc).splitlines() == ["".join(k.output).strip() for k in kids]


async def test_tag_puts_the_argument_before_each_line_and_input_lines_are_the_arguments(
        kernel: Kernel, sim: SimulatedBackend) -> None:
    sim.enqueue("a fish", "a bird")
    proc = await run(kernel, "--tag", "chat", stdin="trout\n\nrobin\n")
    assert proc.status == "EXITED(0)", out(proc)
    assert out(proc).splitlines() == ["trout\ta fish", "robin\ta bird"]
    assert [k.argv for k in children(kernel, proc)] == [("trout",), ("robin",)]  # the empty line is no child


async def test_j_limits_how_many_children_run_at_once(home: Path) -> None:
    sim = SimulatedBackend(slots=4, decode_tps=400, prefill_tps=0)
    kernel = await boot(make_config(home), backend=sim)
    try:
        most = 0

        def count(_event: object) -> None:
            nonlocal most
            most = max(most, sum(1 for p in kernel.procs if p.alive and p.program == "workload"))

        kernel.bus.on(count)
        proc = await run(kernel, "-j", "2", "workload", "20", "20", "20", "20", "20")
        assert proc.status == "EXITED(0)", out(proc)
        assert len(children(kernel, proc)) == 5
        assert most == 2
    finally:
        await kernel.shutdown()


async def test_the_exit_status_counts_the_children_that_failed(kernel: Kernel) -> None:
    proc = await run(kernel, "workload", "5", "x", "5", "y")  # workload's usage error exits 2
    assert proc.exit_code == 2
    assert out(proc).count("exit status 2") == 2


async def test_bad_usage_and_an_unknown_agent_say_so(kernel: Kernel) -> None:
    proc = await run(kernel)
    assert proc.exit_code == 2 and "which agent?" in out(proc) and "usage: run parallel" in out(proc)
    proc = await run(kernel, "-j", "0", "chat", "x")
    assert proc.exit_code == 2 and "-j needs a number" in out(proc)
    proc = await run(kernel, "chat")
    assert proc.exit_code == 2 and "nothing to run" in out(proc)
    proc = await run(kernel, "nosuch", "a", "b")
    assert proc.exit_code == 127 and out(proc).count("no such agent: nosuch") == 1


async def test_a_signal_to_parallel_is_passed_on_to_its_children(home: Path) -> None:
    kernel = await boot(make_config(home), backend=SimulatedBackend(slots=4, decode_tps=20, prefill_tps=0))
    try:
        proc = kernel.spawn("parallel", ["workload", "400", "400"])
        await until(lambda: len(children(kernel, proc)) == 2)
        assert proc.status == "WAITING(child)"
        kernel.signal(proc.pid, Signal.TERM)
        await asyncio.wait_for(kernel.wait(proc.pid), 10)
        for kid in children(kernel, proc):
            await asyncio.wait_for(kernel.wait(kid.pid), 10)
            assert kid.status == "EXITED(SIGTERM)"
        assert proc.status == "EXITED(SIGTERM)"
    finally:
        await kernel.shutdown()


def slow() -> SimulatedBackend:
    return SimulatedBackend(slots=4, decode_tps=50, prefill_tps=0)


async def test_job_control_reaches_the_children_stop_cont_and_ctrl_c(home: Path) -> None:
    async with session(home, slow(), interactive=True) as s:
        line = asyncio.create_task(s.run("run parallel workload 400 400"))
        await until(lambda: len([p for p in s.kernel.procs if p.ppid == 1 and p.status == "RUNNING"]) == 2)
        s.shell.suspend()  # Ctrl-Z
        assert await line == 148
        kids = [p for p in s.kernel.procs if p.ppid == 1]
        assert [k.status for k in kids] == ["STOPPED", "STOPPED"]
        assert await s.run("bg") == 0
        assert all(k.status != "STOPPED" for k in kids)
        assert await s.run("kill -STOP %1") == 0
        assert all(k.status == "STOPPED" for k in kids)
        line = asyncio.create_task(s.run("fg"))
        await until(lambda: all(k.status != "STOPPED" for k in kids))
        s.shell.interrupt()  # Ctrl-C
        assert await line == 130
        for kid in kids:
            await asyncio.wait_for(s.kernel.wait(kid.pid), 10)
        assert [k.status for k in kids] == ["EXITED(SIGINT)", "EXITED(SIGINT)"]


async def test_killing_the_job_starts_none_of_the_children_still_waiting_for_room(home: Path) -> None:
    async with session(home, slow()) as s:
        await s.run("run parallel -j 1 workload 400 400 400 &")
        await until(lambda: any(p.ppid == 1 and p.status == "RUNNING" for p in s.kernel.procs))
        assert await s.run("kill %1; wait %1") == 143
        kids = [p for p in s.kernel.procs if p.ppid == 1]
        assert [(k.pid, k.status) for k in kids] == [(2, "EXITED(SIGTERM)")]  # the first freed room for nobody


async def test_kill_pid_signals_that_process_only(home: Path) -> None:
    async with session(home, slow()) as s:
        await s.run("run parallel workload 400 400 &")
        await until(lambda: len([p for p in s.kernel.procs if p.ppid == 1]) == 2)
        assert await s.run("kill -STOP 2") == 0
        parent, stopped, other = (s.kernel.procs.get(pid) for pid in (1, 2, 3))
        assert (parent.status, stopped.status) == ("WAITING(child)", "STOPPED")
        assert other.alive and other.status != "STOPPED"
        assert await s.run("kill %1; wait %1") == 143


async def test_ps_forest_draws_the_children_under_their_parent(home: Path) -> None:
    async with session(home, slow()) as s:
        await s.run("run workload 5; run parallel workload 400 400 &")
        await until(lambda: len([p for p in s.kernel.procs if p.ppid == 2]) == 2)
        s.take()
        await s.run("ps -a --forest")
        cmds = [line.split(maxsplit=9)[-1] for line in s.take()[0].splitlines()[1:]]
        assert cmds == ["workload 5", "parallel workload 400 400", "\\_ workload 400", "\\_ workload 400"]
        await s.run("kill %1; wait")
