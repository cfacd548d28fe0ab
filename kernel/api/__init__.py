"""The kernel's one door for user space: `KernelAPI` (the operations, for one caller), its read models, and the
names user space needs with them (the policies, a front end's answerer handle, the events and errors it sees, the
kernel itself for the program that hosts it, the sanitisers for what it shows); `wire` puts it on a socket. User
space imports the kernel from here only (the import contracts say so).

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
        ToolInfo,
        UserInfo,
    )
    from kernel.errors import InvalidArgument, KernelError, NoSuchProcess, PermissionDenied
    from kernel.events import (
        ContextCompacted,
        ContextSwitched,
        Decision,
        Event,
        MessageLogged,
        PermissionDecided,
        PermissionRequested,
        ProcessExited,
        ProcessOutput,
        SyscallDispatched,
        SyscallDone,
        SyscallPreempted,
        SyscallQueued,
        TokenGenerated,
        ToolCallDecided,
        ToolCalled,
    )
    from kernel.home import HostLock, default_home, process_running
    from kernel.http.front import parse_address
    from kernel.kernel import Kernel, KernelConfig, boot
    from kernel.llm.backend import BackendError, Loads, ReportsLoaded
    from kernel.llm.factory import names as backend_names
    from kernel.permissions import Answerer
    from kernel.process import NoSuchSignal, Process, Signal, State, Usage, parse_signal
    from kernel.programs import NoSuchProgram
    from kernel.redact import redact
    from kernel.sanitize import keep_colour, one_line, strip_controls
    from kernel.server import Client, KernelServer, login_name, may_act_as
    from kernel.settings import SettingError
    from kernel.storage import StorageError
    from kernel.syscall import Pipe

    POLICY_NAMES: tuple[str, ...]

_MODELS = ("AuditEntry", "Grant", "KernelMessage", "Message", "ModelInfo", "ProcInfo", "QueueEntry", "SchedInfo",
           "SizeEstimate", "SlotInfo", "ToolInfo", "UserInfo")
_EVENTS = ("ContextCompacted", "ContextSwitched", "Decision", "Event", "MessageLogged", "PermissionDecided",
           "PermissionRequested", "ProcessExited", "ProcessOutput", "SyscallDispatched", "SyscallDone",
           "SyscallPreempted", "SyscallQueued", "TokenGenerated", "ToolCallDecided", "ToolCalled")
# what user space may name, and where it lives: "module" or "module:name" (exported under another name)
_WHERE: dict[str, str] = {
    "KernelAPI": "kernel.api.door", "Answerer": "kernel.permissions", "StorageError": "kernel.storage",
    **dict.fromkeys(_MODELS, "kernel.api.models"),
    **dict.fromkeys(_EVENTS, "kernel.events"),
    # the kernel itself, for the program that hosts it
    "Kernel": "kernel.kernel", "KernelConfig": "kernel.kernel", "boot": "kernel.kernel",
    "KernelServer": "kernel.server", "Client": "kernel.server", "login_name": "kernel.server",
    "may_act_as": "kernel.server", "HostLock": "kernel.home", "default_home": "kernel.home",
    "process_running": "kernel.home", "parse_address": "kernel.http.front", "backend_names": "kernel.llm.factory:names",
    # processes and what may go wrong
    **dict.fromkeys(("Process", "Signal", "State", "Usage", "NoSuchSignal", "parse_signal"), "kernel.process"),
    **dict.fromkeys(("KernelError", "InvalidArgument", "NoSuchProcess", "PermissionDenied"), "kernel.errors"),
    "NoSuchProgram": "kernel.programs", "SettingError": "kernel.settings", "Pipe": "kernel.syscall",
    **dict.fromkeys(("BackendError", "Loads", "ReportsLoaded"), "kernel.llm.backend"),
    # text from models, tools and clients, made safe to show
    **dict.fromkeys(("strip_controls", "one_line", "keep_colour"), "kernel.sanitize"), "redact": "kernel.redact",
}

__all__ = [
    "POLICY_NAMES", "Answerer", "AuditEntry", "BackendError", "Client", "ContextCompacted", "ContextSwitched",
    "Decision", "Event", "Grant", "HostLock", "InvalidArgument", "Kernel", "KernelAPI", "KernelConfig",
    "KernelError", "KernelMessage", "KernelServer", "Loads", "Message", "MessageLogged", "ModelInfo",
    "NoSuchProcess", "NoSuchProgram", "NoSuchSignal", "PermissionDecided", "PermissionDenied",
    "PermissionRequested", "Pipe", "ProcInfo", "Process", "ProcessExited", "ProcessOutput", "QueueEntry",
    "ReportsLoaded", "SchedInfo", "SettingError", "Signal", "SizeEstimate", "SlotInfo", "State", "StorageError",
    "SyscallDispatched", "SyscallDone", "SyscallPreempted", "SyscallQueued", "TokenGenerated", "ToolCallDecided",
    "ToolCalled", "ToolInfo", "Usage", "UserInfo", "backend_names", "boot", "default_home", "keep_colour",
    "login_name", "may_act_as", "one_line", "parse_address", "parse_signal", "process_running", "redact",
    "strip_controls"
]


def __getattr__(name: str) -> Any:
    if name == "POLICY_NAMES":
        from kernel.scheduler import POLICIES

        return tuple(sorted(POLICIES))
    if name in _WHERE:
        module, _, attr = _WHERE[name].partition(":")
        value = getattr(importlib.import_module(module), attr or name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'kernel.api' has no attribute {name!r}")
