"""File tools confined to the agent's workspace: fs.read, fs.write, fs.list.

A path is taken lexically (`a/../b` is `b`); one that climbs out with `..`, or an absolute one outside the
workspace, is refused. The rest is opened from a descriptor of the workspace with `openat2` and
RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (see `beneath.py`), or, where the kernel lacks it, one component at a
time with O_NOFOLLOW: a symbolic link anywhere on the way, or as the file itself, is refused, and since
nothing is looked up twice there is no window between checking and opening. Only regular files are read or
written (no FIFOs or devices), and not one with other hard links; before writing, the opened file's owner
must be the workspace's (a file planted by another uid is not written through).

Binary files: fs.read refuses a file with a NUL byte in its first 8 KiB ("binary file … not shown");
other bytes are decoded as UTF-8 with replacement characters. Reads stop at `max_bytes` (at most 1 MiB)
and say so; writes take at most 1 MiB. When the kernel runs as root, a file or directory it creates takes
the owner of the directory it is created in, so the sandboxed shell (which owns the workspace) can change it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from kernel.beneath import openat2
from kernel.tools.registry import ToolContext, ToolError, tool
from kernel.tools.sandbox import default_sandbox

MAX_READ = 1 << 20
MAX_WRITE = 1 << 20
MAX_LIST = 1000
BINARY_SNIFF = 8192
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a FIFO must not hang the open


def _relative(workspace: Path, path: str) -> str | None:
    """`path` relative to the workspace as normalized posix text ('.' for the workspace), None when outside."""
    if "\x00" in path:
        return None
    if os.path.isabs(path):
        p = os.path.normpath(path)
        for root in dict.fromkeys((os.path.normpath(os.path.abspath(workspace)), os.path.realpath(workspace))):
            if p == root:
                return "."
            prefix = root.rstrip("/") + "/"
            if p.startswith(prefix):
                return p[len(prefix):]
        return None
    rel = os.path.normpath(path)
    return None if rel == ".." or rel.startswith("../") else rel


def workspace_target(workspace: Path, path: str) -> str:
    """The string access rules match: `workspace/<relative path>` when inside the workspace, else `path`."""
    rel = _relative(Path(workspace), path)
    if rel is None:
        return path
    return "workspace/" if rel == "." else f"workspace/{rel}"


def _parts(ctx: ToolContext, path: str) -> list[str]:
    rel = _relative(Path(ctx.workspace), path)
    if rel is None:
        raise ToolError(f"{path}: outside the workspace; refused")
    return [] if rel == "." else rel.split("/")


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_at(dir_fd: int, name: str, flags: int, shown: str, missing_ok: bool = False) -> int | None:
    """os.open relative to `dir_fd` without following links; errors become ToolError lines."""
    try:
        return os.open(name, flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and _is_link(dir_fd, name):
            raise ToolError(f"{shown}: {name} is a symbolic link; refused") from None
        if exc.errno == errno.ENOENT:
            if missing_ok:
                return None
            raise ToolError(f"{shown}: no such file or directory") from None
        if exc.errno == errno.ENOTDIR:
            raise ToolError(f"{shown}: {name} is not a directory") from None
        if exc.errno == errno.EISDIR:
            raise ToolError(f"{shown}: is a directory (use fs.list)") from None
        raise ToolError(f"{shown}: {exc.strerror or exc}") from None


def adopt(dir_fd: int, fd: int) -> None:
    """As root, give a new file or directory the owner of its directory (the workspace's owner)."""
    if os.geteuid() == 0:
        parent, st = os.fstat(dir_fd), os.fstat(fd)
        if (st.st_uid, st.st_gid) != (parent.st_uid, parent.st_gid):
            os.fchown(fd, parent.st_uid, parent.st_gid)


def _open_dir(ctx: ToolContext, parts: list[str], shown: str, create: bool = False) -> int:
    """A descriptor of the directory `parts` below the workspace, never through a link."""
    sandbox = ctx.services.get("sandbox") or default_sandbox()
    return open_dir_below(sandbox.prepare(Path(ctx.workspace), ctx.user, ctx.own_workspace), parts, shown, create)


def open_dir_below(root: Path, parts: list[str], shown: str, create: bool = False) -> int:
    """A descriptor of the directory `parts` below `root`, each opened relative to the one above with
    O_NOFOLLOW (missing ones made when `create`), so no link can lead outside; refusals are ToolError lines."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if parts:
        try:  # the kernel resolves the whole path at once; on any refusal the walk below says which part
            nfd = openat2(fd, "/".join(parts), os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            nfd = None
        if nfd is not None:
            os.close(fd)
            return nfd
    try:
        for name in parts:
            nfd = _open_at(fd, name, _DIR, shown, missing_ok=create)
            if nfd is None:  # create the missing directory, then open it the same careful way
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                nfd = _open_at(fd, name, _DIR, shown)
                assert nfd is not None
                adopt(fd, nfd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_file(ctx: ToolContext, path: str, flags: int) -> tuple[int, list[str]]:
    """A descriptor of the regular file `path` in the workspace (created when flags has O_CREAT)."""
    parts = _parts(ctx, path)
    if not parts:
        raise ToolError(f"{path}: is a directory (use fs.list)")
    dir_fd = _open_dir(ctx, parts[:-1], path, create=bool(flags & os.O_CREAT))
    try:
        fd = _open_at(dir_fd, parts[-1], flags | _FILE, path)
        assert fd is not None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ToolError(f"{path}: is a directory (use fs.list)")
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{path}: not a regular file; refused")
            if st.st_nlink > 1:
                raise ToolError(f"{path}: has {st.st_nlink} hard links; refused")
            if flags & (os.O_RDWR | os.O_WRONLY):
                owner = os.fstat(dir_fd)
                if st.st_uid not in (owner.st_uid, os.geteuid()):
                    raise ToolError(f"{path}: belongs to uid {st.st_uid}, not the workspace's owner; refused")
            if flags & os.O_CREAT:
                adopt(dir_fd, fd)
        except BaseException:
            os.close(fd)
            raise
    finally:
        os.close(dir_fd)
    return fd, parts


def _read_upto(fd: int, n: int, offset: int | None = None) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.pread(fd, min(n - got, 1 << 16), offset + got) if offset is not None else os.read(fd, n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@tool("fs.read", timeout=10, target="path")
def fs_read(ctx: ToolContext, path: str, max_bytes: int = 65536) -> str:
    """Read a text file in the workspace, at most max_bytes (up to 1 MiB)."""
    if max_bytes < 1:
        raise ToolError("max_bytes must be at least 1")
    limit = min(max_bytes, MAX_READ)
    fd, _ = _open_file(ctx, path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = _read_upto(fd, limit + 1)
    finally:
        os.close(fd)
    if b"\x00" in data[:BINARY_SNIFF]:
        raise ToolError(f"{path}: binary file ({max(size, len(data))} bytes); not shown")
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace")
    text = data[:limit].decode("utf-8", errors="replace")
    return f"{text}\n[truncated: first {limit} of {max(size, len(data))} bytes]"


@tool("fs.write", timeout=10, target="path")
def fs_write(ctx: ToolContext, path: str, content: str, append: bool = False) -> str:
    """Write (or append) text to a file in the workspace, creating it and its directories; at most 1 MiB."""
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ToolError(f"{path}: content is not valid text ({exc.reason})") from None
    if len(data) > MAX_WRITE:
        raise ToolError(f"{path}: content too large: {len(data)} bytes (limit {MAX_WRITE} bytes)")
    if any(part.lower() == ".git" for part in path.replace("\\", "/").split("/")):
        # a planted .git/config (core.fsmonitor, hooks, filters) would turn an allowed `git status` into any command
        raise ToolError(f"{path}: writing git's own files is refused (they can run commands)")
    fd, parts = _open_file(ctx, path, os.O_RDWR | os.O_CREAT | (os.O_APPEND if append else 0))
    try:
        if not append:
            os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        files = ctx.services.get("files")
        whole = _read_upto(fd, os.fstat(fd).st_size, offset=0) if files is not None else b""
    finally:
        os.close(fd)
    rel = "/".join(parts)
    done = f"{'appended' if append else 'wrote'} {len(data)} bytes to {rel}"
    if files is not None:
        try:
            files.record(pid=ctx.pid, user=ctx.user, path=rel, content=whole)
        except Exception as exc:  # the write happened; say the version was not kept
            return f"{done} (version not kept: {exc})"
    return done


def _entry_line(entry: os.DirEntry[str]) -> str:
    name = entry.name if entry.name.isprintable() else repr(entry.name)
    try:
        if entry.is_symlink():
            return f"{name} -> (link)"
        if entry.is_dir(follow_symlinks=False):
            return f"{name}/"
    except OSError:
        pass
    return name


@tool("fs.list", timeout=10, target="path")
def fs_list(ctx: ToolContext, path: str = ".") -> str:
    """List a directory in the workspace: one entry a line, directories end in '/', links are not followed."""
    fd = _open_dir(ctx, _parts(ctx, path), path)
    try:
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
    finally:
        os.close(fd)
    if not entries:
        return "(empty directory)"
    lines = [_entry_line(e) for e in entries[:MAX_LIST]]
    if len(entries) > MAX_LIST:
        lines.append(f"[… {len(entries) - MAX_LIST} more entries]")
    return "\n".join(lines)
