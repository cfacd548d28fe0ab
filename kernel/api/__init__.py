"""The kernel's one door for user space: `KernelAPI` (the operations, for one caller), its read models, and the
names user space needs with them (the policies, a front end's answerer handle, the errors it may raise)."""

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
from kernel.permissions import Answerer
from kernel.scheduler import POLICIES
from kernel.storage import StorageError

POLICY_NAMES = tuple(sorted(POLICIES))

__all__ = [
    "POLICY_NAMES", "Answerer", "AuditEntry", "Grant", "KernelAPI", "KernelMessage", "Message", "ModelInfo",
    "ProcInfo", "QueueEntry", "SchedInfo", "SlotInfo", "StorageError", "UserInfo",
]
