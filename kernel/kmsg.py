"""The kernel's own messages (`dmesg`, `cat /proc/kmsg`): what went wrong inside it that no process owns.

A ring of the last `limit` messages, in memory. So far an event handler that fails writes here (the bus
goes on delivering to the others, as before, but the failure is no longer only a count).
"""

from __future__ import annotations

import traceback
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kernel import clock
from kernel.sanitize import strip_controls

LIMIT = 1000


@dataclass(frozen=True)
class KernelMessage:
    ts: float
    level: str  # "error" | "warning" | "info"
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelMessage:
        return cls(ts=float(d["ts"]), level=str(d["level"]), text=str(d["text"]))


class KernelLog:
    def __init__(self, limit: int = LIMIT) -> None:
        self._ring: deque[KernelMessage] = deque(maxlen=limit)
        self.written = 0  # all messages so far, those the ring has let go included

    def write(self, level: str, text: str) -> None:
        self._ring.append(KernelMessage(ts=clock.now(), level=level, text=strip_controls(text)))
        self.written += 1

    def handler_failed(self, handler: object, event: object, exc: BaseException) -> None:
        """An event handler raised: say which, on what event, what, and where."""
        name = getattr(handler, "__qualname__", None) or type(handler).__name__
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        self.write("error", f"event handler {name} failed on {type(event).__name__}: "
                            f"{type(exc).__name__}: {exc}{where}")

    def messages(self) -> list[KernelMessage]:
        return list(self._ring)
