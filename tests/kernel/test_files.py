"""Versioned agent files: numbering, no duplicate for identical bytes, restore, safety, restart."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.errors import InvalidArgument
from kernel.files import FileVersions, NoSuchVersion, clean_path, write_inside
from kernel.storage import Storage


@pytest.fixture
def versions(storage: Storage) -> Iterator[FileVersions]:
    v = FileVersions(storage)
    yield v
    v.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def test_versions_count_up_per_process_and_path(versions: FileVersions) -> None:
    assert [versions.record(1, "alice", "a.txt", b) for b in (b"one", b"two", b"three")] == [1, 2, 3]
    assert versions.record(1, "alice", "b.txt", b"other") == 1
    assert versions.record(2, "alice", "a.txt", b"pid two") == 1
    log = versions.log(1, "a.txt")
    assert [(r["version"], r["size"], r["sha256"]) for r in log] == [
        (1, 3, hashlib.sha256(b"one").hexdigest()),
        (2, 3, hashlib.sha256(b"two").hexdigest()),
        (3, 5, hashlib.sha256(b"three").hexdigest()),
    ]
    assert set(log[0]) == {"version", "size", "sha256", "ts"}
    assert versions.get(1, "a.txt", 2) == b"two"


def test_identical_bytes_keep_no_new_version(versions: FileVersions) -> None:
    assert versions.record(1, "alice", "a.txt", b"same") == 1
    assert versions.record(1, "alice", "./a.txt", b"same") == 1  # same file, same bytes
    assert versions.record(1, "alice", "a.txt", b"new") == 2
    assert versions.record(1, "alice", "a.txt", b"same") == 3  # equal to an older one, not the latest
    assert [r["version"] for r in versions.log(1, "a.txt")] == [1, 2, 3]


def test_files_lists_the_latest_of_each_path(versions: FileVersions) -> None:
    versions.record(4, "alice", "notes/b.md", b"b1")
    versions.record(4, "alice", "a.txt", b"a1")
    versions.record(4, "alice", "a.txt", b"a-two")
    versions.record(5, "alice", "c.txt", b"elsewhere")
    rows = versions.files(4)
    assert [(r["path"], r["versions"], r["size"]) for r in rows] == [("a.txt", 2, 5), ("notes/b.md", 1, 2)]
    assert set(rows[0]) == {"path", "versions", "size", "ts"}
    assert versions.files(99) == []


def test_restore_brings_old_bytes_back_as_a_new_version(versions: FileVersions, workspace: Path) -> None:
    (workspace / "dir").mkdir()
    target = workspace / "dir" / "f.txt"
    for content in (b"first draft", b"second draft"):
        target.write_bytes(content)
        versions.record(3, "alice", "dir/f.txt", content)
    target.chmod(0o600)
    assert versions.restore(3, "dir/f.txt", 1, workspace) == 3
    assert target.read_bytes() == b"first draft"
    assert target.stat().st_mode & 0o777 == 0o600  # the file keeps its mode
    assert versions.get(3, "dir/f.txt", 3) == b"first draft"
    assert [name for name in os.listdir(workspace / "dir")] == ["f.txt"]  # no temporary file left


def test_restore_recreates_a_deleted_file_and_its_directories(versions: FileVersions, workspace: Path) -> None:
    versions.record(3, "alice", "deep/er/f.txt", b"kept")
    assert versions.restore(3, "deep/er/f.txt", 1, workspace) == 1  # same bytes as the latest: no new version
    assert (workspace / "deep" / "er" / "f.txt").read_bytes() == b"kept"


def test_missing_versions_are_one_line_errors(versions: FileVersions, workspace: Path) -> None:
    versions.record(3, "alice", "f.txt", b"x")
    with pytest.raises(NoSuchVersion, match=r"f.txt@2: no such version"):
        versions.get(3, "f.txt", 2)
    with pytest.raises(NoSuchVersion):
        versions.restore(4, "f.txt", 1, workspace)
    assert not (workspace / "f.txt").exists()
    assert versions.log(3, "g.txt") == []


@pytest.mark.hostile
@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "a/../../b", "", ".", "a/\x00b", "./.."])
def test_paths_that_leave_the_workspace_are_refused(versions: FileVersions, path: str) -> None:
    with pytest.raises(InvalidArgument):
        versions.record(1, "alice", path, b"x")
    with pytest.raises(InvalidArgument):
        clean_path(path)


@pytest.mark.hostile
def test_restore_never_writes_through_a_symlink(versions: FileVersions, workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_bytes(b"precious")
    versions.record(1, "alice", "link/f.txt", b"evil")
    versions.record(1, "alice", "f.txt", b"evil")
    (workspace / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        versions.restore(1, "link/f.txt", 1, workspace)
    (workspace / "f.txt").symlink_to(outside / "f.txt")
    with pytest.raises(InvalidArgument, match="symbolic link"):
        versions.restore(1, "f.txt", 1, workspace)
    assert (outside / "f.txt").read_bytes() == b"precious"
    assert [r["version"] for r in versions.log(1, "f.txt")] == [1]  # nothing recorded for a refused restore


@pytest.mark.hostile
def test_restore_refuses_a_directory_or_a_file_in_the_way(workspace: Path) -> None:
    (workspace / "d").mkdir()
    (workspace / "plain").write_text("x")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        write_inside(workspace, "d", b"x")
    with pytest.raises(InvalidArgument, match="not a directory"):
        write_inside(workspace, "plain/f.txt", b"x")


def test_versions_survive_a_restart(home: Path) -> None:
    first = Storage(home)
    v = FileVersions(first)
    v.record(7, "alice", "a.txt", b"v1")
    v.record(7, "alice", "a.txt", b"v2")
    v.close()
    first.close()
    again = Storage(home)
    reopened = FileVersions(again)
    try:
        assert reopened.get(7, "a.txt", 1) == b"v1"
        assert reopened.record(7, "alice", "a.txt", b"v3") == 3
    finally:
        reopened.close()
        again.close()


async def test_records_from_worker_threads_do_not_collide(versions: FileVersions, storage: Storage) -> None:
    """fs tools run in threads while the kernel writes on its own connection: every version kept, numbered once."""
    jobs = [asyncio.ensure_future(asyncio.to_thread(versions.record, 1, "alice", "f.txt", str(i).encode()))
            for i in range(20)]
    await asyncio.sleep(0)
    pids = [storage.allocate_pid() for _ in range(50)]
    await asyncio.gather(*jobs)
    assert pids == list(range(1, 51))
    assert [r["version"] for r in versions.log(1, "f.txt")] == list(range(1, 21))
    assert sorted(versions.get(1, "f.txt", n) for n in range(1, 21)) == sorted(str(i).encode() for i in range(20))
