"""What the system pane reads from outside the kernel: the machine (CPU, memory, our RSS) and the model server.

`SystemProbe` reads psutil; tests pass a `FixedProbe` so pictures do not depend on the machine.
`loaded_models` asks the Ollama server(s) behind a backend what they hold in memory (`ollama ps`); the
pane calls it from a worker, at most every few seconds.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import psutil

from kernel.api import ReportsLoaded


@dataclass(frozen=True)
class SystemSample:
    cpu_per_core: list[float] = field(default_factory=list)  # percent, one per logical core
    mem_used: int = 0
    mem_total: int = 0
    rss: int = 0  # this process (the kernel and the monitor share it)


class SystemProbe:
    """Samples psutil; `cpu_percent` is measured since the previous sample, as top does."""

    def __init__(self) -> None:
        self._me = psutil.Process(os.getpid())
        psutil.cpu_percent(percpu=True)  # the first call only starts the measurement

    def sample(self) -> SystemSample:
        mem = psutil.virtual_memory()
        return SystemSample(
            cpu_per_core=list(psutil.cpu_percent(percpu=True)),
            mem_used=int(mem.total - mem.available),
            mem_total=int(mem.total),
            rss=int(self._me.memory_info().rss),
        )


class FixedProbe:
    """Always the same sample: for tests and snapshots."""

    def __init__(self, sample: SystemSample | None = None) -> None:
        self._sample = sample or SystemSample([12.5, 40.0], 3 * 2**30, 8 * 2**30, 180 * 2**20)

    def sample(self) -> SystemSample:
        return self._sample


@dataclass(frozen=True)
class LoadedModel:
    """A model an Ollama server holds in memory (one line of `ollama ps`)."""

    name: str
    size: int  # bytes
    vram: int  # bytes of it in GPU memory
    context: int | None = None
    where: str = ""  # the endpoint, when the backend is a pool


def ollama_backends(backend: Any) -> list[tuple[str, Any]]:
    """(where, backend) for every part of `backend` that can say what it has loaded (Ollama, pool members)."""
    if isinstance(backend, ReportsLoaded):
        return [("", backend)]
    return [(str(getattr(ep, "name", "")), ep.backend) for ep in getattr(backend, "endpoints", ())
            if isinstance(getattr(ep, "backend", None), ReportsLoaded)]


async def loaded_models(backend: Any, timeout: float = 3.0) -> list[LoadedModel]:
    """What the Ollama server(s) behind `backend` hold in memory now; raises when one does not answer."""
    out: list[LoadedModel] = []
    for where, part in ollama_backends(backend):
        for m in await asyncio.wait_for(part.loaded(), timeout):
            out.append(LoadedModel(str(m.get("name") or "?"), int(m.get("size") or 0), int(m.get("size_vram") or 0),
                                   m.get("context_length"), where))
    return out
