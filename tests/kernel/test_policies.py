"""Scheduling policies: the order each gives, aging, fairness, preemption, live switches."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.events import SyscallDispatched, SyscallPreempted, TokenGenerated
from kernel.kernel import Kernel, boot
from kernel.llm.backend import BackendUnavailable, LLMRequest
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Process, Signal
from kernel.scheduler import POLICIES, make_policy
from kernel.scheduler.policy import SWITCH_SHARE
from kernel.syscall import LLMCall
from tests.conftest import make_config, until


def fake_call(sid: int, pid: int, user: str = "alice", nice: int = 0, queued_at: float = 0.0,
              max_tokens: int = 256) -> LLMCall:
    proc = Process(pid=pid, ppid=0, user=user, program="chat", argv=(), nice=nice)
    call = LLMCall(sid=sid, proc=proc, request=LLMRequest([{"role": "user", "content": "x"}], max_tokens=max_tokens))
    call.queued_at = call.submitted_at = queued_at
    return call


def drain(policy) -> list[int]:  # noqa: ANN001
    out = []
    while (call := policy.pop()) is not None:
        out.append(call.pid)
    return out


async def test_fifo_keeps_arrival_order_even_after_a_requeue() -> None:
    policy = make_policy("fifo")
    calls = [fake_call(i, pid=i) for i in range(1, 5)]
    for call in calls:
        policy.push(call)
    assert policy.remove(calls[1])
    policy.push(calls[1])  # CONT after STOP: back in its original place
    assert drain(policy) == [1, 2, 3, 4]


async def test_priority_orders_by_nice_and_aging_ends_starvation() -> None:
    policy = make_policy("priority", aging=0.05)
    policy.push(fake_call(1, pid=1, nice=19, queued_at=100.0))
    for i in range(2, 200):  # a steady stream of nice 0 arrivals, 0.01 s apart
        policy.push(fake_call(i, pid=i, nice=0, queued_at=100.0 + i * 0.01))
    order = drain(policy)
    # nice 19 is worth 19 × 0.05 = 0.95 s of waiting: it goes before every call that came 0.95 s later
    assert order.index(1) < len(order) - 1
    assert order[: order.index(1)] == list(range(2, 2 + order.index(1)))
    assert all(100.0 + pid * 0.01 <= 100.95 + 1e-9 for pid in order[: order.index(1)])
    strict = make_policy("priority", aging=1000.0)
    for pid, nice in ((1, 10), (2, 0), (3, 5), (4, -3)):
        strict.push(fake_call(pid, pid=pid, nice=nice, queued_at=1.0))
    assert drain(strict) == [4, 2, 3, 1]


async def test_las_serves_the_least_attained_first() -> None:
    policy = make_policy("las", base=10)
    heavy, light, fresh = fake_call(1, pid=1), fake_call(2, pid=2), fake_call(3, pid=3)
    for _ in range(50):
        policy.on_token(heavy)
    for _ in range(12):
        policy.on_token(light)
    for call in (heavy, light, fresh):
        policy.push(call)
    assert drain(policy) == [3, 2, 1]


async def test_srpt_serves_the_shortest_first_and_waiting_ends_starvation() -> None:
    policy = make_policy("srpt", age=100)
    policy.push(fake_call(1, pid=1, max_tokens=500, queued_at=10.0))
    for i in range(2, 800):  # a steady stream of 20-token calls, 0.01 s apart
        policy.push(fake_call(i, pid=i, max_tokens=20, queued_at=10.0 + i * 0.01))
    order = drain(policy)
    # 480 tokens more is worth 4.8 s of waiting: the long call goes before every short one asked later than that
    ahead = order[: order.index(1)]
    assert ahead == list(range(2, 2 + len(ahead))) and 0 < len(ahead) < 798
    assert all(10.0 + pid * 0.01 <= 14.8 + 1e-9 for pid in ahead)
    assert all(10.0 + pid * 0.01 >= 14.8 - 1e-9 for pid in order[order.index(1) + 1:])
    partial = fake_call(500, pid=500, max_tokens=300, queued_at=20.0)
    partial.chunks = 290  # preempted with 10 tokens to go: it is as short as a fresh 10-token call
    fresh = fake_call(501, pid=501, max_tokens=50, queued_at=20.0)
    policy.push(fresh)
    policy.push(partial)
    assert drain(policy) == [500, 501]


async def test_srpt_estimates_from_a_processs_earlier_answers() -> None:
    policy = make_policy("srpt")
    chatty, terse = fake_call(1, pid=1, max_tokens=256), fake_call(2, pid=2, max_tokens=256)
    assert policy.remaining(chatty) == policy.remaining(terse) == 256  # nothing known: what they may write
    for call, used in ((chatty, 200), (terse, 10)):
        call.chunks = used
        policy.on_done(call)
        assert call.pid not in policy.answers  # not answered (preempted, failed or killed): nothing learnt
        call.answered = True
        policy.on_done(call)
    again = fake_call(3, pid=2, max_tokens=256)
    assert policy.remaining(again) == 20  # twice its average answer
    again.chunks = 25  # it outgrew the estimate: back to what it may still write
    assert policy.remaining(again) == 231
    assert policy.remaining(fake_call(4, pid=1, max_tokens=256)) == 256  # 2 × 200 is above max_tokens
    policy.push(fake_call(5, pid=1, max_tokens=256, queued_at=1.0))
    policy.push(fake_call(6, pid=2, max_tokens=256, queued_at=1.0))
    assert drain(policy) == [2, 1]


async def test_srpt_preempts_only_for_a_much_shorter_call_when_asked() -> None:
    running = fake_call(1, pid=1, max_tokens=1000)
    running.segment_tokens = running.chunks = 40
    for ratio, expected in ((0, False), (4, True), (100, False)):
        policy = make_policy("srpt", ratio=ratio, quantum=32)
        assert not policy.should_preempt(running)  # nobody waits
        policy.push(fake_call(2, pid=2, max_tokens=20))
        assert policy.should_preempt(running) is expected


async def test_srpt_takes_the_slot_from_the_running_call_with_the_most_left() -> None:
    policy = make_policy("srpt", ratio=2, quantum=8)
    nearly_done, far_from_done = fake_call(1, pid=1, max_tokens=200), fake_call(2, pid=2, max_tokens=1000)
    for call in (nearly_done, far_from_done):
        call.segment_tokens = call.chunks = 150
        policy.on_dispatch(call)
    policy.push(fake_call(3, pid=3, max_tokens=10))
    assert not policy.should_preempt(nearly_done)  # 50 left: yielding would be allowed, but the other has 850
    assert policy.should_preempt(far_from_done)
    policy.on_done(far_from_done)  # it has gone: now the nearly done one is the one to ask
    assert policy.should_preempt(nearly_done)


async def test_rr_preempts_after_a_slice_only_when_someone_waits() -> None:
    policy = make_policy("rr", slice=4)
    running = fake_call(1, pid=1)
    running.segment_tokens = 4
    assert not policy.should_preempt(running)
    policy.push(fake_call(2, pid=2))
    assert policy.should_preempt(running)


async def test_fair_alternates_users_whatever_their_process_counts() -> None:
    policy = make_policy("fair", slice=8)
    calls = [fake_call(i, pid=i, user="alice") for i in range(1, 6)] + [fake_call(9, pid=9, user="bob")]
    for call in calls:
        policy.push(call)
    first = policy.pop()
    for _ in range(20):
        policy.on_token(first)
    second = policy.pop()
    assert {first.proc.user, second.proc.user} == {"alice", "bob"}


async def test_unknown_policy_or_parameter_is_one_line() -> None:
    with pytest.raises(ValueError, match="unknown policy 'lottery'"):
        make_policy("lottery")
    with pytest.raises(ValueError, match="has no parameter 'slice'"):
        make_policy("las", slice=3)


async def kernel_with(home: Path, policy: str, slots: int = 1, tps: float = 2000.0, **cfg: object) -> Kernel:
    sim = SimulatedBackend(slots=slots, decode_tps=tps, prefill_tps=1e6, seed=3)
    return await boot(make_config(home, policy=policy, **cfg), backend=sim)


@pytest.mark.parametrize("policy", ["rr", "las", "fair", "priority"])
async def test_preempted_calls_finish_with_the_uninterrupted_text(home: Path, policy: str) -> None:
    async with await kernel_with(home, policy, slots=1, tps=1000, slice=4) as kernel:
        preempted: list[SyscallPreempted] = []
        kernel.bus.on(preempted.append, SyscallPreempted)
        procs = [kernel.spawn("chat", ["long"], user=u, nice=n) for u, n in
                 (("alice", 0), ("bob", 0), ("root", -5), ("alice", 0))]
        for p in procs:
            await kernel.wait(p.pid)
        sim = kernel.backend
        for p in procs:
            assert p.status == "EXITED(0)"
            assert "".join(p.output).strip() == sim.reply_for(LLMRequest([{"role": "user", "content": "long"}]))
        assert preempted, "the policy never preempted anybody"
        assert sum(p.ctx_switches for p in procs) == len(preempted)


async def test_srpt_lets_a_short_call_pass_queued_long_ones_and_preempts_when_asked(home: Path) -> None:
    async with await kernel_with(home, "srpt", slots=1, tps=500) as kernel:
        dispatched: list[int] = []
        kernel.bus.on(lambda e: dispatched.append(e.pid), SyscallDispatched)
        first = kernel.spawn("workload", ["150:0"])
        await until(lambda: dispatched == [first.pid])
        queued_long = kernel.spawn("workload", ["150:0"])
        short = kernel.spawn("workload", ["10:0"])
        await until(lambda: len(kernel.dispatcher.queue()) == 2)
        for p in (first, queued_long, short):
            await kernel.wait(p.pid)
        assert dispatched == [first.pid, short.pid, queued_long.pid]  # the running call kept its slot
        assert not any(p.ctx_switches for p in (first, queued_long, short))

        kernel.dispatcher.set_policy(make_policy("srpt", ratio=4, quantum=8))
        preempted: list[SyscallPreempted] = []
        kernel.bus.on(preempted.append, SyscallPreempted)
        long = kernel.spawn("workload", ["150:0"])
        await until(lambda: any(c.pid == long.pid and c.chunks > 20 for c in kernel.dispatcher.running.values()))
        short = kernel.spawn("workload", ["10:0"])
        await kernel.wait(short.pid)
        assert long.alive and [e.pid for e in preempted] == [long.pid]
        await kernel.wait(long.pid)
        answer = [m["content"] for m in kernel.storage.messages(long.pid) if m["role"] == "assistant"]
        whole = kernel.backend.reply_for(LLMRequest([{"role": "user", "content": "Work on the task."}],
                                                    options={"tokens": 150}))
        assert answer == [whole.strip()]  # the same text as without the switch


async def test_one_waiting_call_takes_one_slot_from_the_call_with_the_most_left(home: Path) -> None:
    async with await kernel_with(home, "srpt", slots=2, tps=400) as kernel:
        kernel.dispatcher.set_policy(make_policy("srpt", ratio=2, quantum=4))
        preempted: list[SyscallPreempted] = []
        kernel.bus.on(preempted.append, SyscallPreempted)
        shorter, longer = kernel.spawn("workload", ["120:0"]), kernel.spawn("workload", ["400:0"])
        await until(lambda: sum(c.chunks > 8 for c in kernel.dispatcher.running.values()) == 2)
        short = kernel.spawn("workload", ["6:0"])
        await kernel.wait(short.pid)
        assert [e.pid for e in preempted] == [longer.pid]  # not both, and not the one nearly done
        for p in (shorter, longer):
            await kernel.wait(p.pid)
            assert p.status == "EXITED(0)"


async def test_srpt_learns_only_from_answers_not_from_failed_attempts(home: Path) -> None:
    async with await kernel_with(home, "srpt", slots=1, tps=500) as kernel:
        kernel.backend.enqueue(BackendUnavailable("the model server went away"), "one two three")
        proc = kernel.spawn("workload", ["3:30"])  # one call, then a long tool wait: still alive to look at
        await until(lambda: proc.pid in kernel.dispatcher.policy.answers)
        assert kernel.dispatcher.retried == 1
        assert kernel.dispatcher.policy.answers[proc.pid] == (1, 3)  # the failed attempt taught it nothing
        kernel.signal(proc.pid, Signal.KILL)
        await kernel.wait(proc.pid)


@pytest.mark.parametrize("policy", ["las", "srpt", "fair"])
async def test_an_exited_process_leaves_nothing_in_the_policy(home: Path, policy: str) -> None:
    async with await kernel_with(home, policy, slots=1, tps=500) as kernel:
        state = {"las": "attained", "srpt": "answers", "fair": "proc_vt"}[policy]
        running = kernel.spawn("workload", ["40:0", "40:0"])
        await until(lambda: running.pid in getattr(kernel.dispatcher.policy, state))
        queued = kernel.spawn("workload", ["20:0"])
        await until(lambda: len(kernel.dispatcher.queue()) == 1)
        kernel.signal(queued.pid, Signal.KILL)
        kernel.signal(running.pid, Signal.KILL)
        await kernel.wait(queued.pid)
        await kernel.wait(running.pid)
        assert not {running.pid, queued.pid} & set(getattr(kernel.dispatcher.policy, state))


async def test_las_lets_short_agents_overtake_long_ones(home: Path) -> None:
    async with await kernel_with(home, "las", slots=1, tps=500) as kernel:
        kernel.dispatcher.set_policy(make_policy("las", base=32, quantum=8))
        dispatched: list[int] = []
        kernel.bus.on(lambda e: dispatched.append(e.pid), SyscallDispatched)
        longs = [kernel.spawn("chat", ["long"]) for _ in range(2)]
        await until(lambda: sum(len(p.output) for p in longs) > 40)
        short = kernel.spawn("chat", ["short"])
        await kernel.wait(short.pid)
        assert any(p.alive for p in longs)  # it finished while long agents still ran
        for p in longs:
            await kernel.wait(p.pid)


async def test_fair_bounds_the_gap_between_backlogged_users(home: Path) -> None:
    async with await kernel_with(home, "fair", slots=1, tps=2000, slice=16) as kernel:
        served: dict[str, int] = {"alice": 0, "bob": 0}
        gaps: list[int] = []
        owner: dict[int, str] = {}

        def count(event: TokenGenerated) -> None:
            served[owner[event.pid]] += 1
            if all(any(p.alive for p in procs if p.user == u) for u in served):
                gaps.append(abs(served["alice"] - served["bob"]))

        kernel.bus.on(count, TokenGenerated)
        procs = [kernel.spawn("chat", ["long"], user="alice") for _ in range(4)]
        procs += [kernel.spawn("chat", ["long"], user="bob")]
        owner.update({p.pid: p.user for p in procs})
        await kernel.wait(procs[-1].pid)
        for p in procs:
            kernel.signal(p.pid, Signal.KILL) if p.alive else None
        # one slice, plus the tokens on either side of a switch, plus what a call makes while it pays for the
        # switch that would preempt it (`worth_switching`: at most SWITCH_SHARE of its time on the slot)
        cost = max((p.switch_cost_s / p.ctx_switches for p in procs if p.ctx_switches), default=0.0)
        assert max(gaps) <= 16 + 2 + 2000 * cost / SWITCH_SHARE + 2, (max(gaps), cost)
        assert served["bob"] >= 150


async def test_a_live_switch_loses_no_queued_call(home: Path) -> None:
    async with await kernel_with(home, "fifo", slots=1, tps=1000) as kernel:
        dispatched: list[int] = []
        kernel.bus.on(lambda e: dispatched.append(e.pid), SyscallDispatched)
        procs = [kernel.spawn("chat", ["short" if i % 2 else "long"]) for i in range(10)]
        await until(lambda: len(kernel.dispatcher.queue()) == 9)
        for name in ("las", "rr", "fair", "priority", "fifo", "las"):
            kernel.sched(name)
            assert len(kernel.dispatcher.queue()) + len(kernel.dispatcher.running) == 10 - sum(
                not p.alive for p in procs)
        kernel.sched(slots=3)
        for p in procs:
            await kernel.wait(p.pid)
        assert all(p.status == "EXITED(0)" for p in procs)
        assert set(dispatched) == {p.pid for p in procs}
        assert kernel.dispatcher.slots == 3


async def test_renice_moves_a_queued_call(home: Path) -> None:
    async with await kernel_with(home, "priority", slots=1, tps=300) as kernel:
        blocker = kernel.spawn("chat", ["long"])
        await until(lambda: blocker.status == "RUNNING")
        a = kernel.spawn("chat", ["short"], user="root")
        b = kernel.spawn("chat", ["short"], user="root")
        await until(lambda: len(kernel.dispatcher.queue()) == 2)
        assert [c.pid for c in kernel.dispatcher.queue()] == [a.pid, b.pid]
        kernel.renice(b.pid, -10, sender="root")
        assert [c.pid for c in kernel.dispatcher.queue()] == [b.pid, a.pid]
        kernel.signal(blocker.pid, Signal.KILL)


async def test_only_the_owner_or_an_admin_switches_the_scheduler(home: Path) -> None:
    from kernel.errors import InvalidArgument, PermissionDenied

    async with await kernel_with(home, "fifo") as kernel:
        with pytest.raises(PermissionDenied):
            kernel.sched("rr", sender="mallory")
        with pytest.raises(InvalidArgument):
            kernel.sched("lottery")
        assert kernel.sched("rr", slice=7)["slice"] == 7
        assert set(POLICIES) == {"fifo", "rr", "priority", "fair", "las", "srpt"}


async def test_a_call_is_preempted_only_once_it_has_run_long_enough_to_pay_for_the_switch() -> None:
    from kernel import clock
    from kernel.scheduler.policy import worth_switching

    call = fake_call(1, pid=1)
    call.segment_started = clock.now() - 4.0
    assert worth_switching(call)  # no switch measured yet
    call.proc.ctx_switches, call.proc.switch_cost_s = 2, 4.0  # each resume has cost 2 s (a long context re-read)
    assert not worth_switching(call)  # 2 s would be half of the 4 s it has run
    call.segment_started = clock.now() - 10.0
    assert worth_switching(call)  # a fifth of it
    fresh = fake_call(4, pid=4)  # on a prompt-caching server, before any switch: reading its prompt again counts
    fresh.segment_started, fresh.prompt_estimate, fresh.read_tps = clock.now() - 10.0, 1500, 500.0
    assert not worth_switching(fresh)  # 3 s of reading against 10 s run
    fresh.segment_started = clock.now() - 13.0
    assert worth_switching(fresh)

    fair = make_policy("fair", slice=1)
    running, waiting = fake_call(2, pid=2, user="alice"), fake_call(3, pid=3, user="bob")
    fair.push(running)
    assert fair.pop() is running
    fair.on_dispatch(running)
    fair.push(waiting)  # bob waits while alice's call runs on
    for _ in range(10):
        fair.on_token(running)
    running.segment_started = clock.now() - 1.0
    assert fair.should_preempt(running)  # alice is ahead and no switch has been measured
    running.proc.ctx_switches, running.proc.switch_cost_s = 1, 3.0
    assert not fair.should_preempt(running)  # ahead, but a switch would cost 3 s against its 1 s


async def test_srpt_age_auto_follows_the_backends_measured_rate_per_slot() -> None:
    policy = make_policy("srpt", age="auto")
    assert policy.age == 25.0  # until something has been answered
    for sid in range(60):
        call = fake_call(sid, pid=1)
        call.chunks, call.service_s, call.answered = 100, 2.0, True  # 50 tokens a second on its slot
        policy.on_done(call)
    assert policy.age == pytest.approx(50.0, rel=0.01)
    with pytest.raises(ValueError, match="or auto"):
        make_policy("srpt", age="soon")
