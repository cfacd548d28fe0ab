"""The kernel's one door for user space: `KernelAPI` (the operations, for one caller) and its read models."""

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
    SlotInfo,
    UserInfo,
)

__all__ = ["AuditEntry", "Grant", "KernelAPI", "KernelMessage", "Message", "ModelInfo", "ProcInfo", "QueueEntry",
           "SchedInfo", "SlotInfo", "UserInfo"]
