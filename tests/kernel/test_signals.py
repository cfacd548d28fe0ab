"""Each signal in each state, and renice: what users see in `ps` and what the kernel guarantees."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel.errors import NoSuchProcess, PermissionDenied
from kernel.events import SyscallPreempted, TokenGenerated
from kernel.kernel import Kernel, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal, State
from kernel.syscall import Pipe
from tests.conftest import make_config, until
from tests.shell.helpers import add_agent


def put_agent(home: Path, name: str, source: str) -> None:
    agents = home / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    (agents / f"{name}.py").write_text(source)


async def in_state(kernel: Kernel, state: str):
    """A process of `chat` brought into `state` (as `ps` prints it)."""
    sim = kernel.backend
    if state == "NEW":
        return kernel.spawn("chat", ["long"])
    if state == "READY":
        hogs = [kernel.spawn("chat", ["long"]) for _ in range(sim.slots)]
        await until(lambda: all(p.status == "RUNNING" for p in hogs))
        proc = kernel.spawn("chat", ["long"])
        await until(lambda: proc.status == "READY")
        return proc
    if state == "WAITING(llm)":
        sim.prefill_tps = 1.0  # a long prefill: dispatched, no token yet
        proc = kernel.spawn("chat", ["long"])
        await until(lambda: proc.status == "WAITING(llm)")
        return proc
    if state == "RUNNING":
        proc = kernel.spawn("chat", ["long"])
        await until(lambda: proc.status == "RUNNING" and "".join(proc.output))
        return proc
    if state == "STOPPED":
        proc = kernel.spawn("chat", ["long"])
        await until(lambda: proc.status == "RUNNING" and "".join(proc.output))
        kernel.signal(proc.pid, Signal.STOP)
        return proc
    raise AssertionError(state)


LIVE_STATES = ["NEW", "READY", "WAITING(llm)", "RUNNING", "STOPPED"]


@pytest.mark.parametrize("state", LIVE_STATES)
async def test_kill_ends_any_live_state_at_once(kernel: Kernel, state: str) -> None:
    proc = await in_state(kernel, state)
    assert proc.status == state
    kernel.signal(proc.pid, Signal.KILL)
    assert proc.status == "EXITED(SIGKILL)"  # at once, not after a round trip
    assert proc.exit_code == 137 and proc.term_signal == 9
    assert not kernel.dispatcher.calls_of(proc.pid)


@pytest.mark.parametrize("state", LIVE_STATES)
async def test_term_ends_any_live_state(kernel: Kernel, state: str) -> None:
    proc = await in_state(kernel, state)
    kernel.signal(proc.pid, Signal.TERM)
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(SIGTERM)"
    assert proc.exit_code == 143


@pytest.mark.parametrize("state", ["NEW", "READY", "WAITING(llm)", "RUNNING"])
async def test_stop_then_cont_finishes_with_the_same_answer(kernel: Kernel, sim: SimulatedBackend,
                                                            state: str) -> None:
    sim.decode_tps = 400
    proc = await in_state(kernel, state)
    kernel.signal(proc.pid, Signal.STOP)
    assert proc.status == "STOPPED"
    await until(lambda: proc.pid not in [c.pid for c in kernel.dispatcher.running.values()])
    tokens_at_stop = len(proc.output)
    seen: list[TokenGenerated] = []
    kernel.bus.on(seen.append, TokenGenerated)
    await asyncio.sleep(0.2)
    assert proc.status == "STOPPED"
    assert [e for e in seen if e.pid == proc.pid] == []  # a stopped process gets no model time
    assert len(proc.output) == tokens_at_stop
    kernel.signal(proc.pid, Signal.CONT)
    assert proc.status != "STOPPED"
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(0)"
    expected = sim.reply_for(sim.requests[0])
    assert "".join(proc.output).strip() == expected


async def test_stop_running_call_frees_its_slot_for_others(home: Path) -> None:
    sim = SimulatedBackend(slots=1, decode_tps=300, prefill_tps=10_000)
    async with await boot(make_config(home), backend=sim) as kernel:
        preempted: list[SyscallPreempted] = []
        kernel.bus.on(preempted.append, SyscallPreempted)
        first = kernel.spawn("chat", ["long"])
        await until(lambda: first.status == "RUNNING" and first.output)
        second = kernel.spawn("chat", ["short"])
        await until(lambda: second.status == "READY")
        kernel.signal(first.pid, Signal.STOP)
        await kernel.wait(second.pid)  # it got the slot while the first was stopped
        assert second.status == "EXITED(0)"
        assert first.status == "STOPPED"
        assert preempted and preempted[0].pid == first.pid and preempted[0].reason == "stopped"
        assert first.ctx_switches == 1
        kernel.signal(first.pid, Signal.CONT)
        await kernel.wait(first.pid)
        assert "".join(first.output).strip() == sim.reply_for(sim.requests[0])


async def test_stop_and_cont_are_idempotent(kernel: Kernel) -> None:
    proc = await in_state(kernel, "RUNNING")
    kernel.signal(proc.pid, Signal.CONT)  # not stopped: nothing happens
    assert proc.status == "RUNNING"
    kernel.signal(proc.pid, Signal.STOP)
    kernel.signal(proc.pid, Signal.STOP)
    assert proc.status == "STOPPED"
    kernel.signal(proc.pid, Signal.CONT)
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(0)"


@pytest.mark.parametrize("sig", list(Signal))
async def test_every_signal_on_an_exited_process_is_no_such_process(kernel: Kernel, sig: Signal) -> None:
    proc = kernel.spawn("chat", ["short"])
    await kernel.wait(proc.pid)
    with pytest.raises(NoSuchProcess, match=r"\(1\) - No such process"):
        kernel.signal(proc.pid, sig)
    assert proc.status == "EXITED(0)"


async def test_unknown_pid(kernel: Kernel) -> None:
    with pytest.raises(NoSuchProcess):
        kernel.signal(4242, Signal.TERM)


async def test_term_is_ignored_then_kill_after_grace(kernel: Kernel, home: Path) -> None:
    put_agent(home, "stubborn", (
        "import asyncio\n"
        "async def main(ctx):\n"
        "    while True:\n"
        "        try:\n"
        "            await asyncio.sleep(10)\n"
        "        except asyncio.CancelledError:\n"
        "            await ctx.print('ignoring TERM')\n"
    ))
    proc = kernel.spawn("stubborn")
    await until(lambda: proc.status == "RUNNING")
    kernel.signal(proc.pid, Signal.TERM)
    await until(lambda: "ignoring TERM" in "".join(proc.output))
    assert proc.alive
    await kernel.wait(proc.pid)  # the grace period (0.5 s here) ran out
    assert proc.status == "EXITED(SIGKILL)"


async def test_term_lets_an_agent_clean_up_and_exit_its_way(kernel: Kernel, home: Path) -> None:
    put_agent(home, "tidy", (
        "import asyncio\n"
        "async def main(ctx):\n"
        "    try:\n"
        "        await asyncio.sleep(10)\n"
        "    except asyncio.CancelledError:\n"
        "        return 3\n"
    ))
    proc = kernel.spawn("tidy")
    await until(lambda: proc.status == "RUNNING")
    kernel.signal(proc.pid, Signal.TERM)
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(3)"


async def test_a_second_term_does_not_cut_short_the_cleanup_the_first_began(kernel: Kernel, home: Path) -> None:
    put_agent(home, "tidy", (
        "import asyncio\n"
        "async def main(ctx):\n"
        "    try:\n"
        "        await asyncio.sleep(10)\n"
        "    except asyncio.CancelledError:\n"
        "        await ctx.print('cleaning')\n"
        "        await ctx.stdin.read()  # cleanup that takes a while: until the test closes the pipe\n"
        "        return 3\n"
    ))
    pipe = Pipe()
    proc = kernel.spawn("tidy", stdin=pipe)
    await until(lambda: proc.status == "RUNNING")
    kernel.signal(proc.pid, Signal.TERM)
    await until(lambda: "cleaning" in "".join(proc.output))
    kernel.signal(proc.pid, Signal.TERM)  # as a job's TERM reaches a child its parent also passes TERM to
    pipe.close()
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(3)"


async def test_a_crashing_agent_exits_1_and_others_go_on(kernel: Kernel, home: Path) -> None:
    put_agent(home, "broken", "async def main(ctx):\n    raise RuntimeError('boom')\n")
    good = kernel.spawn("chat", ["short"])
    bad = kernel.spawn("broken")
    await kernel.wait(bad.pid)
    await kernel.wait(good.pid)
    assert bad.status == "EXITED(1)" and bad.error == "RuntimeError: boom"
    assert good.status == "EXITED(0)"


async def test_an_agent_ended_by_a_kernel_error_exits_with_its_message_alone(kernel: Kernel, home: Path) -> None:
    put_agent(home, "orphan", "async def main(ctx):\n    await ctx.wait(999)\n")  # not its child
    proc = kernel.spawn("orphan")
    await kernel.wait(proc.pid)
    assert proc.status == "EXITED(1)" and proc.error == str(NoSuchProcess(999))


async def test_only_owner_or_admin_may_signal(kernel: Kernel) -> None:
    proc = kernel.spawn("chat", ["long"], user="alice")
    with pytest.raises(PermissionDenied):
        kernel.signal(proc.pid, Signal.KILL, sender="mallory")
    assert proc.alive
    kernel.signal(proc.pid, Signal.KILL, sender="root")
    assert proc.status == "EXITED(SIGKILL)"


async def test_renice_rules(kernel: Kernel) -> None:
    proc = kernel.spawn("chat", ["long"], user="alice")
    assert kernel.renice(proc.pid, 5, sender="alice").nice == 5
    with pytest.raises(PermissionDenied):
        kernel.renice(proc.pid, 0, sender="alice")  # lowering nice needs an admin
    with pytest.raises(PermissionDenied):
        kernel.renice(proc.pid, 10, sender="mallory")  # not the owner
    assert kernel.renice(proc.pid, -5, sender="root").nice == -5
    assert kernel.renice(proc.pid, 99, sender="alice").nice == 19  # clamped, as renice(1) does
    assert kernel.lookup(proc.pid).nice == 19
    row = kernel.storage.process_rows([proc.pid])[0]
    assert row["nice"] == 19
    kernel.signal(proc.pid, Signal.KILL)
    with pytest.raises(NoSuchProcess):
        kernel.renice(proc.pid, 1)


async def test_spawn_with_negative_nice_needs_admin(kernel: Kernel) -> None:
    with pytest.raises(PermissionDenied):
        kernel.spawn("chat", ["hi"], nice=-1, user="alice")
    proc = kernel.spawn("chat", ["hi"], nice=-1, user="root")
    assert proc.nice == -1


async def test_shutdown_hangs_up_live_processes(home: Path) -> None:
    kernel = await boot(make_config(home), backend=SimulatedBackend(decode_tps=20))
    proc = kernel.spawn("chat", ["long"])
    await until(lambda: proc.status in ("RUNNING", "WAITING(llm)"))
    await kernel.shutdown()
    assert proc.status == "EXITED(SIGHUP)"
    assert State.EXITED == proc.state


async def test_a_stopped_call_keeps_to_its_max_tokens_when_it_resumes(home: Path) -> None:
    """STOP takes the slot mid-answer; after CONT the call continues, and the whole answer is still no longer
    than the max_tokens it asked for (the resumed request asked for max_tokens again, from where it was)."""
    add_agent(home, "capped", "async def main(ctx):\n"
                              "    r = await ctx.llm([{'role': 'user', 'content': 'go'}], max_tokens=60)\n"
                              "    await ctx.write(f'{r.completion_tokens} {len(r.text.split())}')\n"
                              "    return 0\n")
    sim = SimulatedBackend(slots=1, decode_tps=200, prefill_tps=100_000)
    sim.enqueue(" ".join(f"w{i}" for i in range(300)))
    async with await boot(make_config(home), backend=sim) as kernel:
        proc = kernel.spawn("capped")
        await until(lambda: proc.usage().completion_tokens >= 20)
        kernel.signal(proc.pid, Signal.STOP)
        await until(lambda: proc.status == "STOPPED" and proc.inflight[0].slot is None)  # it gave its slot back
        kernel.signal(proc.pid, Signal.CONT)
        await kernel.wait(proc.pid)
        assert len(sim.requests) == 2  # asked again, from where it was
        assert "".join(proc.output) == "60 60" and proc.completion_tokens == 60
