"""Path escapes through fs.read / fs.write / fs.list: access allows (`fs.*(*)` granted), the TOOL must refuse.

For each case the result is an error saying why, the audit row shows the grant's allow (the tool refused
after the decision), and the file outside the workspace is unchanged or was never created.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel.kernel import Kernel
from tests.hostile.conftest import audit, call, run_calls

pytestmark = pytest.mark.hostile

SECRET = "outside secret\n"


@pytest.fixture
def ws(kernel: Kernel, home: Path, tmp_path: Path) -> Path:
    """The agent's workspace, next to an outside file; fs tools are allowed only by standing grants."""
    (home / "policy.toml").write_text('[default]\nallow = ["calc"]\n')  # no built-in fs.read/fs.list
    for tool in ("fs.read", "fs.write", "fs.list"):
        kernel.access.grant("alice", f"{tool}(*)", scope="always")
    area = tmp_path / "area"  # the workspace and what lies next to it, nothing else
    workspace = area / "ws"
    workspace.mkdir(parents=True)
    (area / "outside.txt").write_text(SECRET)
    return workspace


async def refused(kernel: Kernel, ws: Path, tool: str, why: str, **args: object) -> str:
    """Call `tool` in `ws`: an error containing `why`, audited once as allowed by the grant."""
    proc, out = await run_calls(kernel, [call(tool, **args)], workspace=ws)
    assert len(out) == 1 and out[0].startswith("ERR ") and why in out[0], out
    assert SECRET.strip() not in out[0]
    ((name, decision, by, logged),) = audit(kernel, proc.pid)
    assert (name, decision, by) == (tool, "allow", "grant:always")
    assert {k: logged[k] for k in args} == args  # with the defaults filled in (fs.read's max_bytes)
    return out[0]


@pytest.mark.parametrize("path", ["../outside.txt", "a/../../outside.txt", "./../outside.txt", "..", "../ws-x/.."])
async def test_dot_dot_is_refused(kernel: Kernel, ws: Path, path: str) -> None:
    await refused(kernel, ws, "fs.read", "outside the workspace", path=path)
    await refused(kernel, ws, "fs.write", "outside the workspace", path=path, content="pwned")
    await refused(kernel, ws, "fs.list", "outside the workspace", path=path)
    assert (ws.parent / "outside.txt").read_text() == SECRET
    assert sorted(p.name for p in ws.parent.iterdir()) == ["outside.txt", "ws"]


async def test_absolute_paths_outside_are_refused(kernel: Kernel, ws: Path) -> None:
    outside = ws.parent / "outside.txt"
    await refused(kernel, ws, "fs.read", "outside the workspace", path=str(outside))
    await refused(kernel, ws, "fs.write", "outside the workspace", path=str(outside), content="pwned")
    await refused(kernel, ws, "fs.write", "outside the workspace", path=str(ws.parent / "new.txt"), content="x")
    await refused(kernel, ws, "fs.read", "outside the workspace", path="/etc/hostname")
    await refused(kernel, ws, "fs.list", "outside the workspace", path="/")
    await refused(kernel, ws, "fs.write", "outside the workspace", path=f"{ws}/../outside.txt", content="pwned")
    assert outside.read_text() == SECRET and not (ws.parent / "new.txt").exists()


async def test_a_sibling_with_the_same_prefix_is_outside(kernel: Kernel, ws: Path) -> None:
    evil = ws.parent / f"{ws.name}-evil"
    evil.mkdir()
    (evil / "loot.txt").write_text(SECRET)
    await refused(kernel, ws, "fs.read", "outside the workspace", path=str(evil / "loot.txt"))
    await refused(kernel, ws, "fs.write", "outside the workspace", path=str(evil / "loot.txt"), content="pwned")
    await refused(kernel, ws, "fs.write", "outside the workspace", path=f"{ws}-evil/new.txt", content="pwned")
    await refused(kernel, ws, "fs.list", "outside the workspace", path=str(evil))
    await refused(kernel, ws, "fs.read", "outside the workspace", path=f"../{ws.name}-evil/loot.txt")
    assert (evil / "loot.txt").read_text() == SECRET and sorted(os.listdir(evil)) == ["loot.txt"]


async def test_a_symlink_to_an_existing_outside_file_is_refused(kernel: Kernel, ws: Path) -> None:
    outside = ws.parent / "outside.txt"
    (ws / "link.txt").symlink_to(outside)
    await refused(kernel, ws, "fs.read", "symbolic link", path="link.txt")
    await refused(kernel, ws, "fs.write", "symbolic link", path="link.txt", content="pwned")
    await refused(kernel, ws, "fs.write", "symbolic link", path="link.txt", content="pwned", append=True)
    await refused(kernel, ws, "fs.read", "symbolic link", path=str(ws / "link.txt"))
    assert outside.read_text() == SECRET and (ws / "link.txt").is_symlink()


async def test_a_dangling_symlink_is_not_followed_to_create_its_target(kernel: Kernel, ws: Path) -> None:
    target = ws.parent / "created-by-agent.txt"
    (ws / "dangling").symlink_to(target)
    await refused(kernel, ws, "fs.write", "symbolic link", path="dangling", content="pwned")
    await refused(kernel, ws, "fs.write", "symbolic link", path="dangling", content="pwned", append=True)
    await refused(kernel, ws, "fs.read", "symbolic link", path="dangling")
    assert not target.exists() and not target.is_symlink()


async def test_a_symlinked_parent_directory_is_refused(kernel: Kernel, ws: Path) -> None:
    outside_dir = ws.parent / "outside-dir"
    outside_dir.mkdir()
    (outside_dir / "loot.txt").write_text(SECRET)
    (ws / "linkdir").symlink_to(outside_dir, target_is_directory=True)
    await refused(kernel, ws, "fs.read", "symbolic link", path="linkdir/loot.txt")
    await refused(kernel, ws, "fs.write", "symbolic link", path="linkdir/loot.txt", content="pwned")
    await refused(kernel, ws, "fs.write", "symbolic link", path="linkdir/new.txt", content="pwned")
    await refused(kernel, ws, "fs.write", "symbolic link", path="linkdir/deeper/new.txt", content="pwned")
    await refused(kernel, ws, "fs.list", "symbolic link", path="linkdir")
    assert (outside_dir / "loot.txt").read_text() == SECRET and os.listdir(outside_dir) == ["loot.txt"]


async def test_a_hard_link_to_an_outside_file_is_refused(kernel: Kernel, ws: Path) -> None:
    outside = ws.parent / "outside.txt"
    os.link(outside, ws / "hard.txt")
    await refused(kernel, ws, "fs.write", "hard links", path="hard.txt", content="pwned")
    await refused(kernel, ws, "fs.read", "hard links", path="hard.txt")
    assert outside.read_text() == SECRET


async def test_a_fifo_or_a_nul_byte_neither_hangs_nor_escapes(kernel: Kernel, ws: Path) -> None:
    os.mkfifo(ws / "pipe")
    await refused(kernel, ws, "fs.read", "not a regular file", path="pipe")
    await refused(kernel, ws, "fs.write", "not a regular file", path="pipe", content="x")
    await refused(kernel, ws, "fs.write", "outside the workspace", path="ok.txt\x00../../outside.txt",
                  content="pwned")
    assert (ws.parent / "outside.txt").read_text() == SECRET and not (ws / "ok.txt").exists()


async def test_inside_the_workspace_the_same_grants_work(kernel: Kernel, ws: Path) -> None:
    """The control: a plain relative and an absolute path inside are read and written."""
    proc, out = await run_calls(kernel, [call("fs.write", path="sub/a.txt", content="mine"),
                                         call("fs.read", path=str(ws / "sub" / "a.txt")),
                                         call("fs.read", path="sub/../sub/a.txt")], workspace=ws)
    assert out[0].startswith("ok wrote") and out[1:] == ["ok mine", "ok mine"], out
    assert [(t, d, b) for t, d, b, _ in audit(kernel, proc.pid)] == [("fs.write", "allow", "grant:always"),
                                                                    ("fs.read", "allow", "grant:always"),
                                                                    ("fs.read", "allow", "grant:always")]
