"""The embedded backend with the real Gemma-3-270M weights: streaming, token counts, cancellation."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernel.kernel import Kernel, boot
from kernel.llm.backend import BackendError, LLMRequest, ModelNotFound
from kernel.llm.llamacpp import LlamaCppBackend, StopScanner
from kernel.llm.templates import render_transcript
from kernel.process import Signal
from tests.conftest import make_config, until

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def llama() -> LlamaCppBackend:
    backend = LlamaCppBackend(seed=1, slots=4)
    asyncio.run(backend.load())
    return backend


@pytest.fixture
async def llama_kernel(home: Path, llama: LlamaCppBackend) -> AsyncIterator[Kernel]:
    kernel = await boot(make_config(home, backend="llamacpp"), backend=llama)
    yield kernel
    for proc in kernel.procs.alive():
        kernel.signal(proc.pid, Signal.KILL)
    await kernel.dispatcher.drain()
    kernel.storage.close()  # the module-scoped model stays loaded for the next test


def test_transcript_format() -> None:
    text = render_transcript([{"role": "user", "content": "Hi  there\nfriend"}], partial=" Hello")
    assert text.startswith("This is a conversation between a User and a helpful Assistant.")
    assert "User: Write one sentence about the sea.\nAssistant: " in text  # one worked example
    assert text.endswith("User: Hi there friend\nAssistant: Hello")
    assert "<start_of_turn>" not in text


def test_stop_scanner_holds_back_a_possible_stop() -> None:
    scanner = StopScanner(("\nUser:",))
    assert scanner.feed("Cats purr.") == ("Cats purr.", False)
    assert scanner.feed(" Yes\nUs") == (" Yes", False)
    assert scanner.feed("er: more") == ("", True)
    assert StopScanner(("\n\n",)).feed("a\n\nb") == ("a", True)


async def test_chat_streams_a_real_answer_with_real_token_counts(llama_kernel: Kernel,
                                                                  llama: LlamaCppBackend) -> None:
    proc = llama_kernel.spawn("chat", ["Write one sentence about cats."])
    await llama_kernel.wait(proc.pid)
    text = "".join(proc.output).strip()
    assert proc.status == "EXITED(0)", proc.error
    assert len(proc.output) > 3  # streamed in pieces
    assert re.search(r"[A-Za-z]{3,}", text)
    prompt = render_transcript([{"role": "user", "content": "Write one sentence about cats."}])
    assert proc.prompt_tokens == len(llama.tokenize(prompt))
    assert proc.completion_tokens > 0
    assert "User:" not in text and "Assistant:" not in text  # stopped at the next speaker


async def test_closing_the_stream_stops_decoding_at_the_next_token(llama: LlamaCppBackend) -> None:
    request = LLMRequest([{"role": "user", "content": "Count from 1 to 200: 1, 2, 3, 4,"}],
                         max_tokens=400, stop=("<never>",), seed=3)
    before = llama.stats.cancelled
    decoded = llama.stats.decoded
    stream = llama.stream(request)
    received = 0
    async for _chunk in stream:
        received += 1
        if received == 3:
            break
    at_close = llama.stats.decoded  # the engine decodes ahead of the reader, so count from the close
    await stream.aclose()
    await until(lambda: llama.stats.cancelled == before + 1, timeout=30)
    assert llama.engine.busy == 0  # the sequence is gone
    assert llama.stats.decoded - at_close <= 2  # it stopped within a step of the close
    assert llama.stats.decoded - decoded < 400  # and long before its max_tokens
    # and the model serves the next call
    chunks = [c async for c in llama.stream(LLMRequest([{"role": "user", "content": "Say hi."}], max_tokens=8))]
    assert chunks[-1].done and chunks[-1].completion_tokens > 0


async def test_kill_during_generation(llama_kernel: Kernel, llama: LlamaCppBackend) -> None:
    before = llama.stats.cancelled
    proc = llama_kernel.spawn("chat", ["Tell me a long story about a dragon and a knight."])
    await until(lambda: len(proc.output) >= 1, timeout=60)
    llama_kernel.signal(proc.pid, Signal.KILL)
    assert proc.status == "EXITED(SIGKILL)"
    await until(lambda: llama.engine.busy == 0, timeout=30)
    assert llama.stats.cancelled in (before, before + 1)  # stopped, unless it had just finished


async def test_batched_sequences_decode_together(llama: LlamaCppBackend) -> None:
    steps = llama.stats.steps
    requests = [LLMRequest([{"role": "user", "content": f"Name a colour, number {i}."}], max_tokens=12,
                           stop=("<never>",), seed=i) for i in range(llama.slots)]

    async def run(request: LLMRequest) -> list:
        return [c async for c in llama.stream(request)]

    results = await asyncio.gather(*(run(r) for r in requests))
    assert all(chunks[-1].done and chunks[-1].completion_tokens == 12 for chunks in results)
    assert llama.stats.max_batch_seqs == llama.slots  # all P sequences were in one batch
    # P sequences of 12 tokens took far fewer than P × 12 decode steps
    assert llama.stats.steps - steps < 12 * llama.slots


async def test_a_batch_lists_its_sequences_in_consecutive_id_order(llama: LlamaCppBackend,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp splits a batch into one pass per run of consecutive sequence ids (each sequence has its own KV
    stream): sequences in rows 1, 2, 3, 0 cost two passes, 0, 1, 2, 3 one. A sequence that ran and left must
    not shift the ids of the next ones."""
    engine = llama.engine
    rows: list[list[int]] = []
    put = engine._put

    def record(b, n, seq, token, logits):  # noqa: ANN001, ANN202
        if n == 0:
            rows.append([])
        if not rows[-1] or rows[-1][-1] != seq.seq_id:
            rows[-1].append(seq.seq_id)
        return put(b, n, seq, token, logits)

    monkeypatch.setattr(engine, "_put", record)

    async def run(i: int, tokens: int) -> None:
        request = LLMRequest([{"role": "user", "content": f"Count to {i}."}], max_tokens=tokens, temperature=0,
                             stop=("<never>",), options={"ignore_eos": True})
        assert [c async for c in llama.stream(request)][-1].completion_tokens == tokens

    await run(0, 3)  # one sequence comes and goes
    rows.clear()
    await asyncio.gather(*(run(i, 6) for i in range(llama.slots)))
    together = [r for r in rows if len(r) == llama.slots]
    assert together, "the sequences never shared a batch"
    assert all(r == list(range(r[0], r[0] + len(r))) for r in rows), rows


async def test_preempted_call_resumes_from_saved_state_with_identical_text(llama: LlamaCppBackend) -> None:
    messages = [{"role": "user", "content": "Tell me about ships. " + "Ships sail the sea. " * 40}]
    request = LLMRequest(messages, max_tokens=24, temperature=0, stop=("<never>",))
    whole = "".join([c.text async for c in llama.stream(request)])
    stream = llama.stream(request)
    partial = ""
    async for chunk in stream:
        partial += chunk.text
        if len(partial.split()) >= 4:
            break
    await stream.aclose()
    await until(lambda: llama.engine.busy == 0, timeout=30)
    restores, reused = llama.stats.restores, llama.stats.reused
    rest = "".join([c.text async for c in llama.stream(LLMRequest(messages, max_tokens=24 - len(partial.split()),
                                                                   temperature=0, stop=("<never>",),
                                                                   partial=partial))])
    assert llama.stats.restores == restores + 1
    assert llama.stats.reused - reused > 200  # the prompt was not read again
    assert whole.startswith(partial + rest) or (partial + rest).startswith(whole)


async def test_an_agents_next_turn_restores_its_finished_turn_and_says_the_same(llama: LlamaCppBackend) -> None:
    engine = llama.engine
    first = [{"role": "system", "content": "You plan work. " + "Tools: read, write, list. " * 30},
             {"role": "user", "content": "Task: tidy the notes."}]

    async def turn(messages: list[dict[str, str]]) -> str:
        request = LLMRequest(messages, max_tokens=16, temperature=0, stop=("<never>",))
        return "".join([c.text async for c in llama.stream(request)])

    answer = await turn(first)
    second = [*first, {"role": "assistant", "content": answer}, {"role": "tool", "content": "notes.txt tidied"}]
    await until(lambda: engine.busy == 0, timeout=30)
    held, where = llama.held_tokens(LLMRequest(second))  # what /proc/PID/context says of it
    assert held >= len(llama.tokenize(render_transcript(first))) - 8 and where.startswith("a saved KV state")
    other, _ = llama.held_tokens(LLMRequest([{"role": "user", "content": "unrelated"}]))
    assert other < held // 2  # (the transcript's preamble only)
    restores, reused = engine.stats.restores, engine.stats.reused
    kept = await turn(second)
    assert engine.stats.restores == restores + 1
    assert engine.stats.reused - reused >= len(llama.tokenize(render_transcript(first))) - 8  # turn 1 not re-read
    engine.keep_finished, budget = False, engine.cache_budget
    try:
        engine.cache.clear()
        engine.stats.cached_bytes = 0
        assert await turn(second) == kept  # read from the start: the same words
        engine.keep_finished, engine.cache_budget = True, 1  # a budget no state fits: each one evicted at once
        evicted = engine.stats.evicted
        await turn(first)
        await until(lambda: engine.busy == 0, timeout=30)
        assert engine.stats.evicted > evicted and engine.stats.cached_bytes == 0 and not engine.cache
    finally:
        engine.keep_finished, engine.cache_budget = True, budget
    assert "kv_cache" in llama.describe() and "restores" in llama.describe()["kv_cache"]


def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no GGUF model file at"):
        LlamaCppBackend(model=str(tmp_path / "nope.gguf"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # llama-cpp-python's __del__
async def test_bad_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    backend = LlamaCppBackend(model=str(bad))
    with pytest.raises(BackendError, match="cannot load model bad.gguf"):
        await backend.load()


def test_the_issue_acceptance_on_the_embedded_model(tmp_path: Path) -> None:
    """`aios -c 'run chat "Write one sentence about cats."; ps -a'` prints a sentence, then EXITED(0)."""
    env = {**os.environ, "AIOS_HOME": str(tmp_path / "home"), "OLLAMA_HOST": "127.0.0.1:9"}
    out = subprocess.run(
        [sys.executable, "-m", "aios_shell.cli", "-c", 'run chat "Write one sentence about cats."; ps -a'],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    answer, _, table = out.stdout.partition("PID")
    assert re.search(r"[A-Za-z]{3,}.*", answer.strip())
    row = [line for line in table.splitlines() if "chat Write one sentence" in line][0]
    cols = row.split()
    assert cols[5] == "EXITED(0)"
    prompt, completion = map(int, cols[7].split("/"))
    assert prompt > 0 and completion > 0


def test_the_batching_bench_times_raw_decode_in_a_process_of_its_own() -> None:
    """bench.batching's raw figure comes from a child process (one OpenMP pool per process), as a number."""
    out = subprocess.run([sys.executable, "-m", "bench.batching", "--raw-only", "2", "--tokens", "8"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"]) > 0
    bad = subprocess.run([sys.executable, "-m", "bench.batching", "--slots", "two"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--slots takes numbers" in bad.stderr
    zero = subprocess.run([sys.executable, "-m", "bench.batching", "--slots", "0"], capture_output=True, text=True,
                          timeout=60)
    assert zero.returncode == 2 and "of 1 or more" in zero.stderr
