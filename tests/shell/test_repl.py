"""The interactive shell through prompt-toolkit's pipe input."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path

from prompt_toolkit.application import create_app_session
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from aios_shell.render import make_console
from aios_shell.repl import Repl
from aios_shell.shell import Shell
from kernel.kernel import boot
from kernel.llm.simulated import SimulatedBackend
from tests.conftest import make_config, until


async def start_repl(home: Path, sim: SimulatedBackend, history: InMemoryHistory | None = None):  # noqa: ANN201
    kernel = await boot(make_config(home), backend=sim)
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(kernel, out=make_console(out), err=make_console(err), interactive=True)
    return kernel, shell, out, err, history or InMemoryHistory()


async def test_commands_typed_at_the_prompt(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=500)
    sim.enqueue("Cats are very intelligent animals.")
    kernel, shell, out, err, history = await start_repl(home, sim)
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text('run chat "Write one sentence about cats."\nps -a\nkill 99\nexit\n')
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        status = await asyncio.wait_for(repl.run(), 30)
    await kernel.shutdown()
    text = out.getvalue()
    assert "Cats are very intelligent animals." in text
    assert "EXITED(0)" in text
    assert "kill: (99) - No such process" in err.getvalue()
    assert status == 1  # exit with no argument keeps $? (the failed kill)
    assert list(history.get_strings())[-1] == "exit"


async def test_background_job_is_announced_and_reported(home: Path) -> None:
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend(decode_tps=500))
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("run chat short &\n")
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        task = asyncio.create_task(repl.run())
        await until(lambda: "Done" in out.getvalue())
        inp.send_text("exit 0\n")
        assert await asyncio.wait_for(task, 10) == 0
    await kernel.shutdown()
    assert "[1] 1" in out.getvalue()
    assert "[1]+  Done" in out.getvalue() and "chat short" in out.getvalue()


async def test_ctrl_c_interrupts_the_foreground_job_not_the_shell(home: Path) -> None:
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend(decode_tps=50))
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("run chat long\n")
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        task = asyncio.create_task(repl.run())
        await until(lambda: kernel.procs.get(1) is not None and len(kernel.procs.get(1).output) >= 2)
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C
        await until(lambda: not kernel.procs.get(1).alive)
        inp.send_text("echo still here\nexit\n")
        status = await asyncio.wait_for(task, 10)
    await kernel.shutdown()
    assert kernel.procs.get(1).status == "EXITED(SIGINT)"
    assert "still here" in out.getvalue()
    assert status == 0
    assert "Interrupt" in err.getvalue()


async def test_ctrl_d_leaves(home: Path) -> None:
    kernel, shell, out, err, history = await start_repl(home, SimulatedBackend())
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("\x04")
        repl = Repl(kernel, input=inp, output=DummyOutput(), history=history, shell=shell)
        assert await asyncio.wait_for(repl.run(), 10) == 0
    await kernel.shutdown()


async def test_history_persists_per_user(home: Path) -> None:
    kernel = await boot(make_config(home), backend=SimulatedBackend())
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text("echo remembered\nexit\n")
        repl = Repl(kernel, input=inp, output=DummyOutput(),
                    shell=Shell(kernel, out=make_console(io.StringIO()), interactive=True))
        await asyncio.wait_for(repl.run(), 10)
    await kernel.shutdown()
    assert "echo remembered" in (home / "history-alice").read_text()
