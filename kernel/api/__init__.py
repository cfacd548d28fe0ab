"""The kernel's one door for user space: `KernelAPI` (the operations, for one caller), its read models, and the
names user space needs with them (the policies, a front end's answerer handle, the errors it may raise); `wire`
puts it on a socket.

The names load on first use, so a client that only speaks `wire` to a running kernel stays light."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernel.api.door import KernelAPI
    from kernel.api.models import (
        AuditEntry,
        Grant,
        KernelMessage,
        Message,
        ModelInfo,
        ProcInfo,
        QueueEntry,
        SchedInfo,
        SizeEstimate,
        SlotInfo,
        UserInfo,
    )
    from kernel.permissions import Answerer
    from kernel.storage import StorageError

    POLICY_NAMES: tuple[str, ...]

_WHERE = {
    "KernelAPI": "kernel.api.door", "Answerer": "kernel.permissions", "StorageError": "kernel.storage",
    **{name: "kernel.api.models" for name in ("AuditEntry", "Grant", "KernelMessage", "Message", "ModelInfo",
                                              "ProcInfo", "QueueEntry", "SchedInfo", "SizeEstimate", "SlotInfo",
                                              "UserInfo")},
}

__all__ = [
    "POLICY_NAMES", "Answerer", "AuditEntry", "Grant", "KernelAPI", "KernelMessage", "Message", "ModelInfo",
    "ProcInfo", "QueueEntry", "SchedInfo", "SizeEstimate", "SlotInfo", "StorageError", "UserInfo",
]


def __getattr__(name: str) -> Any:
    if name == "POLICY_NAMES":
        from kernel.scheduler import POLICIES

        return tuple(sorted(POLICIES))
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'kernel.api' has no attribute {name!r}")
