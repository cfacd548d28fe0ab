"""Backends from the `aios.backends` entry-point group, as agents and tools come from theirs."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from kernel.llm import factory
from kernel.llm.backend import BackendError
from kernel.llm.simulated import SimulatedBackend


def make_echo(model: str | None = None, slots: int | None = None, seed: int = 0) -> SimulatedBackend:
    return SimulatedBackend(model=model or "echo-1", slots=slots or 2, seed=seed)


def not_a_backend(**_: Any) -> object:
    return object()


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    found = [EntryPoint("echo", f"{__name__}:make_echo", factory.GROUP),
             EntryPoint("liar", f"{__name__}:not_a_backend", factory.GROUP),
             EntryPoint("broken", "no.such.module:make", factory.GROUP),
             EntryPoint("ollama", f"{__name__}:make_echo", factory.GROUP)]  # cannot take a built-in's name
    monkeypatch.setattr(factory, "entry_points", lambda group: [e for e in found if e.group == group])


def test_an_installed_backend_is_built_by_its_name(plugins: None) -> None:
    backend = factory.create_backend("echo", model="m", slots=3)
    assert isinstance(backend, SimulatedBackend) and (backend.model, backend.slots) == ("m", 3)
    n = len(factory.BACKENDS)
    assert factory.names()[:n] == factory.BACKENDS and set(factory.names()[n:]) == {"echo", "liar", "broken"}


def test_a_plugin_that_fails_or_lies_is_one_clear_error(plugins: None) -> None:
    with pytest.raises(BackendError, match="backend 'broken' .* could not be loaded"):
        factory.create_backend("broken")
    with pytest.raises(BackendError, match="made object, not a Backend"):
        factory.create_backend("liar")
    with pytest.raises(BackendError, match="unknown backend 'nope' \\(choose from auto, ollama"):
        factory.create_backend("nope")


def test_what_each_backend_can_do_is_a_protocol_it_has_or_not() -> None:
    from kernel.llm.backend import ListsModels, LiveCapacity, Loads, PullsModels, ReportsLoaded
    from kernel.llm.ollama import OllamaBackend

    sim = SimulatedBackend()
    ollama = OllamaBackend(model="gemma3:270m", host="127.0.0.1:9")  # nothing is asked of it here
    pool = factory.create_pool("sim:2,sim:2")
    kinds = (LiveCapacity, ListsModels, PullsModels, Loads, ReportsLoaded)
    assert [isinstance(sim, k) for k in kinds] == [False, False, False, False, False]
    assert [isinstance(ollama, k) for k in kinds] == [False, True, True, False, True]
    assert isinstance(pool, LiveCapacity)
