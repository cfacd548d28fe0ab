"""ctx.memory and ctx.files: the agent-side API over long-term memory and the versioned workspace."""

from __future__ import annotations

from pathlib import Path

from kernel.kernel import boot
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config
from tests.shell.helpers import add_agent

AGENT = '''
async def main(ctx):
    await ctx.memory.add("the build uses hatch and ruff", tags="python packaging")
    hits = await ctx.memory.search("packaging")
    await ctx.print("found", hits[0]["text"])
    await ctx.files.write("notes.md", "v1")
    await ctx.files.write("notes.md", "v2")
    await ctx.print("read", await ctx.files.read("notes.md"))
    await ctx.print("list", await ctx.files.list())
    try:
        await ctx.files.write("../escape.txt", "x")
    except OSError as exc:
        await ctx.print("refused", exc)
    return 0
'''


async def test_an_agent_remembers_and_keeps_versioned_files(home: Path) -> None:
    add_agent(home, "keeper", AGENT)
    kernel = await boot(make_config(home, yes_for=("fs.write(*)",)), backend=SimulatedBackend())
    try:
        proc = kernel.spawn("keeper")
        await kernel.wait(proc.pid)
        out = "".join(proc.output)
        assert proc.exit_code == 0, proc.error
        assert "found the build uses hatch and ruff" in out
        assert "read v2" in out and "list ['notes.md']" in out
        assert "refused" in out and not (kernel.config.home / "workspaces" / "escape.txt").exists()
        assert [v["version"] for v in kernel.files.log(proc.pid, "notes.md")] == [1, 2]
        assert kernel.files.get(proc.pid, "notes.md", 1) == b"v1"
        assert kernel.memory.search("alice", "hatch")[0]["pid"] == proc.pid
        assert [r["tool"] for r in kernel.access.audit_rows(pid=proc.pid)] == [
            "fs.write", "fs.write", "fs.read", "fs.list", "fs.write"]
    finally:
        await kernel.shutdown()
    again = await boot(make_config(home), backend=SimulatedBackend())  # memory survives a restart
    try:
        assert again.memory.search("alice", "ruff")[0]["text"] == "the build uses hatch and ruff"
    finally:
        await again.shutdown()
