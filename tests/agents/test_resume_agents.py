"""chat and react carry on a resumed conversation; a resumed process's transcript is whole, so it resumes again."""

from __future__ import annotations

from pathlib import Path

from kernel.kernel import boot
from kernel.llm.simulated import Reply, SimulatedBackend
from kernel.recovery import resume
from tests.conftest import make_config, until
from tests.kernel.test_resume import crash


async def test_react_interrupted_after_a_tool_step_resumes_and_finishes(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    first = await boot(make_config(home), backend=sim)
    sim.enqueue(Reply(tool_calls=[{"name": "calc", "arguments": {"expression": "6*7"}},
                                  {"name": "calc", "arguments": {"expression": "1+1"}}]))
    sim.enqueue(RuntimeError("the kernel dies here"))  # stands for the crash during the second step
    proc = first.spawn("react", ["what is 6*7 and 1+1?"])
    await first.wait(proc.pid)
    transcript = [(m["role"], m["content"]) for m in first.storage.messages(proc.pid)]
    await crash(first)
    assert transcript[0] == ("user", "what is 6*7 and 1+1?")
    assert transcript[1][0] == "assistant" and 'CALL {"tool": "calc"' in transcript[1][1]
    assert [c for r, c in transcript[2:]] == ["42", "2"]  # both results of the parallel step are kept

    sim2 = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim2.enqueue("ANSWER: 42 and 2")
    async with await boot(make_config(home), backend=sim2) as kernel:
        again = resume(kernel, proc.pid)
        await kernel.wait(again.pid)
        assert again.exit_code == 0 and "42 and 2" in "".join(again.output)
        sent = sim2.requests[0].messages
        assert [m["role"] for m in sent[-4:]] == ["user", "assistant", "tool", "tool"]
        assert sent[-4]["content"] == "what is 6*7 and 1+1?"
        # the new transcript holds the whole conversation once, then the answer
        roles = [m["role"] for m in kernel.storage.messages(again.pid)]
        assert roles == ["user", "assistant", "tool", "tool", "assistant"]


async def test_chat_that_had_answered_prints_its_answer_without_asking_again(home: Path) -> None:
    sim = SimulatedBackend(decode_tps=0, prefill_tps=0)
    sim.enqueue("Cats sleep a lot.")
    async with await boot(make_config(home), backend=sim) as kernel:
        proc = kernel.spawn("chat", ["Tell me about cats."])
        await kernel.wait(proc.pid)
        await until(lambda: len(kernel.storage.messages(proc.pid)) == 2)
        again = resume(kernel, proc.pid)
        await kernel.wait(again.pid)
        assert "".join(again.output).strip() == "Cats sleep a lot."
        assert len(sim.requests) == 1  # no second model call
        assert again.ppid == proc.pid
