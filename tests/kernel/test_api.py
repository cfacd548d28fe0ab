"""The kernel's API: the scheduler's read model, as `sched`, the bottom bar and the monitor get it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kernel.api import KernelAPI, ModelInfo, ProcInfo, SchedInfo
from kernel.errors import PermissionDenied
from kernel.kernel import Kernel, boot
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config, until


@pytest.fixture
async def busy(home: Path):
    """Two slots taken by long answers and three calls queued behind them."""
    kernel = await boot(make_config(home), backend=SimulatedBackend(slots=2, decode_tps=20, prefill_tps=0))
    try:
        procs = [kernel.spawn("workload", ["100000"]) for _ in range(5)]
        await until(lambda: sum(p.status == "READY" for p in procs) == 3)
        yield kernel
    finally:
        await kernel.shutdown()


async def test_sched_shows_every_slot_and_the_queue_in_order(busy: Kernel) -> None:
    info = KernelAPI(busy).sched()
    assert info.policy == busy.dispatcher.policy.name and len(info.slots) == 2 and info.busy == 2
    assert {s.pid for s in info.slots} == {c.pid for c in busy.dispatcher.running.values()}
    assert [q.pid for q in info.queue] == [c.pid for c in busy.dispatcher.queue()]
    assert [q.pos for q in info.queue] == [1, 2, 3] and info.queued == 3
    assert all(q.cmd == "workload 100000" and q.reason and q.wait_s >= 0 for q in info.queue)
    assert info.summary() == f"{info.policy} · slots 2/2 · 3 queued"


async def test_a_queue_limit_takes_the_first_entries_and_counts_them_all(busy: Kernel) -> None:
    info = KernelAPI(busy).sched(queue_limit=1)
    assert len(info.queue) == 1 and info.queue[0].pos == 1 and info.queued == 3
    assert KernelAPI(busy).sched(queue_limit=0).queue == ()


async def test_sched_info_goes_through_json_and_back_unchanged(busy: Kernel) -> None:
    info = KernelAPI(busy).sched()
    again = SchedInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info


async def test_a_policy_that_fails_to_explain_itself_does_not_take_the_view_down(busy: Kernel,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    def broken(call: object) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(busy.dispatcher.policy, "reason", broken)
    assert {q.reason for q in KernelAPI(busy).sched().queue} == {"? (RuntimeError)"}


async def test_only_the_owner_or_an_admin_may_switch_the_scheduler(kernel: Kernel) -> None:
    with pytest.raises(PermissionDenied):
        KernelAPI(kernel, caller="mallory").set_sched("fifo")
    assert KernelAPI(kernel).set_sched("fifo", slots=3).policy == "fifo"
    assert len(KernelAPI(kernel, caller="mallory").sched().slots) == 3  # reading is for everyone


async def test_ps_hides_another_users_arguments_and_goes_through_json_unchanged(kernel: Kernel) -> None:
    mine = kernel.spawn("workload", ["100000"])
    theirs = kernel.spawn("workload", ["100000"], user="carol")
    as_root = {p.pid: p for p in KernelAPI(kernel, caller="root").ps()}
    as_bob = {p.pid: p for p in KernelAPI(kernel, caller="bob").ps()}
    assert as_root[theirs.pid].argv == ("100000",)  # root is an admin
    assert as_bob[theirs.pid].argv == () and as_bob[theirs.pid].cmd == "workload [hidden]"
    assert as_bob[theirs.pid].workspace is None
    assert [p.pid for p in KernelAPI(kernel).ps(user="carol")] == [theirs.pid]
    info = as_root[mine.pid]
    assert ProcInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert info.to_dict() == kernel.shown(mine, kernel.user)  # the shape ps --json documents
    assert set(info.to_dict()) == {f.name for f in dataclasses.fields(ProcInfo)}  # of_fields trusts that


async def test_model_names_the_backend_its_window_and_slots(kernel: Kernel, sim: SimulatedBackend) -> None:
    model = KernelAPI(kernel).model()
    assert (model.backend, model.model, model.slots) == (sim.name, sim.model, kernel.dispatcher.slots)
    assert ModelInfo.from_dict(model.to_dict()) == model


async def test_sched_hides_another_users_task_too(busy: Kernel) -> None:
    busy.spawn("workload", ["100000"], user="carol")
    await until(lambda: KernelAPI(busy).sched().queued == 4)
    as_bob = KernelAPI(busy, caller="bob").sched()
    assert {s.cmd for s in as_bob.slots} | {q.cmd for q in as_bob.queue} == {"workload [hidden]"}
    as_carol = KernelAPI(busy, caller="carol").sched()
    assert "workload 100000" in {q.cmd for q in as_carol.queue}


async def test_another_users_transcript_events_and_permission_requests_are_not_the_callers(kernel: Kernel) -> None:
    from kernel.events import ProcessSpawned

    theirs = kernel.spawn("chat", ["secret", "plan"], user="carol")
    mine = kernel.spawn("chat", ["short"])
    await kernel.wait(theirs.pid)
    await kernel.wait(mine.pid)
    bob, carol = KernelAPI(kernel, caller="bob"), KernelAPI(kernel, caller="carol")
    assert carol.transcript(theirs.pid)[0].content == "secret plan"
    for read in (lambda: bob.transcript(theirs.pid), lambda: bob.events(theirs.pid)):
        with pytest.raises(PermissionDenied, match="may not read carol's process"):
            read()
    assert {e.pid for e in bob.events(types=(ProcessSpawned,))} == set()  # nobody's but bob's, and he has none
    assert {e.pid for e in carol.events(types=(ProcessSpawned,))} == {theirs.pid}
    assert {e.pid for e in KernelAPI(kernel, caller="root").events(types=(ProcessSpawned,))} == {theirs.pid, mine.pid}
    with pytest.raises(PermissionDenied, match="only an admin may act on carol's grants"):
        bob.grants("carol")
    with pytest.raises(PermissionDenied):
        bob.grant("shell(ls)", user="carol")


async def test_a_permission_request_is_its_owners_to_see_and_answer(kernel: Kernel) -> None:
    import asyncio

    asking = asyncio.create_task(kernel.permissions.request(7, "carol", "react", "shell", {"command": "ls"}))
    await until(lambda: kernel.permissions.pending())
    (request,) = kernel.permissions.pending()
    bob, carol = KernelAPI(kernel, caller="bob"), KernelAPI(kernel, caller="carol")
    assert bob.pending_permissions() == [] and not bob.may_answer(request)
    with pytest.raises(PermissionDenied, match="may not answer carol's permission request"):
        bob.answer_permission(request.request_id, "always")
    assert carol.pending_permissions() == [request]
    assert carol.answer_permission(request.request_id, "once") is True
    assert await asking == "once"
    assert carol.answer_permission(request.request_id, "deny") is False  # no longer open
