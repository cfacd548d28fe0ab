"""What the system pane reads from the machine (not from the kernel): CPU, memory, our RSS.

`SystemProbe` reads psutil; tests pass a `FixedProbe` so pictures do not depend on the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import psutil


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
