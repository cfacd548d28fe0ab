"""Precedence and scope of decisions, project configs, two requests at once, signals across users, and the
audit log's hash chain.

Deny beats allow from every source; `once` covers one call, `session` one kernel, `always` one user until
revoked; a project's `.aios/policy.toml` allows nothing until that exact file is trusted.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios_shell.cli import app
from kernel.errors import PermissionDenied
from kernel.kernel import Kernel, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal
from tests.conftest import make_config, until
from tests.hostile.conftest import answer_next, audit, call, run_calls, start_calls, watch_requests
from tests.shell.helpers import session

pytestmark = pytest.mark.hostile

ECHO = call("shell", command="echo hi")


def denied(line: str) -> bool:
    return line.startswith("ERR permission denied: shell(")


# -- deny beats allow ------------------------------------------------------------------------------------


async def test_policy_deny_beats_policy_allow(kernel: Kernel, home: Path) -> None:
    (home / "policy.toml").write_text('[users.alice]\nallow = ["shell(echo *)"]\ndeny = ["shell(echo secret*)"]\n')
    proc, out = await run_calls(kernel, [call("shell", command="echo fine"), call("shell", command="echo secret")])
    assert out[0] == "ok fine" and denied(out[1]), out
    assert audit(kernel, proc.pid) == [("shell", "allow", "policy", {"command": "echo fine"}),
                                       ("shell", "deny", "policy", {"command": "echo secret"})]


async def test_a_session_deny_beats_an_always_allow(kernel: Kernel) -> None:
    kernel.access.grant("alice", "shell(echo *)", scope="always")
    kernel.access.grant("alice", "shell(echo hi*)", scope="session", effect="deny")
    proc, out = await run_calls(kernel, [ECHO, call("shell", command="echo ok")])
    assert denied(out[0]) and out[1] == "ok ok", out
    assert audit(kernel, proc.pid) == [("shell", "deny", "grant:session", {"command": "echo hi"}),
                                       ("shell", "allow", "grant:always", {"command": "echo ok"})]


async def test_a_policy_deny_beats_yes_for(home: Path) -> None:
    (home / "policy.toml").write_text('[users.alice]\ndeny = ["shell(echo hi*)"]\n')
    kernel = await boot(make_config(home, yes_for=("shell(*)",)), backend=SimulatedBackend())
    try:
        proc, out = await run_calls(kernel, [ECHO, call("shell", command="echo ok")])
        assert denied(out[0]) and out[1] == "ok ok", out
        assert audit(kernel, proc.pid) == [("shell", "deny", "policy", {"command": "echo hi"}),
                                           ("shell", "allow", "yes-for", {"command": "echo ok"})]
    finally:
        await kernel.shutdown()


async def test_a_deny_rule_sees_through_a_wrapper(kernel: Kernel) -> None:
    """`shell(rm *)` denied and `shell(*)` allowed: `env X=1 rm -rf .` and `bash -c 'rm …'` are still denied."""
    kernel.access.grant("alice", "shell(*)", scope="always")
    kernel.access.grant("alice", "shell(rm *)", scope="always", effect="deny")
    (kernel.config.home / "workspaces" / "1").mkdir(parents=True)
    keep = kernel.config.home / "workspaces" / "1" / "keep.txt"
    keep.write_text("x")
    cmds = ["env X=1 rm -f keep.txt", "bash -c 'rm -f keep.txt'", "timeout 5 rm -f keep.txt", "/bin/rm -f keep.txt"]
    proc, out = await run_calls(kernel, [call("shell", command=c) for c in cmds])
    assert proc.pid == 1 and all(denied(line) for line in out), out
    assert [(t, d, b) for t, d, b, _ in audit(kernel, proc.pid)] == [("shell", "deny", "grant:always")] * len(cmds)
    assert keep.read_text() == "x"


async def test_a_deny_rule_decides_without_asking_a_person(kernel: Kernel) -> None:
    kernel.access.grant("alice", "shell(echo hi*)", scope="always", effect="deny")
    asked = watch_requests(kernel)
    detach = kernel.permissions.attach()
    try:
        proc, out = await run_calls(kernel, [ECHO])
    finally:
        detach()
    assert denied(out[0]) and asked == []
    assert audit(kernel, proc.pid) == [("shell", "deny", "grant:always", {"command": "echo hi"})]


# -- once, session, always -------------------------------------------------------------------------------


async def test_once_does_not_outlive_the_call(kernel: Kernel) -> None:
    asked = watch_requests(kernel)
    detach = kernel.permissions.attach()
    try:
        first = start_calls(kernel, [ECHO])
        await answer_next(kernel, "once")
        await kernel.wait(first.pid)
        second = start_calls(kernel, [ECHO])
        await answer_next(kernel, "deny")
        await kernel.wait(second.pid)
    finally:
        detach()
    assert len(asked) == 2 and asked[0].request_id != asked[1].request_id
    assert "".join(first.output) == "ok hi\n" and denied("".join(second.output))
    assert audit(kernel) == [("shell", "allow", "user:once", {"command": "echo hi"}),
                             ("shell", "deny", "user", {"command": "echo hi"})]
    assert not [g for g in kernel.access.grants("alice") if g["rule"] == "shell(echo hi)"]


async def test_session_dies_with_the_kernel(home: Path) -> None:
    kernel = await boot(make_config(home), backend=SimulatedBackend())
    detach = kernel.permissions.attach()
    try:
        proc = start_calls(kernel, [ECHO])
        await answer_next(kernel, "session")
        await kernel.wait(proc.pid)
        _, out = await run_calls(kernel, [ECHO])  # held for the rest of this kernel's life
        assert "".join(proc.output) == "ok hi\n" and out == ["ok hi"]
    finally:
        detach()
        await kernel.shutdown()
    again = await boot(make_config(home), backend=SimulatedBackend())
    try:
        assert not [g for g in again.access.grants("alice") if g["scope"] == "session"]
        proc, out = await run_calls(again, [ECHO])
        assert denied(out[0]), out
        assert audit(again, proc.pid) == [("shell", "deny", "no terminal", {"command": "echo hi"})]
        assert [(d, b) for _, d, b, _ in audit(again)] == [("allow", "user:session"), ("allow", "grant:session"),
                                                           ("deny", "no terminal")]
    finally:
        await again.shutdown()


async def test_always_is_per_user_listed_and_revocable(kernel: Kernel) -> None:
    kernel.access.grant("alice", "shell(echo hi*)", scope="always", by="alice")
    assert [g["rule"] for g in kernel.access.grants("alice") if g["scope"] == "always"] == ["shell(echo hi*)"]
    assert not [g for g in kernel.access.grants("bob") if g["scope"] == "always"]
    alice, out_a = await run_calls(kernel, [ECHO])
    bob, out_b = await run_calls(kernel, [ECHO], user="bob")
    assert out_a == ["ok hi"] and denied(out_b[0])
    assert audit(kernel, alice.pid) == [("shell", "allow", "grant:always", {"command": "echo hi"})]
    assert audit(kernel, bob.pid) == [("shell", "deny", "no terminal", {"command": "echo hi"})]
    assert kernel.access.audit_rows(pid=bob.pid)[0]["user"] == "bob"

    assert kernel.access.revoke("alice", "shell(echo hi*)") == 1
    assert not [g for g in kernel.access.grants("alice") if g["scope"] == "always"]
    after, out = await run_calls(kernel, [ECHO])
    assert denied(out[0])
    assert audit(kernel, after.pid) == [("shell", "deny", "no terminal", {"command": "echo hi"})]


async def test_an_always_answer_survives_a_restart_for_that_user_only(home: Path) -> None:
    kernel = await boot(make_config(home), backend=SimulatedBackend())
    detach = kernel.permissions.attach()
    try:
        proc = start_calls(kernel, [ECHO])
        await answer_next(kernel, "always")
        await kernel.wait(proc.pid)
    finally:
        detach()
        await kernel.shutdown()
    again = await boot(make_config(home), backend=SimulatedBackend())
    try:
        alice, out_a = await run_calls(again, [ECHO])
        bob, out_b = await run_calls(again, [ECHO], user="bob")
        assert out_a == ["ok hi"] and denied(out_b[0])
        assert audit(again, alice.pid)[0][1:3] == ("allow", "grant:always")
        assert audit(again, bob.pid)[0][1:3] == ("deny", "no terminal")
    finally:
        await again.shutdown()


# -- project configs -------------------------------------------------------------------------------------


async def test_a_project_policy_grants_nothing_until_trusted_and_again_after_an_edit(
        kernel: Kernel, tmp_path: Path) -> None:
    ws = tmp_path / "project"
    (ws / ".aios").mkdir(parents=True)
    config = ws / ".aios" / "policy.toml"
    config.write_text('[default]\nallow = ["shell(*)"]\n')

    async def attempt() -> tuple[str, str]:
        proc, out = await run_calls(kernel, [ECHO], workspace=ws)
        (row,) = audit(kernel, proc.pid)
        return out[0], f"{row[1]}:{row[2]}"

    assert await attempt() == ("ERR permission denied: shell(echo hi) (no rule allows it and there is no one to ask)",
                               "deny:no terminal")
    kernel.access.trust(ws, "alice")
    assert await attempt() == ("ok hi", "allow:project")
    config.write_text('[default]\nallow = ["shell(*)", "fs.write(*)"]\n')  # edited after it was trusted
    assert not kernel.access.is_trusted(ws)
    line, row = await attempt()
    assert denied(line) and row == "deny:no terminal"
    kernel.access.trust(ws, "alice")
    assert await attempt() == ("ok hi", "allow:project")


async def test_an_agent_editing_its_trusted_project_policy_untrusts_it(kernel: Kernel, tmp_path: Path) -> None:
    """The agent may write files (fs.write granted), but rewriting `.aios/policy.toml` wins it nothing."""
    ws = tmp_path / "project"
    (ws / ".aios").mkdir(parents=True)
    (ws / ".aios" / "policy.toml").write_text('[default]\nallow = ["calc"]\n')
    kernel.access.trust(ws, "alice")
    kernel.access.grant("alice", "fs.write(*)", scope="always")
    proc, out = await run_calls(kernel, [
        call("fs.write", path=".aios/policy.toml", content='[default]\nallow = ["shell(*)"]\n'),
        call("shell", command="touch marker"),
    ], workspace=ws)
    assert out[0].startswith("ok wrote") and denied(out[1]), out
    assert [(t, d, b) for t, d, b, _ in audit(kernel, proc.pid)] == [("fs.write", "allow", "grant:always"),
                                                                    ("shell", "deny", "no terminal")]
    assert not (ws / "marker").exists() and not kernel.access.is_trusted(ws)


async def test_an_untrusted_project_deny_still_counts(kernel: Kernel, tmp_path: Path) -> None:
    ws = tmp_path / "project"
    (ws / ".aios").mkdir(parents=True)
    (ws / ".aios" / "policy.toml").write_text('[default]\ndeny = ["shell(echo hi*)"]\n')
    kernel.access.grant("alice", "shell(echo *)", scope="always")
    proc, out = await run_calls(kernel, [ECHO, call("shell", command="echo ok")], workspace=ws)
    assert denied(out[0]) and out[1] == "ok ok"
    assert [(d, b) for _, d, b, _ in audit(kernel, proc.pid)] == [("deny", "project"), ("allow", "grant:always")]


# -- two requests at once --------------------------------------------------------------------------------


async def test_two_agents_asking_at_once_each_get_their_own_answer(kernel: Kernel) -> None:
    asked = watch_requests(kernel)
    detach = kernel.permissions.attach()
    try:
        a = start_calls(kernel, [call("shell", command="echo from-a")])
        b = start_calls(kernel, [call("shell", command="echo from-b")])
        await until(lambda: len(kernel.permissions.pending()) == 2)
        by_pid = {r.pid: r for r in kernel.permissions.pending()}
        assert by_pid[a.pid].request_id != by_pid[b.pid].request_id
        assert kernel.permissions.answer(by_pid[b.pid].request_id, "deny")  # the later one first
        await kernel.wait(b.pid)
        assert a.alive and [r.pid for r in kernel.permissions.pending()] == [a.pid]
        assert kernel.permissions.answer(by_pid[a.pid].request_id, "once")
        await kernel.wait(a.pid)
        assert not kernel.permissions.answer(by_pid[a.pid].request_id, "deny")  # answered: no second answer
    finally:
        detach()
    assert sorted(r.pid for r in asked) == [a.pid, b.pid]
    assert "".join(a.output) == "ok from-a\n"
    assert "".join(b.output).startswith("ERR permission denied: shell(echo from-b)")
    assert audit(kernel, a.pid) == [("shell", "allow", "user:once", {"command": "echo from-a"})]
    assert audit(kernel, b.pid) == [("shell", "deny", "user", {"command": "echo from-b"})]


# -- signals and niceness across users -------------------------------------------------------------------


@pytest.mark.parametrize("sig", [Signal.TERM, Signal.KILL, Signal.STOP, Signal.INT])
async def test_another_user_cannot_signal_a_process(kernel: Kernel, sig: Signal) -> None:
    proc = kernel.spawn("sleeper", user="alice")
    await until(lambda: bool(proc.output))
    with pytest.raises(PermissionDenied, match="bob may not signal alice's process"):
        kernel.signal(proc.pid, sig, sender="bob")
    await asyncio.sleep(0.05)
    assert proc.alive and proc.status == "RUNNING" and proc.pending_signal is None


async def test_another_user_cannot_renice_and_a_user_cannot_lower_nice(kernel: Kernel) -> None:
    proc = kernel.spawn("sleeper", user="alice", nice=10)
    with pytest.raises(PermissionDenied):
        kernel.renice(proc.pid, 19, sender="bob")
    with pytest.raises(PermissionDenied, match="only an admin may lower nice"):
        kernel.renice(proc.pid, 5, sender="alice")
    with pytest.raises(PermissionDenied, match="only an admin may raise priority"):
        kernel.spawn("sleeper", user="alice", nice=-5)
    assert proc.nice == 10 and proc.alive
    kernel.renice(proc.pid, 15, sender="alice")  # raising it is anyone's right on their own process
    kernel.renice(proc.pid, -5, sender="root")  # and an admin may do anything
    assert proc.nice == -5


async def test_kill_and_renice_commands_run_as_another_user_are_refused(home: Path) -> None:
    async with session(home, user="bob") as s:
        proc = s.kernel.spawn("sleeper", user="alice", nice=5)
        await until(lambda: bool(proc.output))
        for line in (f"kill {proc.pid}", f"kill -9 {proc.pid}", f"kill -STOP {proc.pid}", f"renice 10 {proc.pid}"):
            assert await s.run(line) == 1, line
            _, err = s.take()
            assert "may not" in err and "alice's process" in err, err
        assert proc.alive and proc.status == "RUNNING" and proc.nice == 5


async def test_renice_command_lowering_nice_is_refused_for_a_non_admin(home: Path) -> None:
    async with session(home) as s:
        proc = s.kernel.spawn("sleeper", nice=10)
        assert await s.run(f"renice 0 {proc.pid}") == 1
        _, err = s.take()
        assert "only an admin may lower nice" in err
        assert await s.run("nice -n -5 run sleeper") != 0
        assert proc.nice == 10 and [p.pid for p in s.kernel.ps()] == [proc.pid]


# -- the audit log's hash chain --------------------------------------------------------------------------


def test_an_edited_audit_row_breaks_the_chain_and_audit_verify_fails(home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def log_some() -> None:
        kernel = await boot(make_config(home), backend=SimulatedBackend())
        try:
            await run_calls(kernel, [call("calc", expression="1+1"), ECHO, call("calc", expression="2+2")])
            assert kernel.access.verify().ok
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                kernel.storage.db.conn.execute("UPDATE audit SET decision = 'allow' WHERE tool = 'shell'")
            kernel.storage.db.conn.execute("DROP TRIGGER audit_no_update")
            kernel.storage.db.conn.execute("UPDATE audit SET decision = 'allow', by = 'policy' WHERE tool = 'shell'")
            check = kernel.access.verify()
            assert not check.ok and check.bad_id == 2 and "edited" in check.message
        finally:
            await kernel.shutdown()

    asyncio.run(log_some())
    monkeypatch.setenv("AIOS_HOME", str(home))
    result = CliRunner().invoke(app, ["--backend", "simulated", "-c", "audit verify"])
    assert result.exit_code == 1, result.output
    assert "audit row 2" in result.output
