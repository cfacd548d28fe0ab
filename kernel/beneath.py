"""Open a path beneath a directory descriptor with the kernel's `openat2(2)`, never following a link.

`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: the kernel itself refuses `..` past the
root, an absolute path, and a symbolic link (or a /proc magic link) at any step, in one lookup, so there is no
window between checking and opening. Linux has it since 5.6; where it is missing (ENOSYS, or a seccomp filter
that says EPERM) `openat2` returns None and the caller walks one O_NOFOLLOW component at a time instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import stat

_SYS_OPENAT2 = 437  # the same number in every architecture's table since 5.6
_MACHINES = ("x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "s390x")
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x01, 0x02, 0x04, 0x08
_STRICT = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_NR = _SYS_OPENAT2 if platform.machine() in _MACHINES else None
_available = _NR is not None


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0o644) -> int | None:
    """A descriptor of `path` below `dir_fd`, opened with the strict resolve flags; None where the kernel
    lacks openat2. Raises OSError as open(2) would (ELOOP for a link on the way, EXDEV for an escape)."""
    global _available
    if not _available:
        return None
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, _STRICT)
    fd = _syscall(_NR, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        return int(fd)
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and not _works():
        _available = False
        return None
    raise OSError(err, os.strerror(err), path)


def _works() -> bool:
    """Whether openat2 works at all here (a plain open of '.'), to tell 'missing' from a real EPERM."""
    how = _OpenHow(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0)
    fd = _syscall(_NR, -100, b".", ctypes.byref(how), ctypes.sizeof(how))  # AT_FDCWD
    if fd >= 0:
        os.close(fd)
        return True
    return False


class NotRegular(OSError):
    """What `read_beneath` found is not a regular file (a FIFO, a device, a directory)."""


def read_beneath(root: str | os.PathLike[str], relpath: str, cap: int) -> bytes:
    """The contents of the regular file `relpath` below the directory `root`, never through a link at any
    step, opened without blocking (a FIFO cannot hang the caller); OSError when it cannot be read, NotRegular
    when it is no regular file, ValueError when it is larger than `cap` bytes."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = openat2(root_fd, relpath, flags)
        if fd is None:  # no openat2: one O_NOFOLLOW step at a time
            fd = _walk(root_fd, relpath.split("/"), flags)
    finally:
        os.close(root_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(errno.EINVAL, "not a regular file", relpath)
        if st.st_size > cap:
            raise ValueError(f"{relpath}: {st.st_size} bytes, more than {cap}")
        data = os.read(fd, cap + 1)
        if len(data) > cap:
            raise ValueError(f"{relpath}: more than {cap} bytes")
        return data
    finally:
        os.close(fd)


def _walk(root_fd: int, parts: list[str], flags: int) -> int:
    fd = os.dup(root_fd)
    try:
        for name in parts[:-1]:
            if name in ("", ".", ".."):
                raise OSError(errno.EXDEV, "path leaves its root", name)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
