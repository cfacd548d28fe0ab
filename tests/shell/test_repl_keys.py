"""The REPL's keys and helpers through prompt-toolkit's pipe input: Tab completion, Ctrl-R, Ctrl-Z, Ctrl-D,
and the bottom toolbar."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from aios_shell.completion import ShellCompleter
from aios_shell.repl import Repl
from kernel.api import KernelAPI
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import until
from tests.shell.helpers import session


def complete(completer: ShellCompleter, text: str) -> list[str]:
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


async def test_completion_of_commands_flags_pids_agents_users_models_and_paths(home: Path) -> None:
    async with session(home, SimulatedBackend(decode_tps=20, prefill_tps=0)) as s:
        await s.run("run chat long &")
        c = ShellCompleter(s.shell, ["sim-1", "gemma3:270m"])
        assert complete(c, "ren") == ["renice"]
        assert complete(c, "ps --f") == ["--forest"]
        assert "-STOP" in complete(c, "kill -S")
        assert complete(c, "kill ") == ["%1", "1"]
        assert complete(c, "run ch") == ["chat"]
        assert "chat" in complete(c, "nice -n 5 run ")
        assert complete(c, "ps -u ") == ["alice", "root"]
        assert complete(c, "pull ge") == ["gemma3:270m"]
        assert complete(c, "cat /proc/1/st") == ["/proc/1/status"]
        assert complete(c, "ls /a") == ["/agents", "/audit"]
        assert complete(c, "true && wa") == ["wait"]
        assert complete(c, 'run chat "open quote') == []
        assert complete(c, "ps --sort to") == ["tokens"]  # what ps declares for --sort
        assert complete(c, "help ki") == ["kill"]
        assert complete(c, "run chat ") == []  # the agent's own arguments are its own


def test_a_command_declares_what_its_arguments_complete_as() -> None:
    import pytest

    from commands.registry import COMPLETIONS, command, load_all

    assert {spec.complete for spec in load_all().values()} - {None} <= set(COMPLETIONS)
    with pytest.raises(ValueError, match="'pids' is not a completion"):
        command("nosuch", "x", complete="pids")


async def repl_session(home: Path, sim: SimulatedBackend, keys: str, history: InMemoryHistory | None = None):  # noqa: ANN201
    async with session(home, sim, interactive=True) as s:
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            repl = Repl(s.kernel, input=inp, output=DummyOutput(), history=history or InMemoryHistory(),
                        shell=s.shell)
            inp.send_text(keys)
            status = await asyncio.wait_for(repl.run(), 30)
        return status, *s.take(), repl


async def test_tab_completes_at_the_prompt(home: Path) -> None:
    async with session(home, SimulatedBackend(), interactive=True) as s:
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            repl = Repl(s.kernel, input=inp, output=DummyOutput(), history=InMemoryHistory(), shell=s.shell)
            task = asyncio.create_task(repl.run())
            inp.send_text("who\t")
            await until(lambda: repl.session.default_buffer.text == "whoami")
            inp.send_text("\rexit\r")
            assert await asyncio.wait_for(task, 10) == 0
        assert s.out.getvalue().splitlines()[-1] == "alice"


async def test_ctrl_r_finds_an_earlier_command(home: Path) -> None:
    history = InMemoryHistory()
    for line in ("echo first", "echo second-one", "whoami"):
        history.append_string(line)
    status, out, _, _ = await repl_session(home, SimulatedBackend(), "\x12second\r\rexit\r", history)
    assert "second-one" in out.splitlines()


async def test_ctrl_d_asks_when_agents_still_run(home: Path) -> None:
    keys = "run chat long &\r\x04n\rjobs\r\x04y\r"
    status, out, _, repl = await repl_session(home, SimulatedBackend(decode_tps=5), keys)
    assert "[1]+  Running" in out  # `n` kept the shell; `jobs` ran
    assert status == 0


async def test_ctrl_z_at_the_terminal_stops_the_job(home: Path) -> None:
    async with session(home, SimulatedBackend(decode_tps=50, prefill_tps=0), interactive=True) as s:
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            repl = Repl(s.kernel, input=inp, output=DummyOutput(), history=InMemoryHistory(), shell=s.shell)
            inp.send_text("run chat long\r")
            task = asyncio.create_task(repl.run())
            await until(lambda: s.kernel.procs.get(1) is not None and len(s.kernel.procs.get(1).output) >= 2)
            os.kill(os.getpid(), signal.SIGTSTP)  # what the terminal sends on Ctrl-Z
            await until(lambda: "Stopped" in s.out.getvalue())
            assert s.kernel.procs.get(1).status == "STOPPED"
            inp.send_text("kill -9 %1\rexit\r")
            assert await asyncio.wait_for(task, 10) == 0
        assert "[1]+  Stopped                 run chat long" in s.out.getvalue()


async def test_toolbar_shows_user_model_policy_slots_and_rate(home: Path) -> None:
    async with session(home, SimulatedBackend(slots=3)) as s:
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            repl = Repl(s.kernel, input=inp, output=DummyOutput(), history=InMemoryHistory(), shell=s.shell)
            text = repl.toolbar()
    policy = KernelAPI(s.kernel).sched().policy
    assert text == f" alice │ simulated sim-1 │ {policy} 0/3 run, 0 queued │ 0 tok/s "
    assert len(text) <= 80


async def asked(home: Path, keys: str, decode_tps: float = 5) -> tuple[int, str, list[str]]:
    """Run the REPL on `keys`; its status, its output and every question it put to the person."""
    questions: list[str] = []
    async with session(home, SimulatedBackend(decode_tps=decode_tps), interactive=True) as s:
        with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
            repl = Repl(s.kernel, input=inp, output=DummyOutput(), history=InMemoryHistory(), shell=s.shell)
            read = repl.read

            async def recording(message: str, **kw: object) -> str:
                if "hang up" in message:
                    questions.append(message)
                return await read(message, **kw)

            repl.read = recording  # type: ignore[method-assign]
            inp.send_text(keys)
            status = await asyncio.wait_for(repl.run(), 30)
        return status, s.take()[0], questions


async def test_exit_asks_as_ctrl_d_does_when_agents_still_run(home: Path) -> None:
    status, out, questions = await asked(home, "run chat long &\rexit\rn\rjobs\rexit 3\ry\r")
    assert "[1]+  Running" in out  # `n` kept the shell; `jobs` ran
    assert questions == ["1 agent is still running; exit and hang up? [y/N] "] * 2
    assert status == 3


async def test_a_stopped_agent_is_counted_as_stopped(home: Path) -> None:
    keys = "run chat long &\rrun chat long &\rkill -STOP %1\r\x04y\r"
    status, _, questions = await asked(home, keys)
    assert questions == ["1 agent is still running and 1 is stopped; exit and hang up? [y/N] "]
    status, _, questions = await asked(home, "run chat long &\rkill -STOP %1\rexit\ry\r")
    assert questions == ["1 agent is stopped; exit and hang up? [y/N] "]


async def test_ctrl_z_at_an_empty_prompt_does_nothing(home: Path) -> None:
    status, out, _, _ = await repl_session(home, SimulatedBackend(), "\x1aecho hi\rexit\r")
    assert status == 0 and out.splitlines()[1:] == ["hi"]  # (the banner first)
