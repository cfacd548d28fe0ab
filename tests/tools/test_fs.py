"""fs.read / fs.write / fs.list: confined to the workspace, never through a symbolic link."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from kernel.tools.builtin.fs import MAX_READ, MAX_WRITE, fs_list, fs_read, fs_write, workspace_target
from kernel.tools.registry import ToolContext, ToolRegistry


class Recorder:
    """Stands in for the kernel's FileVersions."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def record(self, pid: int, user: str, path: str, content: bytes) -> int:
        self.calls.append(dict(pid=pid, user=user, path=path, content=content))
        return len(self.calls)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_text("top secret\n")
    return d


@pytest.fixture
def files() -> Recorder:
    return Recorder()


@pytest.fixture
def ctx(ws: Path, files: Recorder) -> ToolContext:
    return ToolContext(pid=3, user="alice", workspace=ws, services={"files": files})


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry([fs_read, fs_write, fs_list])


async def call(registry: ToolRegistry, ctx: ToolContext, name: str, **args: Any) -> tuple[bool, str]:
    result = await registry.call(name, ctx, args)
    return result.ok, result.text


# -- ordinary use -----------------------------------------------------------------------------------


async def test_write_then_read(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    ok, text = await call(registry, ctx, "fs.write", path="notes/today.txt", content="héllo\n")
    assert ok and text == "wrote 7 bytes to notes/today.txt"
    assert (ws / "notes" / "today.txt").read_text() == "héllo\n"
    assert await call(registry, ctx, "fs.read", path="notes/today.txt") == (True, "héllo\n")
    assert await call(registry, ctx, "fs.read", path="./notes/../notes/today.txt") == (True, "héllo\n")


async def test_workspace_is_created(ctx: ToolContext, ws: Path) -> None:
    assert not ws.exists()
    assert fs_list.fn(ctx) == "(empty directory)"
    assert ws.is_dir()


async def test_append_and_overwrite(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    await call(registry, ctx, "fs.write", path="log.txt", content="one\n")
    ok, text = await call(registry, ctx, "fs.write", path="log.txt", content="two\n", append=True)
    assert text == "appended 4 bytes to log.txt"
    assert (ws / "log.txt").read_text() == "one\ntwo\n"
    await call(registry, ctx, "fs.write", path="log.txt", content="x")
    assert (ws / "log.txt").read_text() == "x"


async def test_each_write_is_recorded_with_the_whole_file(registry: ToolRegistry, ctx: ToolContext,
                                                          files: Recorder, ws: Path) -> None:
    await call(registry, ctx, "fs.write", path="a/b.txt", content="one\n")
    await call(registry, ctx, "fs.write", path=str(ws / "a" / "b.txt"), content="two\n", append=True)
    assert files.calls == [
        dict(pid=3, user="alice", path="a/b.txt", content=b"one\n"),
        dict(pid=3, user="alice", path="a/b.txt", content=b"one\ntwo\n"),
    ]


async def test_absolute_path_inside_the_workspace_is_fine(registry: ToolRegistry, ctx: ToolContext,
                                                          ws: Path) -> None:
    ok, _ = await call(registry, ctx, "fs.write", path=str(ws / "abs.txt"), content="in")
    assert ok and (ws / "abs.txt").read_text() == "in"
    assert await call(registry, ctx, "fs.read", path=str(ws / "abs.txt")) == (True, "in")


async def test_read_is_capped_and_says_so(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    ws.mkdir()
    (ws / "big.txt").write_text("a" * 100)
    ok, text = await call(registry, ctx, "fs.read", path="big.txt", max_bytes=10)
    assert ok and text == "a" * 10 + "\n[truncated: first 10 of 100 bytes]"
    (ws / "huge.txt").write_bytes(b"b" * (MAX_READ + 5))
    ok, text = await call(registry, ctx, "fs.read", path="huge.txt", max_bytes=10 * MAX_READ)
    assert text.startswith("b" * MAX_READ + "\n[truncated: first 1048576 of")
    ok, text = await call(registry, ctx, "fs.read", path="big.txt", max_bytes=0)
    assert not ok and "max_bytes" in text


async def test_write_over_the_cap_is_refused(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    ok, text = await call(registry, ctx, "fs.write", path="big.txt", content="x" * (MAX_WRITE + 1))
    assert not ok and "too large" in text
    assert not (ws / "big.txt").exists()


async def test_binary_file_is_refused_and_bad_utf8_replaced(registry: ToolRegistry, ctx: ToolContext,
                                                            ws: Path) -> None:
    ws.mkdir()
    (ws / "blob.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    ok, text = await call(registry, ctx, "fs.read", path="blob.bin")
    assert not ok and "binary file" in text
    (ws / "latin1.txt").write_bytes(b"caf\xe9\n")
    assert await call(registry, ctx, "fs.read", path="latin1.txt") == (True, "caf\ufffd\n")


async def test_missing_file_and_directory_errors(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    ok, text = await call(registry, ctx, "fs.read", path="nope.txt")
    assert not ok and "no such file" in text
    (ws / "d").mkdir(parents=True)
    ok, text = await call(registry, ctx, "fs.read", path="d")
    assert not ok and "is a directory" in text
    ok, text = await call(registry, ctx, "fs.write", path="d", content="x")
    assert not ok and "is a directory" in text


async def test_list_marks_directories_and_links(registry: ToolRegistry, ctx: ToolContext, ws: Path,
                                                outside: Path) -> None:
    (ws / "sub").mkdir(parents=True)
    (ws / "b.txt").write_text("b")
    (ws / "sub" / "inner.txt").write_text("i")
    (ws / "link").symlink_to(outside)
    assert await call(registry, ctx, "fs.list") == (True, "b.txt\nlink -> (link)\nsub/")
    assert await call(registry, ctx, "fs.list", path="sub") == (True, "inner.txt")


async def test_list_of_a_file_is_an_error(registry: ToolRegistry, ctx: ToolContext, ws: Path) -> None:
    ws.mkdir()
    (ws / "f").write_text("x")
    ok, text = await call(registry, ctx, "fs.list", path="f")
    assert not ok and "not a directory" in text


def test_workspace_target(ws: Path) -> None:
    assert workspace_target(ws, "notes/a.txt") == "workspace/notes/a.txt"
    assert workspace_target(ws, "./notes//x/../a.txt") == "workspace/notes/a.txt"
    assert workspace_target(ws, str(ws / "a.txt")) == "workspace/a.txt"
    assert workspace_target(ws, ".") == "workspace/"
    assert workspace_target(ws, str(ws)) == "workspace/"
    assert workspace_target(ws, "../x") == "../x"
    assert workspace_target(ws, "/etc/passwd") == "/etc/passwd"
    assert workspace_target(ws, str(ws) + "-evil/a") == str(ws) + "-evil/a"


# -- hostile paths ----------------------------------------------------------------------------------


def escapes(ws: Path, outside: Path) -> list[str]:
    evil = ws.parent / (ws.name + "-evil")
    return [
        "../outside/secret.txt",
        "a/../../outside/secret.txt",
        str(outside / "secret.txt"),
        str(ws / ".." / "outside" / "secret.txt"),
        f"../{evil.name}/secret.txt",
        str(evil / "secret.txt"),
        "/etc/passwd",
        "notes\x00.txt",
    ]


@pytest.mark.hostile
async def test_paths_outside_are_refused(registry: ToolRegistry, ctx: ToolContext, ws: Path,
                                         outside: Path) -> None:
    ws.mkdir()
    evil = ws.parent / (ws.name + "-evil")
    evil.mkdir()
    (evil / "secret.txt").write_text("evil twin")
    for path in escapes(ws, outside):
        for name, args in (("fs.read", {}), ("fs.write", {"content": "pwned"}), ("fs.list", {})):
            ok, text = await call(registry, ctx, name, path=path, **args)
            assert not ok, (name, path)
            assert "outside the workspace" in text, (name, path, text)
    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert (evil / "secret.txt").read_text() == "evil twin"
    assert sorted(p.name for p in ws.parent.iterdir()) == ["outside", "ws", "ws-evil"]


@pytest.mark.hostile
async def test_symlink_to_a_file_outside_is_refused(registry: ToolRegistry, ctx: ToolContext, ws: Path,
                                                    outside: Path, files: Recorder) -> None:
    ws.mkdir()
    (ws / "s").symlink_to(outside / "secret.txt")
    ok, text = await call(registry, ctx, "fs.read", path="s")
    assert not ok and "symbolic link" in text and "top secret" not in text
    ok, text = await call(registry, ctx, "fs.write", path="s", content="pwned")
    assert not ok and "symbolic link" in text
    ok, text = await call(registry, ctx, "fs.write", path="s", content="pwned", append=True)
    assert not ok and "symbolic link" in text
    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert files.calls == []


@pytest.mark.hostile
async def test_dangling_symlink_pointing_out_is_not_created(registry: ToolRegistry, ctx: ToolContext, ws: Path,
                                                            outside: Path) -> None:
    ws.mkdir()
    (ws / "d").symlink_to(outside / "new.txt")
    ok, text = await call(registry, ctx, "fs.write", path="d", content="pwned")
    assert not ok and "symbolic link" in text
    assert not (outside / "new.txt").exists()


@pytest.mark.hostile
async def test_symlink_inside_the_workspace_is_refused_too(registry: ToolRegistry, ctx: ToolContext,
                                                           ws: Path) -> None:
    ws.mkdir()
    (ws / "real.txt").write_text("real")
    (ws / "alias").symlink_to("real.txt")
    ok, text = await call(registry, ctx, "fs.read", path="alias")
    assert not ok and "alias is a symbolic link; refused" in text


@pytest.mark.hostile
async def test_symlinked_parent_directory_is_refused(registry: ToolRegistry, ctx: ToolContext, ws: Path,
                                                     outside: Path) -> None:
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "up").symlink_to(outside)
    for name, args in (("fs.read", {"path": "sub/up/secret.txt"}),
                       ("fs.write", {"path": "sub/up/new.txt", "content": "pwned"}),
                       ("fs.write", {"path": "sub/up/deeper/new.txt", "content": "pwned"}),
                       ("fs.list", {"path": "sub/up"})):
        ok, text = await call(registry, ctx, name, **args)
        assert not ok and "up is a symbolic link; refused" in text, (name, text)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


@pytest.mark.hostile
async def test_fifo_and_hard_link_are_refused(registry: ToolRegistry, ctx: ToolContext, ws: Path,
                                              outside: Path) -> None:
    ws.mkdir()
    os.mkfifo(ws / "pipe")
    ok, text = await call(registry, ctx, "fs.read", path="pipe")  # must not hang waiting for a writer
    assert not ok and "not a regular file" in text
    ok, text = await call(registry, ctx, "fs.write", path="pipe", content="x")
    assert not ok and "not a regular file" in text
    os.link(outside / "secret.txt", ws / "hard")
    ok, text = await call(registry, ctx, "fs.write", path="hard", content="pwned")
    assert not ok and "hard links" in text
    assert (outside / "secret.txt").read_text() == "top secret\n"


@pytest.mark.hostile
def test_directory_swapped_for_a_symlink_never_leaks(ctx: ToolContext, ws: Path, outside: Path) -> None:
    """A racing process flips `d` between a directory and a link to outside; no write may land outside."""
    ws.mkdir()
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            for make in (lambda: (ws / "d").mkdir(), lambda: (ws / "d").symlink_to(outside)):
                try:
                    make()
                except OSError:
                    pass
                try:
                    if (ws / "d").is_symlink():
                        (ws / "d").unlink()
                    else:
                        for f in (ws / "d").iterdir():
                            f.unlink()
                        (ws / "d").rmdir()
                except OSError:
                    pass

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for i in range(300):
            try:
                fs_write.fn(ctx, f"d/f{i}.txt", "pwned")
            except Exception:  # ToolError: refused or raced; both are fine
                pass
    finally:
        stop.set()
        flipper.join()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
