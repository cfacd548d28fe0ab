"""Where a kernel's home is (AIOS_HOME, else the per-user data dir), and who hosts its kernel (the host lock).
Light: every client imports it."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path


def default_home() -> Path:
    """`AIOS_HOME`, else the per-user data dir (XDG)."""
    if env := os.environ.get("AIOS_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aios"


def shared_home(home: Path) -> bool:
    """A home its owner shares with a group on purpose (`chgrp GROUP HOME; chmod 2770 HOME`): its members reach
    the kernel's socket; the database stays the owner's alone (0600), so they only see what the kernel shows."""
    try:
        mode = os.stat(home).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_ISGID) and mode & 0o070 == 0o070 and not mode & 0o007


def process_running(pid: int) -> bool:
    """Whether OS process `pid` still runs (a zombie — killed, not yet reaped by its parent — does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


LOCK_NAME = "kernel.lock"


class HostLock:
    """The right to host the kernel of `home`: one process at a time, given up when it exits."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; False when one does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def holder(self) -> int | None:
        """The pid written by whoever holds the lock (for `aios serve --stop`)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
