"""The pool backend: several endpoints under one scheduler, and what happens when one of them dies."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.errors import InvalidArgument
from kernel.events import SyscallPreempted
from kernel.kernel import Kernel, boot
from kernel.llm.backend import Backend, BackendError, BackendUnavailable
from kernel.llm.factory import BACKENDS, create_backend
from kernel.llm.ollama import OllamaBackend
from kernel.llm.pool import PoolBackend, SimEndpoint
from kernel.llm.retry import RetryPolicy
from kernel.process import Process
from tests.conftest import make_config, until
from tests.fakes.ollama_server import FakeOllama
from tests.faults.test_ollama_faults import free_port, nothing_stuck

pytestmark = pytest.mark.faults

WORDS = " ".join(f"w{i}" for i in range(30))
QUICK_PROBE = RetryPolicy(base=0.02, cap=0.1)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_LLM_RETRIES", "3")
    monkeypatch.setenv("AIOS_LLM_BACKOFF", "0.02")


def sims(*slots: int, **kw: object) -> list[SimEndpoint]:
    return [SimEndpoint(host=f"sim-{i}", slots=n, decode_tps=200.0, prefill_tps=50_000.0, seed=3, **kw)  # type: ignore[arg-type]
            for i, n in enumerate(slots)]


async def pool_kernel(home: Path, endpoints: list[Backend], policy: str = "fifo") -> Kernel:
    return await boot(make_config(home, backend="pool", policy=policy),
                      backend=PoolBackend(endpoints, probe=QUICK_PROBE))


def states(kernel: Kernel) -> dict[str, str]:
    return {e["endpoint"]: e["state"] for e in kernel.backend.describe()["endpoints"]}


async def all_finish(kernel: Kernel, procs: list[Process], timeout: float = 30) -> None:
    await until(lambda: all(not p.alive for p in procs), timeout=timeout)
    assert [p.status for p in procs] == ["EXITED(0)"] * len(procs), [p.error for p in procs]


# -- the factory --------------------------------------------------------------------------------------
def test_the_factory_builds_a_pool_from_aios_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "pool" in BACKENDS
    monkeypatch.setenv("AIOS_POOL", "127.0.0.1:11434@2, 127.0.0.1:11435 ,sim:4")
    pool = create_backend("pool", model="gemma3:270m", slots=3)
    assert isinstance(pool, PoolBackend)
    members = [ep.backend for ep in pool.endpoints]
    assert [type(b).__name__ for b in members] == ["OllamaBackend", "OllamaBackend", "SimEndpoint"]
    assert [b.slots for b in members] == [2, 3, 4] and pool.slots == 9
    assert [ep.name for ep in pool.endpoints] == ["127.0.0.1:11434", "127.0.0.1:11435", "sim-2"]


@pytest.mark.parametrize(("spec", "message"), [
    ("", "the pool backend needs its endpoints in AIOS_POOL"),
    ("127.0.0.1:11434@many", "AIOS_POOL entry '127.0.0.1:11434@many': slots must be a number"),
    ("sim:0", "AIOS_POOL entry 'sim:0': slots must be at least 1"),
    ("openai:", "AIOS_POOL entry 'openai:': an OpenAI-compatible endpoint needs its URL"),
    ("openai:http://127.0.0.1:8001@0", "AIOS_POOL entry 'openai:http://127.0.0.1:8001@0': slots must be at"),
])
def test_a_bad_pool_is_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(BackendError, match="^" + message):
        create_backend("pool", pool=spec)


async def test_a_pool_with_no_endpoint_up_does_not_boot(home: Path) -> None:
    ports = [free_port(), free_port()]
    endpoints: list[Backend] = [OllamaBackend(model="m", host=f"127.0.0.1:{p}") for p in ports]
    with pytest.raises(BackendUnavailable) as caught:
        await boot(make_config(home, backend="pool"), backend=PoolBackend(endpoints))
    assert str(caught.value) == ("no endpoint of the pool answers: "
                                 f"127.0.0.1:{ports[0]}: cannot reach Ollama at 127.0.0.1:{ports[0]}; "
                                 f"127.0.0.1:{ports[1]}: cannot reach Ollama at 127.0.0.1:{ports[1]}")


# -- routing ---------------------------------------------------------------------------------------------
async def test_slots_add_up_and_calls_go_to_the_least_loaded_endpoint(home: Path) -> None:
    small, big = sims(1, 3)
    async with await pool_kernel(home, [small, big]) as kernel:
        assert kernel.dispatcher.slots == 4
        pool: PoolBackend = kernel.backend  # type: ignore[assignment]
        peak = {"sim-0": 0, "sim-1": 0, "all": 0}

        def watch(_event: object) -> None:
            for ep in pool.endpoints:
                peak[ep.name] = max(peak[ep.name], ep.in_flight)
            peak["all"] = max(peak["all"], len(kernel.dispatcher.running))

        kernel.bus.on(watch)
        procs = [kernel.spawn("chat", ["long"]) for _ in range(4)]
        await until(lambda: len(kernel.dispatcher.running) == 4)
        assert [ep.in_flight for ep in pool.endpoints] == [1, 3]  # each slot of each endpoint, none twice
        procs += [kernel.spawn("chat", ["short"]) for _ in range(8)]
        await all_finish(kernel, procs)
        assert peak == {"sim-0": 1, "sim-1": 3, "all": 4}
        assert sum(ep.calls for ep in pool.endpoints) == 12
        assert all(ep.busy_s > 0 for ep in pool.endpoints)


async def test_slots_cannot_be_changed_on_a_pool(home: Path) -> None:
    async with await pool_kernel(home, sims(2, 2)) as kernel:
        with pytest.raises(InvalidArgument, match=r"^the pool backend's slots are its endpoints' \(4\)"):
            kernel.sched(slots=8)
        assert kernel.dispatcher.slots == 4


# -- an endpoint dies ------------------------------------------------------------------------------------
async def test_a_call_cut_off_goes_on_at_another_endpoint_from_where_it_was(home: Path) -> None:
    first, second = sims(1, 1)
    async with await pool_kernel(home, [first, second]) as kernel:
        pool: PoolBackend = kernel.backend  # type: ignore[assignment]
        retried: list[SyscallPreempted] = []
        kernel.bus.on(retried.append, SyscallPreempted)
        proc = kernel.spawn("chat", ["long"])
        await until(lambda: len(proc.output) >= 10)
        serving: SimEndpoint = next(ep.backend for ep in pool.endpoints if ep.in_flight)  # type: ignore[assignment]
        serving.fail()
        await kernel.wait(proc.pid)
        reference = await boot(make_config(home / "ref"), backend=sims(1)[0])
        try:  # the same model on one healthy endpoint
            alone = reference.spawn("chat", ["long"])
            await reference.wait(alone.pid)
        finally:
            await reference.shutdown()
        assert proc.status == "EXITED(0)"
        assert "".join(proc.output) == "".join(alone.output)  # nothing lost, nothing said twice
        assert proc.completion_tokens == alone.completion_tokens == 200
        assert retried == [] and pool.failovers == 1  # moved at once, no back-off
        assert states(kernel)[serving.host] == "down"
        down = next(e for e in pool.describe()["endpoints"] if e["state"] == "down")
        assert down["error"] == f"connection to {serving.host} lost mid-stream" and down["failures"] == 1
        serving.recover()
        await until(lambda: states(kernel)[serving.host] == "up")


async def test_capacity_follows_the_endpoints_that_are_up(home: Path) -> None:
    first, second = sims(2, 2)
    async with await pool_kernel(home, [first, second]) as kernel:
        pool: PoolBackend = kernel.backend  # type: ignore[assignment]
        first.fail()
        procs = [kernel.spawn("chat", ["short"]) for _ in range(2)]
        await all_finish(kernel, procs)
        assert states(kernel) == {"sim-0": "down", "sim-1": "up"}
        peak = 0

        def watch(_event: object) -> None:
            nonlocal peak
            peak = max(peak, len(kernel.dispatcher.running))

        kernel.bus.on(watch)
        procs = [kernel.spawn("chat", ["short"]) for _ in range(10)]
        await all_finish(kernel, procs)
        assert peak == 2 and pool.available_slots() == 2  # only the live endpoint's slots
        first.recover()
        await until(lambda: pool.available_slots() == 4)
        before = pool.endpoints[0].calls
        procs = [kernel.spawn("chat", ["long"]) for _ in range(4)]
        await until(lambda: len(kernel.dispatcher.running) == 4)  # woken: the slots came back
        await all_finish(kernel, procs)
        assert pool.endpoints[0].calls > before


async def test_every_endpoint_down_fails_with_one_line_then_recovers(home: Path) -> None:
    first, second = sims(1, 1)
    async with await pool_kernel(home, [first, second]) as kernel:
        first.fail()
        second.fail()
        proc = kernel.spawn("chat", ["hello"])
        await kernel.wait(proc.pid)
        assert proc.status == "EXITED(1)" and proc.error in ("cannot reach sim-0", "cannot reach sim-1")
        assert set(states(kernel).values()) == {"down"}
        second.recover()
        again = kernel.spawn("chat", ["hello"])
        await kernel.wait(again.pid)
        assert again.status == "EXITED(0)"
        nothing_stuck(kernel, [again])


async def test_the_pool_keeps_serving_when_an_ollama_endpoint_dies(home: Path) -> None:
    a = FakeOllama(reply=WORDS, chunk_delay=0.01).start()
    b = FakeOllama(reply=WORDS, chunk_delay=0.01).start()
    servers = [a, b]
    endpoints: list[Backend] = [OllamaBackend(model="gemma3:270m", host=f.host, slots=2) for f in (a, b)]
    try:
        async with await pool_kernel(home, endpoints) as kernel:
            pool: PoolBackend = kernel.backend  # type: ignore[assignment]
            procs = [kernel.spawn("chat", [f"count {i}"]) for i in range(8)]
            await until(lambda: a.active_streams == 2 and b.active_streams == 2)
            a.stop()  # dies mid-run, with two answers half streamed
            await all_finish(kernel, procs)
            assert all("".join(p.output).strip() == WORDS for p in procs)  # every answer whole, once
            assert states(kernel) == {a.host: "down", b.host: "up"}
            described = pool.describe()["endpoints"][0]
            assert described["error"].startswith(f"connection to Ollama at {a.host} lost mid-stream") or \
                described["error"] == f"cannot reach Ollama at {a.host}"
            servers.append(FakeOllama(port=a.port, reply=WORDS, chunk_delay=0.01).start())  # it comes back
            await until(lambda: states(kernel)[a.host] == "up")
            more = [kernel.spawn("chat", [f"again {i}"]) for i in range(4)]
            await all_finish(kernel, more)
            await until(lambda: servers[-1].completed_streams >= 1)  # used again (its thread counts after the client)
            nothing_stuck(kernel, procs + more)
    finally:
        for server in servers:
            server.stop()


async def test_an_agents_next_turn_goes_back_to_the_endpoint_that_holds_its_conversation() -> None:
    from kernel.llm.backend import LLMRequest

    pool = PoolBackend(sims(2, 2))  # type: ignore[arg-type]
    first = [{"role": "system", "content": "tools " * 50}, {"role": "user", "content": "task 1"}]

    async def turn(messages: list[dict[str, str]]) -> None:
        async for _ in pool.stream(LLMRequest(messages, max_tokens=4)):
            pass

    await turn(first)
    home = max(pool.endpoints, key=lambda ep: ep.calls)
    other = next(ep for ep in pool.endpoints if ep is not home)
    home.in_flight = 1  # busier than the other: by load alone the next turn would go there
    await turn([*first, {"role": "assistant", "content": "a"}, {"role": "tool", "content": "result"}])
    assert (home.calls, other.calls, pool.home_hits) == (2, 0, 1)
    home.in_flight = 2  # no free slot at home: the least loaded endpoint takes it
    await turn([*first, {"role": "assistant", "content": "b"}])
    assert other.calls == 1 and pool.describe()["home_hits"] == 1
    await turn([{"role": "system", "content": "another program"}, {"role": "user", "content": "task 2"}])
    assert other.calls == 2  # a new conversation: by load
