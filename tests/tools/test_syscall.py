"""The tool syscall end to end: rule → allow, nobody to ask → deny, a person's answer, audit once per call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kernel import Kernel
from kernel.events import PermissionRequested
from kernel.kernel import boot
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config, until

AGENT = '''
import json
async def main(ctx):
    calls = json.loads(ctx.argv[0])
    if len(ctx.argv) > 1:  # a delay before calling
        await __import__("asyncio").sleep(float(ctx.argv[1]))
    results = await __import__("asyncio").gather(*(ctx.tool(c["tool"], **c["args"]) for c in calls))
    for r in results:
        await ctx.print(("ok " + r.output.rstrip()) if r.ok else ("ERR " + r.error))
    return 0
'''


def install_agent(home: Path) -> None:
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "agents" / "tooly.py").write_text(AGENT)


async def run_calls(kernel: Kernel, calls: list[dict], user: str | None = None) -> list[str]:
    proc = kernel.spawn("tooly", [json.dumps(calls)], user=user)
    await kernel.wait(proc.pid)
    assert proc.exit_code == 0, proc.error
    return "".join(proc.output).splitlines()


async def test_a_default_rule_allows_calc_and_the_call_is_audited(kernel: Kernel, home: Path) -> None:
    install_agent(home)
    out = await run_calls(kernel, [{"tool": "calc", "args": {"expression": "6*7"}}])
    assert out == ["ok 42"]
    rows = kernel.access.audit_rows()
    assert [(r["tool"], r["decision"], r["user"]) for r in rows] == [("calc", "allow", "alice")]
    assert kernel.procs.get(1).tool_calls == 1


async def test_with_nobody_to_ask_an_undecided_call_is_denied(kernel: Kernel, home: Path) -> None:
    install_agent(home)
    out = await run_calls(kernel, [{"tool": "shell", "args": {"command": "touch marker"}}])
    assert out[0].startswith("ERR permission denied: shell(touch marker)")
    assert not (kernel.workspace(1) / "marker").exists()
    (row,) = kernel.access.audit_rows()
    assert (row["decision"], row["by"]) == ("deny", "no terminal")


async def test_unknown_tool_and_bad_arguments_are_errors_and_audited(kernel: Kernel, home: Path) -> None:
    install_agent(home)
    out = await run_calls(kernel, [{"tool": "nope", "args": {}}, {"tool": "calc", "args": {"x": 1}}])
    assert out[0] == "ERR no such tool: nope (try: tools)"
    assert out[1].startswith("ERR bad arguments for calc")
    assert [r["decision"] for r in kernel.access.audit_rows()] == ["error", "error"]


async def test_a_session_answer_allows_the_same_call_again_without_asking(kernel: Kernel, home: Path) -> None:
    install_agent(home)
    asked: list[PermissionRequested] = []
    kernel.bus.on(asked.append, PermissionRequested)
    detach = kernel.permissions.attach()

    async def answer() -> None:
        await until(lambda: kernel.permissions.pending())
        kernel.permissions.answer(kernel.permissions.pending()[0].request_id, "session")

    answering = asyncio.create_task(answer())
    out = await run_calls(kernel, [{"tool": "shell", "args": {"command": "echo hi"}}])
    await answering
    assert out == ["ok hi"]
    out = await run_calls(kernel, [{"tool": "shell", "args": {"command": "echo hi"}}])
    assert out == ["ok hi"]
    assert len(asked) == 1  # the second call did not ask
    detach()
    rows = kernel.access.audit_rows()
    assert [(r["decision"], r["by"]) for r in rows] == [("allow", "user:session"), ("allow", "grant:session")]
    assert any(g["rule"] == "shell(echo hi)" and g["scope"] == "session" for g in kernel.access.grants("alice"))


async def test_a_person_denying_reaches_the_agent_as_a_tool_error(kernel: Kernel, home: Path) -> None:
    install_agent(home)
    detach = kernel.permissions.attach()

    async def answer() -> None:
        await until(lambda: kernel.permissions.pending())
        kernel.permissions.answer(kernel.permissions.pending()[0].request_id, "deny")

    answering = asyncio.create_task(answer())
    out = await run_calls(kernel, [{"tool": "fs.write", "args": {"path": "a.txt", "content": "x"}}])
    await answering
    detach()
    assert out[0].startswith("ERR permission denied: fs.write(workspace/a.txt)")
    assert not (kernel.workspace(1) / "a.txt").exists()
    assert kernel.access.audit_rows()[0]["by"] == "user"


async def test_yes_for_allows_without_asking_and_writes_a_version(home: Path) -> None:
    install_agent(home)
    kernel = await boot(make_config(home, yes_for=("fs.write(workspace/*)",)), backend=SimulatedBackend())
    try:
        out = await run_calls(kernel, [{"tool": "fs.write", "args": {"path": "n.txt", "content": "v1"}},
                                       {"tool": "fs.read", "args": {"path": "n.txt"}}])
        assert out[0].startswith("ok")
        assert (kernel.workspace(1) / "n.txt").read_text() == "v1"
        assert [v["version"] for v in kernel.files.log(1, "n.txt")] == [1]
        assert kernel.access.audit_rows()[0]["by"] == "yes-for"
    finally:
        await kernel.shutdown()


async def test_many_agents_many_parallel_calls_each_audited_once(kernel: Kernel, home: Path) -> None:
    install_agent(home)
    calls = [{"tool": "calc", "args": {"expression": f"{i}+1"}} for i in range(20)]
    procs = [kernel.spawn("tooly", [json.dumps(calls)]) for _ in range(10)]
    await asyncio.gather(*(kernel.wait(p.pid) for p in procs))
    assert all(p.exit_code == 0 for p in procs)
    rows = kernel.access.audit_rows()
    assert len(rows) == 200
    assert sorted((r["pid"], r["args"]["expression"]) for r in rows) == sorted(
        (p.pid, f"{i}+1") for p in procs for i in range(20))
    assert kernel.access.verify().ok


async def test_a_call_that_cannot_be_audited_does_not_run(kernel: Kernel, home: Path,
                                                          monkeypatch) -> None:  # noqa: ANN001
    import sqlite3

    install_agent(home)

    def full_disk(**_kw: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    kernel.access.grant("alice", "fs.write(*)", scope="session")  # allowed: only the audit stands in the way
    monkeypatch.setattr(kernel.access, "audit", full_disk)
    out = await run_calls(kernel, [{"tool": "fs.write", "args": {"path": "a.txt", "content": "x"}}])
    assert out == ["ERR the audit log cannot be written (database or disk is full); fs.write refused"]
    assert not (kernel.workspace(1) / "a.txt").exists()


async def test_a_directory_the_user_chose_keeps_its_owner(kernel: Kernel, home: Path, tmp_path: Path) -> None:
    """As root the sandbox runs as an unprivileged uid; it may get aios's own workspaces, never the user's."""
    install_agent(home)
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "README").write_text("hello\n")
    before = mine.stat().st_uid, mine.stat().st_gid
    kernel.access.grant("alice", "shell(ls)", scope="session")
    kernel.access.grant("alice", "fs.write(*)", scope="session")
    calls = [{"tool": "shell", "args": {"command": "ls"}}, {"tool": "fs.write", "args": {"path": "new.txt",
                                                                                         "content": "x"}}]
    proc = kernel.spawn("tooly", [json.dumps(calls)], workspace=mine)
    await kernel.wait(proc.pid)
    assert "ok README" in "".join(proc.output)
    assert (mine.stat().st_uid, mine.stat().st_gid) == before
    assert (mine / "new.txt").stat().st_uid == before[0]
