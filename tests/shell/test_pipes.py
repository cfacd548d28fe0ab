"""Pipes between agents stream; `>` and `>>` save output; `source` runs a file in this shell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kernel.llm.simulated import SimulatedBackend
from tests.conftest import until
from tests.shell.helpers import add_agent, session

READER = '''
async def main(ctx):
    n = 0
    async for piece in ctx.stdin:
        n += 1
        await ctx.write(f"got {n}\\n")
    await ctx.write("eof\\n")
    return 0
'''


async def test_agent_output_streams_into_the_next_agent(home: Path) -> None:
    add_agent(home, "reader", READER)
    async with session(home, SimulatedBackend(decode_tps=100, prefill_tps=0)) as s:
        line = asyncio.create_task(s.run("run chat long | run reader"))
        await until(lambda: s.kernel.procs.get(2) is not None and len(s.kernel.procs.get(2).output) >= 3)
        writer = s.kernel.procs.get(1)
        assert writer is not None and writer.alive  # the reader got pieces while the writer still wrote
        assert await line == 0
        out, _ = s.take()
        assert out.endswith("eof\n") and "got 200" in out


async def test_echo_into_chat_becomes_part_of_the_prompt(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    async with session(home, sim) as s:
        assert await s.run('echo "the text to summarise" | run chat "Summarise this:"') == 0
    prompt = sim.requests[-1].messages[-1]["content"]
    assert prompt == "Summarise this:\n\nthe text to summarise"


async def test_chat_with_only_piped_input(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue("first answer", "second answer")
    async with session(home, sim) as s:
        assert await s.run("run chat question | run chat") == 0
        out, _ = s.take()
    assert out.strip() == "second answer"
    assert sim.requests[-1].messages[-1]["content"] == "first answer"


async def test_pipeline_status_is_the_last_commands(home: Path) -> None:
    async with session(home) as s:
        assert await s.run("true | false") == 1
        assert await s.run("false | true") == 0
        assert await s.run("run chat short | kill 99") == 1


async def test_builtin_output_pipes_into_cat_and_agents(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    async with session(home, sim) as s:
        await s.run("run chat short; ps -a | cat")
        out, _ = s.take()
        assert "PID  PPID" in out and "EXITED(0)" in out
        await s.run('ps -a --json | run chat "which process used most tokens?"')
    assert '"pid": 1' in sim.requests[-1].messages[-1]["content"]


async def test_redirect_saves_the_answer_and_appends(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue("A saved answer.")
    async with session(home, sim) as s:
        assert await s.run("run chat hello > answer.txt") == 0
        assert await s.run("echo more >> answer.txt; ps -a --json > ps.json") == 0
        out, err = s.take()
    assert out == "" and err == ""
    assert (home / "answer.txt").read_text() == "A saved answer.\nmore\n"
    assert json.loads((home / "ps.json").read_text())[0]["pid"] == 1


async def test_redirect_errors_are_one_line(home: Path) -> None:
    async with session(home) as s:
        assert await s.run("echo x > /no/such/dir/file") == 1
        _, err = s.take()
    assert err.strip() == "aios: /no/such/dir/file: No such file or directory"


async def test_pipeline_with_redirect_in_the_background(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=200, prefill_tps=0)
    sim.enqueue("one", "two")
    async with session(home, sim) as s:
        await s.run("run chat a | run chat b > bg.txt &")
        assert s.shell.last_bg == 2
        assert await s.run("wait %1") == 0
    assert (home / "bg.txt").read_text() == "two\n"


async def test_source_runs_in_this_shell(home: Path) -> None:
    async with session(home) as s:
        (home / "lib.aios").write_text("run chat short &\necho sourced\nfalse\n")
        assert await s.run("source lib.aios") == 1
        assert s.shell.last_bg == 1 and 1 in s.shell.jobs  # its job is this shell's
        assert await s.run(". lib.aios; echo $?") == 0
        (home / "exit.aios").write_text("echo before\nexit 4\necho after\n")
        assert await s.shell.run_script("source exit.aios; echo not-reached") == 4
        out, _ = s.take()
    assert out.count("sourced") == 2 and "before" in out and "after" not in out and "not-reached" not in out


async def test_a_redirect_that_cannot_be_written_is_one_line_and_leaves_no_agent_behind(home: Path) -> None:
    """`> /dev/full` (a full disk): the command runs to its end, then one line says the write failed."""
    async with session(home) as s:
        status = await s.run("run chat short > /dev/full")
        out, err = s.take()
        assert status == 1 and err == "aios: /dev/full: write error: No space left on device\n", err
        assert "internal error" not in err and s.kernel.ps() == []  # the agent finished; nothing runs unseen
