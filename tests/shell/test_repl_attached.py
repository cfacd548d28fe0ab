"""The attached shell's prompt through prompt-toolkit's pipe input: Tab completes from the kernel's process, for
this terminal's own jobs and its user."""

from __future__ import annotations

import asyncio

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from aios_shell.repl_attached import AttachedRepl, RemoteCompleter
from kernel.api.wire import Connection
from kernel.kernel import Kernel
from kernel.server import KernelServer
from tests.conftest import until


async def candidates(completer: RemoteCompleter, text: str) -> list[str]:
    found = completer.get_completions_async(Document(text), CompleteEvent(completion_requested=True))
    return [c.text async for c in found]


async def test_tab_in_an_attached_shell_completes_from_the_kernel(kernel: Kernel, server: KernelServer) -> None:
    other = kernel.spawn("workload", ["5:300"], user="alice")  # started elsewhere: a pid, not a job of ours
    conn = await Connection.open(kernel.config.home, "alice")
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        repl = AttachedRepl(conn, kernel.config.home, input=inp, output=DummyOutput())
        task = asyncio.create_task(repl.run())
        inp.send_text("run workload 5:300 &\r")
        await until(lambda: len(kernel.ps()) == 2)
        completer = RemoteCompleter(conn)
        assert await candidates(completer, "kill ") == ["%1", str(other.pid), str(other.pid + 1)]
        assert await candidates(completer, "ren") == ["renice"]
        assert await candidates(completer, "ls /a") == ["/agents", "/audit"]
        assert await candidates(completer, "run wo") == ["workload"]
        inp.send_text("who\t")  # one candidate: Tab writes it in
        await until(lambda: repl.session.default_buffer.text == "whoami")
        inp.send_text("\rexit\r")
        assert await asyncio.wait_for(task, 10) == 0
    assert all(p.alive for p in kernel.ps())  # leaving detached; nothing was hung up


async def test_a_completion_request_that_is_not_text_is_refused(kernel: Kernel, server: KernelServer) -> None:
    from kernel.api.wire import RemoteError

    conn = await Connection.open(kernel.config.home, "alice")
    try:
        with pytest.raises(RemoteError, match="text: not a string"):
            await conn.call_op("complete", text=["ls"])
        huge = "echo " + "x" * 100_000 + "; who"
        assert await conn.call_op("complete", text=huge) == [["whoami", -3]]  # the end of it is what counts
    finally:
        await conn.close()
