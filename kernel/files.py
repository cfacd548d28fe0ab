"""Versioned agent files: every write of a process's workspace file keeps a version in SQLite.

A version is numbered per (pid, path) from 1 and holds the bytes, their size and sha256. Writing the
same bytes as the latest version keeps no new one. `restore` writes an old version back into the
workspace — never through a symlink, never outside it — and keeps that as the newest version.
Paths are relative to the workspace (`notes/a.txt`); `./a` and `a` are the same file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel.errors import InvalidArgument, KernelError
from kernel.storage import Storage
from kernel.tools.builtin.fs import adopt, open_dir_below
from kernel.tools.registry import ToolError


class NoSuchVersion(KernelError):
    """No kept version of that file (or not that one)."""


def clean_path(path: str) -> str:
    """`path` as a plain relative path (`a/b`); InvalidArgument when absolute, empty or climbing out with `..`."""
    if not isinstance(path, str) or "\x00" in path:
        raise InvalidArgument(f"{path!r}: not a valid path")
    if path.startswith("/"):
        raise InvalidArgument(f"{path}: the path must be relative to the workspace")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidArgument(f"{path!r}: not a file path")
    if ".." in parts:
        raise InvalidArgument(f"{path}: the path may not leave the workspace (..)")
    return "/".join(parts)


QUOTA = 256 << 20


class QuotaExceeded(KernelError):
    """Keeping a version would pass the user's quota of kept file versions."""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class FileVersions:
    """The versions of each process's files: `record`, `log`, `get`, `files`, `restore`."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time, quota: int = QUOTA) -> None:
        self.db = storage.worker_db()
        self.clock = clock
        self.quota = quota  # bytes of kept versions per user (AIOS_VERSIONS_QUOTA_MB)

    def record(self, pid: int, user: str, path: str, content: bytes) -> int:
        """Keep `content` as the next version of `path`; returns its number (the latest one when unchanged)."""
        path, content = clean_path(path), bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        with self.db.write() as conn:
            last = conn.execute(
                "SELECT version, sha256 FROM file_versions WHERE pid = ? AND path = ? ORDER BY version DESC LIMIT 1",
                [pid, path],
            ).fetchone()
            if last is not None and last["sha256"] == digest:
                return int(last["version"])
            version = 1 if last is None else int(last["version"]) + 1
            used = conn.execute("SELECT COALESCE(SUM(size), 0) FROM file_versions WHERE user = ?", [user]).fetchone()[0]
            if used + len(content) > self.quota:
                raise QuotaExceeded(f"{user}'s kept file versions use {_mib(used)} of {_mib(self.quota)} "
                                    f"(AIOS_VERSIONS_QUOTA_MB); this version of {path} is not kept")
            conn.execute(
                "INSERT INTO file_versions (pid, user, path, version, content, size, sha256, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [pid, user, path, version, content, len(content), digest, self.clock()],
            )
        return version

    def log(self, pid: int, path: str) -> list[dict[str, Any]]:
        """The versions of `path`, oldest first: version, size, sha256, ts."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT version, size, sha256, ts FROM file_versions WHERE pid = ? AND path = ? ORDER BY version",
                [pid, clean_path(path)],
            ).fetchall()
        return [dict(r) for r in rows]

    def get(self, pid: int, path: str, version: int) -> bytes:
        """The bytes of one version; NoSuchVersion when it was never kept."""
        return self._version(pid, clean_path(path), version)["content"]

    def _version(self, pid: int, path: str, version: int) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT user, content FROM file_versions WHERE pid = ? AND path = ? AND version = ?",
                [pid, path, version],
            ).fetchone()
        if row is None:
            raise NoSuchVersion(f"{path}@{version}: no such version of a file of process {pid}")
        return {"user": row["user"], "content": bytes(row["content"])}

    def files(self, pid: int) -> list[dict[str, Any]]:
        """Every file of process `pid` with a version: path, versions, size and ts of the latest, by path."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT f.path, f.version AS versions, f.size, f.ts FROM file_versions f "
                "JOIN (SELECT path, MAX(version) AS latest FROM file_versions WHERE pid = ? GROUP BY path) l "
                "ON f.path = l.path AND f.version = l.latest WHERE f.pid = ? ORDER BY f.path",
                [pid, pid],
            ).fetchall()
        return [dict(r) for r in rows]

    def restore(self, pid: int, path: str, version: int, workspace: Path) -> int:
        """Write `version` of `path` back into `workspace` and keep it as a new version; returns that one."""
        path = clean_path(path)
        kept = self._version(pid, path, version)
        write_inside(Path(workspace), path, kept["content"])
        return self.record(pid, kept["user"], path, kept["content"])

    def close(self) -> None:
        self.db.close()


def write_inside(root: Path, path: str, data: bytes) -> None:
    """Replace `root/path` with `data` atomically, refusing symlinks on the way and at the end.

    The directories are opened as the fs tools open them (`open_dir_below`: relative to the one above,
    O_NOFOLLOW, missing ones made), so a link swapped in meanwhile cannot lead the write outside `root`;
    the bytes go to a new file renamed over the old one, so a hard link to it from elsewhere is not
    written through.
    """
    parts = clean_path(path).split("/")
    root.mkdir(parents=True, exist_ok=True)
    try:
        fd = open_dir_below(root, parts[:-1], path, create=True)
    except ToolError as exc:
        raise InvalidArgument(str(exc)) from None
    try:
        _replace(fd, parts[-1], data, path)
    finally:
        os.close(fd)


def _replace(dir_fd: int, name: str, data: bytes, path: str) -> None:
    mode = 0o644
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise InvalidArgument(f"{path}: is a symbolic link; refusing to write through it")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
    tmp = f".aios-restore-{secrets.token_hex(6)}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        try:
            adopt(dir_fd, out)
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            os.fchmod(out, mode)
            os.fsync(out)
        finally:
            os.close(out)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
