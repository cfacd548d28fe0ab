"""What the kernel keeps and shows, from the attacker's side: bad text in storage, the audit's tail, other users'
processes, workspaces that reach into AIOS_HOME, deny rules behind wrappers, bad input at boot, no sandbox."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.access import AccessControl
from kernel.access_rules import Rule
from kernel.errors import InvalidArgument, PermissionDenied
from kernel.events import MessageLogged
from kernel.kernel import Kernel
from kernel.process import Signal
from kernel.storage import Storage
from kernel.syscall import Pipe
from tests.conftest import until
from tests.hostile.conftest import call, run_calls
from tests.shell.helpers import session

pytestmark = pytest.mark.hostile


# -- storage never stops on bad text ----------------------------------------------------------------


def test_a_lone_surrogate_is_stored_escaped_and_blocks_nothing(storage: Storage) -> None:
    storage.record(MessageLogged(pid=1, role="assistant", content="half a pair: \udcff end"))
    storage.record(MessageLogged(pid=1, role="assistant", content="the next one"))
    storage.flush()
    assert storage.write_errors == 0
    assert [m["content"] for m in storage.messages(1)] == ["half a pair: \\udcff end", "the next one"]


async def test_invalid_utf8_in_a_prompt_keeps_ps_and_saving_working(kernel: Kernel) -> None:
    bad = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")  # what a terminal's bad bytes become in argv
    proc = kernel.spawn("sleeper", [bad])
    await until(lambda: "sleeping" in "".join(proc.output))
    kernel.signal(proc.pid, Signal.KILL)
    await kernel.wait(proc.pid)
    row = kernel.storage.process_rows([proc.pid])[0]
    assert row["state"] == "EXITED" and kernel.storage.write_errors == 0
    assert json.loads(row["argv"]) == [bad]  # kept as it came, escapes and all


def test_one_row_that_cannot_be_written_does_not_block_the_others(storage: Storage) -> None:
    storage.record(MessageLogged(pid=1, role="user", content="before"))
    storage._events.append((2 ** 80, "Broken", 1, {}))  # an integer SQLite cannot hold
    storage._events.append((1.0, "Fine", 1, {"x": 1}))
    storage.record(MessageLogged(pid=1, role="user", content="after"))
    storage.flush()
    assert [m["content"] for m in storage.messages(1)] == ["before", "after"]
    assert [e["type"] for e in storage.events(pid=1)] == ["Fine"]
    assert storage.write_errors == 1 and "not saved" in (storage.last_write_error or "")


def test_aios_home_and_the_database_are_private(storage: Storage) -> None:
    storage.db.execute("CREATE TABLE IF NOT EXISTS t (x)")
    storage.db.execute("INSERT INTO t VALUES (1)")
    assert stat.S_IMODE(storage.home.stat().st_mode) == 0o700
    for name in ("aios.db", "aios.db-wal", "aios.db-shm"):
        path = storage.home / name
        assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_an_existing_world_readable_home_is_made_private(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    Storage(home).close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


# -- the audit's tail -------------------------------------------------------------------------------


@pytest.fixture
def ac(storage: Storage) -> AccessControl:
    return AccessControl(storage, storage.home)


def _log(ac: AccessControl, n: int) -> list[int]:
    return [ac.audit(user="alice", pid=1, program="chat", tool="shell", args={"command": f"echo {i}"},
                     decision="allow", by="policy") for i in range(n)]


def test_deleting_the_last_rows_and_the_head_is_found(ac: AccessControl, storage: Storage) -> None:
    ids = _log(ac, 5)
    storage.db.execute("DROP TRIGGER audit_no_delete")
    storage.db.execute("DELETE FROM audit WHERE id >= ?", [ids[3]])
    storage.db.execute("DELETE FROM meta WHERE key = 'audit_head'")
    check = ac.verify()
    assert not check.ok and check.bad_id == ids[3]
    assert f"rows {ids[3]}…{ids[4]} missing" in check.message, check.message


def test_a_rewritten_chain_is_found(ac: AccessControl, storage: Storage) -> None:
    """Every row edited and re-hashed, the database's own head updated: the anchor outside it still knows."""
    from kernel.audit import GENESIS, _row_hash

    _log(ac, 3)
    storage.db.execute("DROP TRIGGER audit_no_update")
    prev = GENESIS
    for row in ac.audit_rows():
        row["args"] = json.dumps({"command": "echo innocent"}, sort_keys=True)
        digest = _row_hash(prev, row)
        storage.db.execute("UPDATE audit SET args = ?, prev = ?, hash = ? WHERE id = ?",
                           [row["args"], prev, digest, row["id"]])
        prev, last = digest, row["id"]
    storage.db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", [f"{last}:{prev}"])
    check = ac.verify()
    assert not check.ok and "rewritten" in check.message, check.message


def test_a_deleted_anchor_is_said(ac: AccessControl) -> None:
    _log(ac, 2)
    ac.anchor_path.unlink()
    check = ac.verify()
    assert not check.ok and "anchor" in check.message


# -- other users' processes -------------------------------------------------------------------------


async def test_another_users_conversation_output_and_task_stay_theirs(home: Path) -> None:
    async with session(home) as s:
        (home / "agents").mkdir(exist_ok=True)
        (home / "agents" / "talker.py").write_text(
            "async def main(ctx):\n    await ctx.print('bob-private-output')\n    return 0\n")
        bob = s.kernel.spawn("talker", ["bob-private-task"], user="bob")
        await s.kernel.wait(bob.pid)
        for command in (f"logs {bob.pid}", f"cat /proc/{bob.pid}/log", f"cat /proc/{bob.pid}/context",
                        f"cat /proc/{bob.pid}/tools"):
            assert await s.run(command) != 0, command
            out, err = s.take()
            assert "bob-private" not in out + err and "Permission denied" in err, (command, out, err)
        assert await s.run("ps -a") == 0
        out, _ = s.take()
        assert "talker [hidden]" in out and "bob-private-task" not in out
        assert await s.run("ps -a --json") == 0
        rows = json.loads(s.take()[0])
        assert [r["argv"] for r in rows if r["user"] == "bob"] == [[]]


async def test_run_w_into_aios_home_or_another_users_workspace_is_refused(kernel: Kernel, tmp_path: Path) -> None:
    bob = kernel.spawn("sleeper", user="bob")
    with pytest.raises(PermissionDenied, match="inside AIOS_HOME"):
        kernel.spawn("sleeper", workspace=kernel.config.home / "workspaces" / str(bob.pid))
    for ws in (kernel.config.home, kernel.config.home.parent):  # `run -w ~` with the default home
        with pytest.raises(InvalidArgument, match="contains AIOS_HOME"):
            kernel.spawn("sleeper", workspace=ws)
    shared = tmp_path / "shared"
    (shared / "inner").mkdir(parents=True)
    carol = kernel.spawn("sleeper", user="carol", workspace=shared / "inner")
    for ws in (shared, shared / "inner", shared / "inner" / "deeper"):
        with pytest.raises(PermissionDenied, match="carol's process"):
            kernel.spawn("sleeper", workspace=ws)
    mine = kernel.spawn("sleeper", workspace=tmp_path / "mine")  # beside them: fine
    for proc in (bob, carol, mine):
        kernel.signal(proc.pid, Signal.KILL, sender="root")


async def test_resume_keeps_its_own_workspace_inside_aios_home(kernel: Kernel) -> None:
    from kernel.recovery import resume

    _, out = await run_calls(kernel, [call("calc", expression="1+1")])
    first = kernel.ps(all=True)[-1]
    again = resume(kernel, first.pid)
    assert kernel.workspace(again) == kernel.workspace(first) and kernel.made_workspace(again)
    await kernel.wait(again.pid)


# -- deny rules behind wrappers; flags that run programs ---------------------------------------------


@pytest.mark.parametrize("command", [
    "env -S 'rm -f v' x", "env -S'rm v'", "env --split-string='rm v'", "ionice -c 3 rm -f v", "chrt -f 10 rm v",
    "flock /tmp/l rm v", "flock /tmp/l -c 'rm v'", "taskset -c 1 rm v", "taskset 0x3 rm v",
    "setpriv --reuid=1 rm v", "nsenter -t 1 -m rm v", "stdbuf -oL rm v", "rbash -c 'rm v'", "unshare -r rm v",
    "prlimit --nproc=1 rm v", "numactl -N 0 rm v", "nice -n 5 ionice -c 3 rm v",
])
def test_deny_rules_see_behind_wrappers(command: str) -> None:
    assert Rule.parse("shell(rm *)").matches("shell", command, "deny"), command


@pytest.mark.parametrize(("rule", "command"), [
    ("shell(git grep*)", 'git grep -O"id" x'), ("shell(git grep*)", "git grep --open-files-in-pager=id x"),
    ("shell(git *)", "git -c core.pager=id log"), ("shell(git *)", "git rebase -x id main"),
    ("shell(tar *)", "tar --checkpoint=1 --checkpoint-action=exec=id -cf a b"),
    ("shell(tar *)", "tar -I id -cf a b"), ("shell(tar *)", "tar --to-command=id -xf a"),
    ("shell(find *)", "find . -exec id ;"), ("shell(find *)", "find . -execdir id {} +"),
    ("shell(rsync *)", "rsync -e id a b"), ("shell(ssh *)", "ssh -oProxyCommand=id h"),
    ("shell(sed *)", "sed s/x/id/e f"), ("shell(vim *)", "vim +!id f"),
])
def test_flags_that_run_programs_are_not_simple(rule: str, command: str) -> None:
    assert not Rule.parse(rule).matches("shell", command), command


@pytest.mark.parametrize(("rule", "command"), [
    ("shell(git grep*)", "git grep -n foo"), ("shell(tar *)", "tar -cf a.tar b"), ("shell(find *)", "find . -name x"),
    ("shell(git status*)", "git status -uno"), ("shell(sed *)", "sed -n 1p example.txt"),
])
def test_plain_flags_still_match(rule: str, command: str) -> None:
    assert Rule.parse(rule).matches("shell", command), command


# -- bad input at boot ------------------------------------------------------------------------------


def _aios(*args: str, env: dict[str, str] | None = None, home: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "AIOS_HOME": str(home), **(env or {})}
    return subprocess.run([sys.executable, "-m", "aios_shell.cli", *args], capture_output=True, text=True,
                          env=full, timeout=120)


@pytest.mark.parametrize(("name", "value"), [
    ("AIOS_PERMISSION_TIMEOUT", "abc"), ("AIOS_MAX_PROCS", "-3"), ("AIOS_LLM_RETRIES", "lots"),
    ("AIOS_SANDBOX", "none"), ("AIOS_VERSIONS_QUOTA_MB", "1e9x"),
    ("AIOS_SANDBOX_UID_BASE", "12"),
])
def test_a_bad_setting_is_one_line_and_exit_2(home: Path, name: str, value: str) -> None:
    done = _aios("--backend", "simulated", "-c", "ps", env={name: value}, home=home)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"aios: {name}=") and "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def not_ollama() -> Iterator[str]:
    """Something that answers 200 with HTML on every path, as a web server on Ollama's port might."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_non_ollama_server_on_the_port_is_one_line(home: Path, not_ollama: str) -> None:
    done = _aios("--backend", "ollama", "-c", "ps", env={"OLLAMA_HOST": not_ollama}, home=home)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"aios: the server at {not_ollama} is not Ollama (/api/version did not answer JSON) "
        "(start it with `ollama serve`, set OLLAMA_HOST, or use --backend llamacpp)"]


def test_auto_falls_back_past_a_non_ollama_server(not_ollama: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kernel.llm.factory import create_backend

    monkeypatch.setenv("OLLAMA_HOST", not_ollama)
    assert create_backend("auto").name == "llamacpp"


# -- no sandbox: fail closed -----------------------------------------------------------------------------


async def test_without_a_working_bwrap_shell_is_refused_with_the_reason(home: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_BWRAP", "/bin/false")
    async with session(home) as s:
        status = s.kernel.sandbox.status()
        assert not status.ok and "AIOS_SANDBOX=rlimit" in status.detail
        s.kernel.access.grant("alice", "shell(*)", scope="always")
        marker = home / "ran"
        proc = s.kernel.spawn("tooly", stdin=Pipe(json.dumps([call("shell", command=f"touch {marker}")]),
                                                  closed=True))
        await s.kernel.wait(proc.pid)
        assert "".join(proc.output).startswith("ERR no sandbox: ") and not marker.exists()
        assert await s.run("tools") == 0
        assert "sandbox: bwrap (unavailable)" in s.take()[0]


async def test_the_rlimit_sandbox_runs_when_asked_for(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_BWRAP", "/bin/false")
    monkeypatch.setenv("AIOS_SANDBOX", "rlimit")
    async with session(home) as s:
        assert s.kernel.sandbox.status().ok
        s.kernel.access.grant("alice", "shell(*)", scope="always")
        proc = s.kernel.spawn("tooly", stdin=Pipe(json.dumps([call("shell", command="echo limited")]), closed=True))
        await s.kernel.wait(proc.pid)
        assert "".join(proc.output) == "ok limited\n"


# -- nothing unbounded: memory tags, kept file versions ----------------------------------------------


def test_memory_tags_are_capped(storage: Storage) -> None:
    from kernel.memory import MAX_TAGS, Memory

    memory = Memory(storage)
    with pytest.raises(ValueError, match="tags are too long"):
        memory.add("alice", "a note", tags="t" * (MAX_TAGS + 1))
    assert memory.add("alice", "a note", tags="t" * MAX_TAGS) > 0


async def test_kept_file_versions_stop_at_the_users_quota(kernel: Kernel) -> None:
    kernel.files.quota = 300_000
    kernel.access.grant("alice", "fs.write(workspace/**)", scope="always")
    calls = [call("fs.write", path=f"f{i}.txt", content=str(i) * 100_000) for i in range(4)]
    proc, out = await run_calls(kernel, calls)
    assert [line.endswith(f"to f{i}.txt") for i, line in enumerate(out[:3])] == [True] * 3, out
    assert "version not kept: alice's kept file versions use 0.3 MiB of 0.3 MiB" in out[3], out
    assert (kernel.workspace(proc) / "f3.txt").stat().st_size == 100_000  # the write itself happened


def test_an_old_or_fake_bwrap_is_named_as_such(tmp_path: Path) -> None:
    from kernel.tools.sandbox import Sandbox

    old = tmp_path / "old-bwrap"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'bubblewrap 0.3.1' || echo 'usage: --bind --tmpfs'\n")
    old.chmod(0o755)
    cases = {str(old): "bubblewrap 0.3.1 at", "/bin/true": "is not bubblewrap", str(tmp_path / "none"): "AIOS_BWRAP="}
    for path, said in cases.items():
        os.environ["AIOS_BWRAP"] = path
        try:
            status = Sandbox(tmp_path / "home").status()
        finally:
            del os.environ["AIOS_BWRAP"]
        assert not status.ok and said in status.detail and "\n" not in status.detail, status
