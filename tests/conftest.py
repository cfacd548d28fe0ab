"""Shared fixtures: a kernel on the simulated backend in a temporary AIOS_HOME."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from kernel.events import Event
from kernel.kernel import Kernel, KernelConfig, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.storage import Storage

pytest_plugins = ["tests.fakes.fixtures"]

# CI replays the same examples every run (a red CI must be reproducible); a developer's run explores new ones
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the real per-user data dir or a real Ollama by accident."""
    home = tmp_path / "aios-home"
    monkeypatch.setenv("AIOS_HOME", str(home))
    monkeypatch.delenv("AIOS_BACKEND", raising=False)
    monkeypatch.delenv("AIOS_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("AIOS_HTTP", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AIOS_USER", "alice")
    monkeypatch.setenv("AIOS_LLM_BACKOFF", "0.01")  # retries of failed model calls, quick in tests
    return home


@pytest.fixture
def home(_isolated_home: Path) -> Path:
    return _isolated_home


def make_config(home: Path, **kw: object) -> KernelConfig:
    base = dict(home=home, backend="simulated", user="alice", admins=frozenset({"root"}), term_grace=0.5)
    base.update(kw)
    return KernelConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def storage(home: Path) -> Iterator[Storage]:
    """The database alone, without a kernel."""
    s = Storage(home)
    yield s
    s.close()


@pytest.fixture
def sim() -> SimulatedBackend:
    """A fast simulated model: 2 slots, 200 tokens/s."""
    return SimulatedBackend(slots=2, decode_tps=200.0, prefill_tps=10_000.0, seed=7)


@pytest.fixture
async def kernel(home: Path, sim: SimulatedBackend) -> AsyncIterator[Kernel]:
    k = await boot(make_config(home), backend=sim)
    try:
        yield k
    finally:
        await k.shutdown()


@pytest.fixture
def events(kernel: Kernel) -> list[Event]:
    """Every event the kernel publishes, in order."""
    seen: list[Event] = []
    kernel.bus.on(seen.append)
    return seen


async def until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.005) -> None:
    """Wait until `predicate()` holds; fail the test if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


CHAIN = ("import os, time\nr, w = os.pipe()\nfirst = True\nwhile True:\n    if os.fork():\n"
         "        need = 20 if first else 1  # the run's own process waits for 20 hops, each later one for 1\n"
         "        while need > 0:\n            need -= len(os.read(r, need))\n        os._exit(0)\n"
         "    first = False\n    os.setsid()\n    open('hop', 'a').write('.')\n    os.write(w, b'.')\n"
         "    time.sleep(0.01)\n")
"""A program that re-forks in `setsid` chains every 10 ms, each copy writing a dot to `hop`; the run's own process
ends once the chain has made 20 hops (so a loaded machine cannot end the run before the chain got going)."""


@pytest.fixture
async def server(kernel: Kernel) -> AsyncIterator[object]:
    """`kernel` served on its home's socket, as the hosting `aios` serves it (a shell session per client)."""
    from aios_shell.host import serve

    s = await serve(kernel)
    try:
        yield s
    finally:
        await s.close()
