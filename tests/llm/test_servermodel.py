"""The simulated backend with a server's timings: batched decode fitted to measured points, and a prompt cache per
slot that a request's longest common prefix picks, as Ollama's runner does. Times are the model's own, on a
virtual clock: they are what the model says, not how fast this machine is."""

from __future__ import annotations

import asyncio

import pytest

from kernel import clock
from kernel.llm.backend import BackendError, LLMRequest
from kernel.llm.servermodel import EMBEDDED, GPU, Profile, SlotCaches, fitted, message_keys
from kernel.llm.simulated import SimulatedBackend


def test_the_profiles_go_through_the_points_they_were_fitted_to() -> None:
    assert EMBEDDED.per_sequence(1) == 42.0 and EMBEDDED.total(8) == pytest.approx(75.0)
    assert GPU.total(8) == pytest.approx(1000.0)
    assert EMBEDDED.per_sequence(8) < EMBEDDED.per_sequence(2) < EMBEDDED.per_sequence(1)
    assert fitted("x", one=10, batch=4, total=40, prefill_tps=1).slowdown == 0.0  # perfect batching


def test_a_request_goes_to_the_free_slot_that_holds_its_longest_prefix() -> None:
    caches = SlotCaches(3)
    system = {"role": "system", "content": "tools"}
    a = message_keys([system, {"role": "user", "content": "task a"}], [500, 10])
    b = message_keys([system, {"role": "user", "content": "task b"}], [500, 10])
    slot_a, reused = caches.take(a)
    assert reused == 0
    slot_b, reused = caches.take(b)
    assert reused == 0 and slot_b is not slot_a
    caches.give_back(slot_a, a)
    caches.give_back(slot_b, b)
    a2 = message_keys([system, {"role": "user", "content": "task a"}, {"role": "assistant", "content": "x"}],
                      [500, 10, 30])
    slot, reused = caches.take(a2)
    assert slot is slot_a and reused == 510  # a's own conversation, not b's slot (which shares only the system)
    other, reused = caches.take(message_keys([system, {"role": "user", "content": "task c"}], [500, 10]))
    assert other is slot_b and reused == 500  # the shared system prompt
    assert SlotCaches(2, enabled=False).take(a2)[1] == 0


async def timed(backend: SimulatedBackend, request: LLMRequest) -> tuple[str, float, float]:
    """The answer, the model's time to its first token, and to its end."""
    start = clock.monotonic()
    first = None
    text = []
    async for chunk in backend.stream(request):
        if chunk.text and first is None:
            first = clock.monotonic() - start
        text.append(chunk.text)
    return "".join(text), first or 0.0, clock.monotonic() - start


def test_the_next_turn_reads_only_what_is_new() -> None:
    async def main() -> tuple[float, float]:
        sim = SimulatedBackend(slots=2, profile=EMBEDDED)
        messages = [{"role": "system", "content": "word " * 400}, {"role": "user", "content": "do it"}]
        answer, first, _ = await timed(sim, LLMRequest(messages, max_tokens=20, options={"tokens": 20}))
        messages += [{"role": "assistant", "content": answer}, {"role": "tool", "content": "result " * 50}]
        _, again, _ = await timed(sim, LLMRequest(messages, max_tokens=20, options={"tokens": 20}))
        return first, again

    first, again = clock.run_virtual(main())
    assert first == pytest.approx((404 + 6) / 480 + 1 / 42)  # the whole prompt, then one token
    assert again == pytest.approx(54 / 480 + 1 / 42)  # only the tool's result was read


def test_decode_slows_each_sequence_by_the_batch() -> None:
    async def main(n: int) -> float:
        sim = SimulatedBackend(slots=8, profile=Profile("p", decode_tps=40, slowdown=0.5, prefill_tps=1e9))
        ask = [LLMRequest([{"role": "user", "content": f"q{i}"}], max_tokens=40, options={"tokens": 40})
               for i in range(n)]
        done = await asyncio.gather(*(timed(sim, r) for r in ask))
        return max(end for _, _, end in done)

    alone, four = clock.run_virtual(main(1)), clock.run_virtual(main(4))
    assert alone == pytest.approx(1.0, rel=0.01)  # 40 tokens at 40/s
    assert four == pytest.approx(2.5, rel=0.01)  # each at 40 / (1 + 0.5 × 3) = 16/s


def test_a_long_prompt_holds_up_the_answers_being_made_in_the_same_loop() -> None:
    profile = Profile("p", decode_tps=10, slowdown=0.0, prefill_tps=1000)

    async def main(with_long_prompt: bool) -> float:
        sim = SimulatedBackend(slots=2, profile=profile)
        short = LLMRequest([{"role": "user", "content": "q"}], max_tokens=20, options={"tokens": 20})
        long = LLMRequest([{"role": "user", "content": "word " * 3000}], max_tokens=1, options={"tokens": 1})
        runs = [timed(sim, short)] + ([timed(sim, long)] if with_long_prompt else [])
        done = await asyncio.gather(*runs)
        return done[0][2]

    alone, beside = clock.run_virtual(main(False)), clock.run_virtual(main(True))
    assert alone == pytest.approx(5 / 1000 + 20 / 10)
    assert beside == pytest.approx(alone + 3004 / 1000, rel=0.01)  # its 3004 tokens were read between its steps


def test_a_saved_state_restored_into_another_slot_continues_the_conversation_after_a_copy() -> None:
    """llama.cpp's `/slots/ID?action=save|restore`: slot 0's conversation, saved and then overwritten, restored
    into slot 1; the next turn reads only what is new, and the copy cost `tokens / swap_tps` of the loop."""
    async def main() -> tuple[float, float, float, int, int]:
        sim = SimulatedBackend(slots=2, profile=EMBEDDED)
        messages = [{"role": "system", "content": "word " * 400}, {"role": "user", "content": "do it"}]
        answer, _, _ = await timed(sim, LLMRequest(messages, max_tokens=20, options={"tokens": 20}, slot=0))
        start = clock.monotonic()
        state = await sim.save_slot(0, "a.bin")
        saving = clock.monotonic() - start
        await timed(sim, LLMRequest([{"role": "user", "content": "other " * 300}], max_tokens=1, slot=0))
        await timed(sim, LLMRequest([{"role": "user", "content": "more " * 300}], max_tokens=1, slot=1))
        messages += [{"role": "assistant", "content": answer}, {"role": "tool", "content": "result " * 50}]
        request = LLMRequest(messages, max_tokens=20, options={"tokens": 20}, slot=1)
        before = sim.slot_cached(request, 1)
        start = clock.monotonic()
        restored = await sim.restore_slot(1, "a.bin")
        restoring = clock.monotonic() - start
        held = sim.saved_cached(request, "a.bin"), sim.slot_cached(request, 1)
        _, again, _ = await timed(sim, request)
        assert state.tokens == restored == 434 and state.bytes == 434 * EMBEDDED.state_bytes
        assert before == 0 and held == (434, 434)
        sim.drop_saved("a.bin")
        return saving, restoring, again, await sim.restore_slot(0, "a.bin"), sim.saved_cached(request, "a.bin")

    saving, restoring, again, gone, held = clock.run_virtual(main())
    assert saving == pytest.approx(434 / EMBEDDED.swap_tps) and restoring == pytest.approx(saving)
    assert again == pytest.approx(54 / 480 + 1 / 42)  # only the tool's result was read
    assert gone == 0 and held == 0  # a dropped state is gone


def test_a_slot_state_copy_waits_for_the_step_under_way_and_holds_up_the_next() -> None:
    """A save or restore is a task of the server's one loop, taken between steps, as llama.cpp's server takes it."""
    profile = Profile("p", decode_tps=10, slowdown=0.0, prefill_tps=1e9, swap_tps=1000)

    async def main() -> tuple[float, float]:
        sim = SimulatedBackend(slots=2, profile=profile)
        await timed(sim, LLMRequest([{"role": "user", "content": "word " * 996}], max_tokens=1, slot=0))
        answer = asyncio.ensure_future(timed(sim, LLMRequest([{"role": "user", "content": "q"}], max_tokens=20,
                                                             options={"tokens": 20}, slot=1)))
        await asyncio.sleep(0.05)  # (virtual: half way through its first step)
        start = clock.monotonic()
        await sim.save_slot(0, "x.bin")
        return clock.monotonic() - start, (await answer)[2]

    copy, answer = clock.run_virtual(main())
    assert copy == pytest.approx(0.05 + 1.0, abs=0.01)  # the rest of the step under way, then 1000 tokens at 1000/s
    assert answer == pytest.approx(20 / 10 + 1.0, rel=0.01)  # the answer lost the copy's second


def test_a_slot_that_does_not_exist_cannot_be_saved() -> None:
    sim = SimulatedBackend(slots=2, profile=EMBEDDED)
    with pytest.raises(BackendError, match="no slot 5"):
        clock.run_virtual(sim.save_slot(5, "x.bin"))
    with pytest.raises(BackendError, match="no slot"):
        clock.run_virtual(SimulatedBackend(slots=2).save_slot(0, "x.bin"))  # a server without slots' caches
