"""Pytest fixture for the fake Ollama server.

Use it from a conftest with ``from tests.fakes.fixtures import fake_ollama  # noqa: F401``
(or list this module in the root conftest's ``pytest_plugins``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A started FakeOllama on a free 127.0.0.1 port; stopped after the test."""
    fake = FakeOllama().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started stand-in OpenAI-compatible server on a free 127.0.0.1 port; stopped after the test."""
    fake = FakeOpenAI().start()
    try:
        yield fake
    finally:
        fake.stop()
