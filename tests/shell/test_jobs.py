"""Job control as in bash: `&`, `jobs`, `fg`, `bg`, `%N`, `wait`, Ctrl-Z (suspend) and Ctrl-C (interrupt)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kernel.api import KernelAPI
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import until
from tests.shell.helpers import add_agent, session


def slow() -> SimulatedBackend:
    return SimulatedBackend(decode_tps=100, prefill_tps=0)


async def test_jobs_lists_background_jobs_with_pids(home: Path) -> None:
    async with session(home, slow()) as s:
        await s.run("run chat long &; run chat long | run chat short &")
        assert await s.run("jobs -l") == 0
        out, _ = s.take()
        assert out.splitlines() == [
            "[1]- 1  Running                 run chat long &",
            "[2]+ 2,3  Running                 run chat long | run chat short &",
        ]
        await s.run("jobs --json")
        rows = json.loads(s.take()[0])
        assert [(r["job"], r["pids"], r["current"]) for r in rows] == [(1, [1], False), (2, [2, 3], True)]
        assert await s.run("kill %2; wait %2") == 143  # every agent of the job got TERM
        assert not s.kernel.procs.get(2).alive and not s.kernel.procs.get(3).alive
        assert s.kernel.procs.get(1).alive


async def test_a_job_stopped_by_a_signal_from_elsewhere_becomes_the_current_one(home: Path) -> None:
    from kernel.process import Signal

    async with session(home, slow()) as s:
        await s.run("run chat long &; run chat long &")
        s.kernel.signal(1, Signal.STOP, sender="alice")  # as `aios kill -STOP 1` from another terminal
        await until(lambda: s.kernel.procs.get(1).status == "STOPPED")
        s.take()
        await s.run("jobs")
        assert s.take()[0].splitlines() == [
            "[1]+  Stopped                 run chat long &",
            "[2]-  Running                 run chat long &",
        ]
        await s.run("kill -9 %1 %2")


async def test_ctrl_z_stops_the_foreground_job_and_bg_continues_it(home: Path) -> None:
    async with session(home, slow(), interactive=True) as s:
        line = asyncio.create_task(s.run("run chat long"))
        await until(lambda: s.kernel.procs.get(1) is not None and len(s.kernel.procs.get(1).output) >= 2)
        s.shell.suspend()  # what Ctrl-Z (SIGTSTP) does
        assert await line == 148
        proc = s.kernel.procs.get(1)
        assert proc.status == "STOPPED"
        before, _ = s.take()
        assert before.endswith("\n[1]+  Stopped                 run chat long\n")
        assert await s.run("bg") == 0
        assert s.take()[0].strip() == "[1]+ run chat long &"
        assert proc.status != "STOPPED"
        await until(lambda: len(proc.output) > 20)
        assert s.take()[0] == ""  # in the background its answer is held, not printed over the prompt
        assert await s.run("fg %1") == 0  # the held answer comes out, then the rest streams
        out, _ = s.take()
        assert out.startswith("run chat long\n")
        seen = before.removesuffix("\n[1]+  Stopped                 run chat long\n")
        assert seen + out.removeprefix("run chat long\n") == "".join(proc.output)  # nothing lost, nothing twice
        assert s.shell.jobs == {}


async def test_percent_n_is_fg_and_fg_of_a_finished_job_fails(home: Path) -> None:
    async with session(home, SimulatedBackend(decode_tps=0, prefill_tps=0)) as s:
        await s.run("run chat short &")
        await s.run("wait")
        assert await s.run("%1") == 1
        assert "fg: %1: job has terminated" in s.take()[1]
        assert await s.run("fg %7") == 1
        assert await s.run("bg") == 1
        assert await s.run("kill %9") == 2


async def test_ctrl_c_interrupts_a_builtin_and_stops_the_line(home: Path) -> None:
    async with session(home) as s:
        line = asyncio.create_task(s.run("sleep 30; echo not-reached"))
        await until(lambda: s.shell.foreground is not None)
        s.shell.interrupt()
        assert await line == 130
        assert "not-reached" not in s.take()[0]


async def test_ctrl_c_during_wait_leaves_the_jobs_running(home: Path) -> None:
    async with session(home, slow()) as s:
        await s.run("run chat long &")
        line = asyncio.create_task(s.run("wait"))
        await until(lambda: s.shell.foreground is not None)
        s.shell.interrupt()
        assert await line == 130
        assert s.kernel.procs.get(1).alive


async def test_logs_prints_and_follows(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=200, prefill_tps=0)
    async with session(home, sim) as s:
        await s.run("run chat long > answer.txt &")  # (a script prints what a background job writes)
        await until(lambda: len(s.kernel.procs.get(1).output) >= 3)
        assert await s.run("logs -f 1") == 0  # follows until it exits
        out, _ = s.take()
        assert out == "".join(s.kernel.procs.get(1).output)
        assert await s.run("logs %1; logs 42") == 1
        out, err = s.take()
        assert out == "".join(s.kernel.procs.get(1).output) and err.strip() == "logs: (42) - No such process"


async def test_agents_spawn_children_and_ps_forest_shows_the_tree(home: Path) -> None:
    add_agent(home, "parent", '''
async def main(ctx):
    kids = [ctx.spawn("chat", ["short"]), ctx.spawn("child", [], stdin="piped to the child")]
    codes = [await ctx.wait(pid) for pid in kids]
    await ctx.write(f"children {kids} exited {codes}; child said {ctx.output(kids[1])!r}\\n")
    return 0
''')
    add_agent(home, "child", '''
async def main(ctx):
    await ctx.write((await ctx.stdin.read()).upper())
    return 4
''')
    async with session(home, SimulatedBackend(decode_tps=0, prefill_tps=0)) as s:
        assert await s.run("run parent") == 0
        out, _ = s.take()
        assert out.strip() == "children [2, 3] exited [0, 4]; child said 'PIPED TO THE CHILD'"
        await s.run("ps -a --forest")
        lines = s.take()[0].splitlines()
        assert [line.split()[:2] for line in lines[1:]] == [["1", "0"], ["2", "1"], ["3", "1"]]
        assert lines[2].endswith(" \\_ chat short") and lines[3].endswith(" \\_ child")


async def test_an_agent_may_only_wait_for_its_own_children(home: Path) -> None:
    add_agent(home, "stranger", "async def main(ctx):\n    return await ctx.wait(1)\n")
    async with session(home, SimulatedBackend(decode_tps=0, prefill_tps=0)) as s:
        assert await s.run("run chat short; run stranger") == 1
        _, err = s.take()
    assert err.strip() == "stranger[2]: (1) - No such process"


async def test_a_finished_background_job_says_where_its_output_is(home: Path) -> None:
    async with session(home, SimulatedBackend(decode_tps=500), interactive=True) as s:
        await s.run("run chat short &")
        await until(lambda: "Done" in s.out.getvalue())
        assert "[1]+  Done                    run chat short &  (its output: logs 1)" in s.take()[0]
        await s.run("logs 1")
        answer = KernelAPI(s.kernel).transcript(1)[-1].content
        assert answer and answer in s.take()[0]


async def test_a_script_prints_what_its_background_jobs_write_a_line_at_a_time(home: Path) -> None:
    async with session(home, SimulatedBackend(decode_tps=300)) as s:  # not interactive: a script
        assert await s.run("run chat one long & run chat two long &; wait") == 0
        lines = s.take()[0].splitlines()
        answers = ["".join(s.kernel.get(pid).output).strip() for pid in (1, 2)]
        assert sorted(lines) == sorted(answers)  # each whole on its line, though both wrote at once


def test_a_script_that_ends_before_its_agents_says_it_hangs_them_up(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "AIOS_HOME": str(tmp_path / "h")}
    done = subprocess.run([sys.executable, "-m", "aios_shell.cli", "--backend", "simulated", "-c",
                           'run chat "a long story" &'], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "aios: 1 agent still running when the script ended, hung up (pid 1)" in done.stderr
    waited = subprocess.run([sys.executable, "-m", "aios_shell.cli", "--backend", "simulated", "-c",
                             'run chat "short" &; wait'], env=env, capture_output=True, text=True, timeout=60)
    assert waited.returncode == 0 and waited.stdout.strip() and waited.stderr == ""


async def test_kill_takes_exactly_the_options_its_help_documents(home: Path) -> None:
    import re

    from commands.kill import parse_kill_args
    from commands.registry import lookup
    from kernel.process import Signal

    documented = set(re.findall(r"^\s+(-[a-z])\b", lookup("kill").help(), re.M)) - {"-h"}
    assert documented == {"-s", "-n", "-l"}
    assert parse_kill_args(["-s", "STOP", "3"]) == (Signal.STOP, ["3"], False)
    assert parse_kill_args(["-n", "9", "3"]) == (Signal.KILL, ["3"], False)
    assert parse_kill_args(["-l"])[2] is True
    async with session(home) as s:
        assert await s.run("kill -n") == 2
        assert "option -n needs a signal" in s.take()[1]
