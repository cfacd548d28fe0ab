"""Confinement by the OS: what a program run by the shell tool can reach, from the attacker's side.

Every case runs through the kernel (an agent's tool calls, rules granted as a user would), under the default
sandbox (bubblewrap). The rule lets the call run; the sandbox decides what it can reach.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.kernel import Kernel
from kernel.process import Signal
from kernel.tools.sandbox import sandbox_uid
from tests.conftest import CHAIN, until
from tests.hostile.conftest import call, processes_with, run_calls, start_calls

pytestmark = pytest.mark.hostile
ROOT = os.geteuid() == 0


def unique() -> str:
    return str(random.randrange(10**8, 10**9))


@pytest.fixture(autouse=True)
def _bwrap(kernel: Kernel) -> None:
    status = kernel.sandbox.status()
    assert status.mode == "bwrap" and status.ok, status  # the default sandbox works on these machines


@pytest.fixture
def open_workspace(open_parent: Path) -> Path:
    """A chosen workspace (`run -w`) that alice's sandbox uid may write."""
    ws = open_parent / "ws"
    ws.mkdir()
    if ROOT:
        os.chown(ws, sandbox_uid("alice"), sandbox_uid("alice"))
    return ws


async def shell(kernel: Kernel, command: str, **kw: object) -> str:
    _, out = await run_calls(kernel, [call("shell", command=command)], **kw)  # type: ignore[arg-type]
    return "\n".join(out)


# -- git and interpreters: hooks a program could plant in the workspace -----------------------------


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_a_bare_repository_planted_at_the_workspace_root_runs_no_alias(kernel: Kernel) -> None:
    """README grants (`shell(git status*)`, `fs.write(workspace/**)`): the agent writes HEAD, config with an
    alias, objects/ and refs/ at the root. git must not take the workspace for a repository."""
    kernel.access.grant("alice", "shell(git status*)", scope="always")
    kernel.access.grant("alice", "fs.write(workspace/**)", scope="always")
    proc, out = await run_calls(kernel, [
        call("fs.write", path="HEAD", content="ref: refs/heads/main\n"),
        call("fs.write", path="config", content="[core]\n\tbare = true\n[alias]\n\tstatus2 = !id > marker\n"),
        call("fs.write", path="objects/info/keep", content=""),
        call("fs.write", path="refs/heads/keep", content=""),
        call("shell", command="git status2"),
        call("shell", command="git status"),
    ])
    ws = kernel.workspace(proc)
    text = "\n".join(out)
    assert not (ws / "marker").exists(), out
    assert "'status2' is not a git command" in text and "safe.bareRepository is 'explicit'" in text, out


async def test_a_pth_file_in_the_workspace_does_not_run_inside_python(kernel: Kernel) -> None:
    """HOME is not the workspace and user site directories are off: a planted .pth runs nowhere."""
    kernel.access.grant("alice", "fs.write(workspace/**)", scope="always")
    kernel.access.grant("alice", "shell(*)", scope="always")
    hook = "import os; open(os.path.join(os.getcwd(), 'pwned'), 'w').write('x')\n"
    site = ".local/lib/python3.11/site-packages"
    proc, out = await run_calls(kernel, [
        call("fs.write", path=f"{site}/evil.pth", content=hook),
        call("fs.write", path=".pythonrc.py", content=hook),
        call("shell", command="python3 -c 'import os, site; print(os.environ[\"HOME\"], site.ENABLE_USER_SITE)'"),
    ])
    home, user_site = out[-1].removeprefix("ok ").split()[-2:]
    assert not (kernel.workspace(proc) / "pwned").exists(), out
    assert home != str(kernel.workspace(proc)) and user_site == "False", out


# -- other users: their workspaces, their processes, AIOS_HOME ----------------------------------------


async def test_one_users_program_can_neither_see_nor_signal_anothers(kernel: Kernel) -> None:
    for user in ("alice", "bob"):
        kernel.access.grant(user, "shell(*)", scope="always")
    marker = unique()
    bob = start_calls(kernel, [call("shell", command=f"sh -c 'echo bob-secret-{marker} > s.txt; "
                                                     f"exec sleep 1000.{marker}'")], user="bob")
    await until(lambda: bool(processes_with(f"1000.{marker}")), timeout=15)
    bob_ws = kernel.workspace(bob)
    attack = (f"sh -c 'cat /proc/*/cwd/s.txt {bob_ws}/s.txt; ls {kernel.config.home}; ps -e -o pid=,comm=; "
              "kill -9 -1; pkill -9 sleep; echo done'")
    out = await shell(kernel, attack)
    assert f"bob-secret-{marker}" not in out, out
    assert "done" in out and "sleep" not in out.split("done")[0].split("ps")[0], out
    assert processes_with(f"1000.{marker}"), "alice's program killed bob's"
    kernel.signal(bob.pid, Signal.KILL, sender="bob")
    await until(lambda: not processes_with(f"1000.{marker}"), timeout=5)


async def test_aios_home_and_the_database_are_out_of_sight(kernel: Kernel) -> None:
    kernel.access.grant("alice", "shell(*)", scope="always")
    home = kernel.config.home
    assert (home / "aios.db").exists()
    listing = await shell(kernel, f"ls -a {home}")
    assert listing.split()[1:] == [".", "..", "workspaces"], listing  # only the way to its own workspace
    out = await shell(kernel, f"head -c 64 {home}/aios.db")
    assert "SQLite" not in out and "No such file" in out, out
    homes = await shell(kernel, "ls -A /root /home")
    assert homes.split()[1:] == ["/home:", "/root:"], homes


async def test_a_chosen_workspace_of_another_user_is_hidden(kernel: Kernel, open_workspace: Path) -> None:
    for user in ("alice", "bob"):
        kernel.access.grant(user, "shell(*)", scope="always")
    (open_workspace / "bob.txt").write_text("bob's notes\n")
    marker = unique()
    bob = start_calls(kernel, [call("shell", command=f"sleep 1000.{marker}")], user="bob", workspace=open_workspace)
    await until(lambda: bool(processes_with(f"1000.{marker}")), timeout=15)
    out = await shell(kernel, f"sh -c 'ls -a {open_workspace}; cat {open_workspace}/bob.txt; echo end'")
    assert "bob's notes" not in out and "No such file or directory" in out, out
    kernel.signal(bob.pid, Signal.KILL, sender="bob")


# -- the network --------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


async def test_no_network_unless_a_rule_grants_it(kernel: Kernel, listener: int) -> None:
    command = (f"python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", {listener}), 2); "
               "print(\"connected\")'")
    kernel.access.grant("alice", "shell(*)", scope="always")
    out = await shell(kernel, command)
    assert "connected" not in out and "ConnectionRefusedError" in out, out
    kernel.access.grant("alice", "net(*)", scope="always")
    assert "ok connected" in await shell(kernel, command)


# -- project policy files: a FIFO, a link to /dev/zero, a huge file ----------------------------------


@pytest.mark.parametrize("kind", ["fifo", "zero", "huge", "dir"])
async def test_a_hostile_project_policy_file_neither_hangs_nor_fills_the_kernel(
        kernel: Kernel, open_workspace: Path, kind: str) -> None:
    policy = open_workspace / ".aios" / "policy.toml"
    policy.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(policy)
    elif kind == "zero":
        policy.symlink_to("/dev/zero")
    elif kind == "huge":
        with policy.open("wb") as f:
            f.write(b"[default]\nallow = ['shell(*)']\n" + b"#" * (8 << 20))
    else:
        policy.mkdir()
    other = start_calls(kernel, [call("calc", expression="6*7")])  # another agent on the same kernel
    _, out = await asyncio.wait_for(run_calls(kernel, [call("fs.list", path=".aios")], workspace=open_workspace), 20)
    assert out[0].startswith("ok "), out
    await asyncio.wait_for(kernel.wait(other.pid), 20)
    assert "".join(other.output).strip() == "ok 42"


# -- the event loop stays free ------------------------------------------------------------------------


async def test_reading_64_kb_of_token_text_does_not_freeze_the_kernel(kernel: Kernel, open_workspace: Path) -> None:
    """Redaction is linear and long texts are redacted in a worker thread: the loop keeps ticking."""
    ws = open_workspace
    (ws / "t.txt").write_text("TOKEN" * 12800 + "\nPASSWORD=hunter2\n")
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        proc, out = await run_calls(kernel, [call("fs.read", path="t.txt", max_bytes=200000)], workspace=ws)
    finally:
        tick.cancel()
    assert out[0].startswith("ok TOKENTOKEN") and "hunter2" not in "".join(out) and "[REDACTED]" in "".join(out)
    assert max(gaps, default=0.0) < 2.0, f"the loop stalled {max(gaps):.1f} s"  # before: 15 s and more


# -- fs tools -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not ROOT, reason="another uid's file needs root to plant")
async def test_fs_write_refuses_a_file_another_uid_owns(kernel: Kernel) -> None:
    kernel.access.grant("alice", "fs.write(workspace/**)", scope="always")
    proc, out = await run_calls(kernel, [call("fs.write", path="mine.txt", content="x")])
    ws = kernel.workspace(proc)
    planted = ws / "planted.txt"
    planted.write_text("theirs\n")
    os.chown(planted, 54321, 54321)
    _, out = await run_calls(kernel, [call("fs.write", path=str(planted), content="overwritten")],
                             workspace=ws)
    assert out[0].startswith("ERR ") and "belongs to uid 54321" in out[0], out
    assert planted.read_text() == "theirs\n"


async def test_the_audit_keeps_size_and_hash_of_a_huge_argument(kernel: Kernel) -> None:
    import hashlib

    kernel.access.grant("alice", "fs.write(workspace/**)", scope="always")
    content = "x" * 300_000
    proc, out = await run_calls(kernel, [call("fs.write", path="big.txt", content=content)])
    assert out[0].startswith("ERR ") or out[0].startswith("ok "), out
    row = kernel.access.audit_rows(pid=proc.pid)[0]
    kept = row["args"]["content"]
    assert len(kept) < 5000 and hashlib.sha256(content.encode()).hexdigest() in kept and "300000 bytes" in kept


# -- the sandbox ends everything a call started ---------------------------------------------------------


async def test_a_setsid_chain_outlives_nothing(kernel: Kernel) -> None:
    kernel.access.grant("alice", "shell(*)", scope="always")
    marker = unique()
    proc = start_calls(kernel, [call("shell", command=f"python3 -c {shlex.quote(CHAIN)} chain-{marker}")])
    await asyncio.wait_for(kernel.wait(proc.pid), 30)
    assert (kernel.workspace(proc) / "hop").stat().st_size >= 20  # the chain ran
    await until(lambda: not processes_with(f"chain-{marker}"), timeout=5)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_a_cloned_repositorys_filter_runs_only_inside_the_sandbox(kernel: Kernel,
                                                                        open_workspace: Path) -> None:
    """A repository that arrived with `filter.x.clean` runs it under `git status` (git's own behaviour), but
    only inside the sandbox: it cannot write outside the workspace or reach the network."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(open_workspace)], check=True)
    outside = Path(tempfile.mkdtemp(prefix="aios-outside-"))
    outside.chmod(0o777)
    try:
        (open_workspace / ".git" / "config").write_text(
            f"[filter \"x\"]\n\tclean = sh -c 'touch {outside}/escaped; touch inside; cat'\n")
        (open_workspace / ".gitattributes").write_text("*.txt filter=x\n")
        (open_workspace / "a.txt").write_text("a\n")
        if ROOT:
            for path in [open_workspace, *open_workspace.rglob("*")]:
                os.chown(path, sandbox_uid("alice"), sandbox_uid("alice"))
        kernel.access.grant("alice", "shell(git status)", scope="always")
        await shell(kernel, "git status", workspace=open_workspace)
        assert not (outside / "escaped").exists()
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@pytest.mark.parametrize("way", ["openat2", "walk"])
async def test_links_on_the_way_are_refused_with_openat2_and_without(kernel: Kernel, open_workspace: Path,
                                                                     way: str, monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from kernel import beneath

    if way == "walk":
        monkeypatch.setattr(beneath, "_available", False)
    elif not beneath._available:
        pytest.skip("this kernel has no openat2")
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "s.txt").write_text("outside the workspace\n")
    (open_workspace / "up").symlink_to(secret)
    (open_workspace / "real").mkdir()
    (open_workspace / "real" / "in.txt").write_text("inside\n")
    kernel.access.grant("alice", "fs.write(workspace/**)", scope="always")
    _, out = await run_calls(kernel, [
        call("fs.read", path="up/s.txt"), call("fs.list", path="up"), call("fs.write", path="up/new.txt", content="x"),
        call("fs.read", path="real/../up/s.txt"), call("fs.read", path="real/in.txt"),
    ], workspace=open_workspace)
    assert all(line.startswith("ERR ") and "up is a symbolic link; refused" in line for line in out[:4]), out
    assert out[4] == "ok inside" and not (secret / "new.txt").exists()


def test_openat2_itself_refuses_links_escapes_and_fifos_block_nothing(tmp_path: Path) -> None:
    import errno

    from kernel import beneath

    if not beneath._available:
        pytest.skip("this kernel has no openat2")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "d")
    os.mkfifo(tmp_path / "d" / "fifo")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path, code in (("link/f", errno.ELOOP), ("d/../../etc/passwd", errno.EXDEV), ("/etc/passwd", errno.EXDEV)):
            with pytest.raises(OSError) as caught:
                beneath.openat2(root, path, os.O_RDONLY)
            assert caught.value.errno == code, path
        fd = beneath.openat2(root, "d/f", os.O_RDONLY)
        assert fd is not None and os.read(fd, 1) == b"x"
        os.close(fd)
        with pytest.raises(beneath.NotRegular):
            beneath.read_beneath(tmp_path, "d/fifo", 1024)  # opened without blocking, then refused
    finally:
        os.close(root)
