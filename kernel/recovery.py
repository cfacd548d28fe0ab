"""Crash recovery: start a lost or finished agent again from its saved conversation (`resume PID`).

A kernel that dies leaves its processes' rows and their messages in the database; the next kernel
marks them EXITED(lost) at boot (`Storage.mark_lost`), keeping the conversation. `resume` runs the
same program again — same argv, user, nice and workspace — as a new process whose parent is the old
one, and hands it the old conversation as `ctx.history`: the agent decides how to go on from it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import psutil

from kernel.errors import InvalidArgument

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.process import Process


def saved_history(kernel: Kernel, pid: int) -> list[dict[str, Any]]:
    """The conversation the database keeps for `pid`, oldest first, as model messages."""
    return [{"role": m["role"], "content": m["content"] or ""} for m in kernel.storage.messages(pid)]


def _kernel_alive(kernel_pid: int | None) -> bool:
    """Whether the kernel that ran a process may still be running it (this one, or another OS process)."""
    return kernel_pid is None or kernel_pid == os.getpid() or psutil.pid_exists(kernel_pid)


def resume(kernel: Kernel, pid: int, sender: str | None = None) -> Process:
    """Start process `pid` again as a new process (ppid = `pid`) that carries on its saved conversation.

    Raises NoSuchProcess for a pid this AIOS_HOME never had, InvalidArgument for a process that is
    still running, PermissionDenied for another user's process unless `sender` is an admin.
    """
    sender = sender or kernel.user
    old = kernel.lookup(pid)
    if old.alive and pid not in kernel.procs and not _kernel_alive(old.kernel_pid):
        # its kernel died after this one booted (another shell on the same home): lost, as at boot
        kernel.storage.mark_lost(_kernel_alive)
        old = kernel.lookup(pid)
    if old.alive:
        raise InvalidArgument(f"({pid}) is still running")
    kernel.check_owner(old, sender, "resume")
    return kernel.spawn(old.program, old.argv, nice=old.nice, user=old.user, ppid=old.pid,
                        workspace=kernel.workspace(old), history=saved_history(kernel, pid))
