"""Answer sizes learned per program and step, never from `max_tokens`: an estimate converges on what the
answers are, its error is counted, and an agent's remaining work comes from how long its program's runs were."""

from __future__ import annotations

import random

from kernel.llm.backend import LLMRequest
from kernel.process import Process
from kernel.scheduler import make_policy
from kernel.scheduler.sizes import MIN_SEEN, CallSizes
from kernel.syscall import LLMCall


def answer(sizes: CallSizes, proc: Process, tokens: int) -> LLMCall:
    call = LLMCall(sid=tokens, proc=proc, request=LLMRequest([{"role": "user", "content": "x"}], max_tokens=1024))
    sizes.queued(call)
    call.chunks = tokens
    sizes.answered(call)
    return call


async def test_an_estimate_converges_on_the_answers_and_its_error_is_counted() -> None:
    sizes, rng = CallSizes(), random.Random(1)
    fresh = Process(pid=999, ppid=0, user="alice", program="coder", argv=())
    assert sizes.estimate(fresh) is None  # nothing learned: the caller falls back to max_tokens
    for pid in range(1, 200):  # each run's first answer is ~60 tokens, its second ~300
        proc = Process(pid=pid, ppid=0, user="alice", program="coder", argv=())
        answer(sizes, proc, rng.randint(50, 70))
        answer(sizes, proc, rng.randint(280, 320))
        sizes.exited(pid)
    first, second = (s for s in sizes.describe() if s["program"] == "coder")
    assert (first["step"], second["step"]) == ("1", "2") and first["answers"] == second["answers"] == 199
    assert abs(first["estimate"] - 60) < 3 and abs(second["estimate"] - 300) < 5
    assert first["error"] is not None and first["error"] < 10  # estimates made after the first few were close
    assert abs(sizes.estimate(fresh) - 60) < 3  # a new run's first call: the program's first step
    assert sizes.calls_left(fresh) == 2.0  # every run made two calls


async def test_srpt_orders_by_the_learned_size_not_the_cap() -> None:
    srpt = make_policy("srpt")
    sizes = srpt.sizes = CallSizes()
    for pid in range(1, 1 + MIN_SEEN):
        answer(sizes, Process(pid=pid, ppid=0, user="a", program="chat", argv=()), 20)
        answer(sizes, Process(pid=100 + pid, ppid=0, user="a", program="essay", argv=()), 900)
    calls = []
    for sid, program in ((1, "essay"), (2, "chat")):  # both ask for 1024; the chat answers short
        call = LLMCall(sid=sid, proc=Process(pid=50 + sid, ppid=0, user="a", program=program, argv=()),
                       request=LLMRequest([{"role": "user", "content": "x"}], max_tokens=1024))
        call.queued_at = call.submitted_at = 0.0
        sizes.queued(call)
        calls.append(call)
        srpt.push(call)
    assert srpt.pop() is calls[1] and srpt.remaining(calls[0]) == 1024  # (2 × 900 is past the cap)


async def test_a_program_whose_answers_reach_their_max_tokens_keeps_max_tokens_as_their_size() -> None:
    sizes = CallSizes()
    for pid in range(1, 6):  # each asks for exactly what it gets (the cap is its length)
        proc = Process(pid=pid, ppid=0, user="a", program="exact", argv=())
        call = LLMCall(sid=pid, proc=proc, request=LLMRequest([{"role": "user", "content": "x"}], max_tokens=10 * pid))
        sizes.queued(call)
        call.chunks = 10 * pid
        sizes.answered(call)
    assert sizes.estimate(Process(pid=99, ppid=0, user="a", program="exact", argv=())) is None
