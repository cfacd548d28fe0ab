"""Continuous batching for the embedded model: P sequences of one llama.cpp context, decoded together.

One worker thread owns the llama.cpp context. Each step it builds one batch from
every active sequence — one token for each sequence that is generating, a chunk
of prompt for each that is still reading its prompt — decodes it once, and
samples the next token of each generating sequence. So P calls share each pass
over the weights and aggregate tokens/s grows with P.

A sequence that ends — finished, or closed early by a preemption or a kill — leaves
its KV state in a cache keyed by its tokens, least recently used first out, within
`cache_budget` bytes of RAM. A later request whose prompt starts with those tokens
(an agent's next turn: its prompt, its answer, then what came since; or a preempted
call resuming from prompt + partial) restores that state instead of re-reading the
prompt; every save and restore is timed and counted in `stats`.
"""

from __future__ import annotations

import codecs
import ctypes
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaBatch, LlamaContext

from kernel.llm.backend import BackendError, Chunk
from kernel.llm.stops import StopScanner

Emit = Callable[[Any], None]
MIN_REUSE = 16  # tokens of common prefix worth restoring a saved state for
CACHE_BUDGET = 512 << 20  # bytes of saved KV states kept in RAM
FLUSH_S = 0.05  # tokens reach the event loop at least this often (and at once when a sequence ends)


def _deliver(items: list[tuple[Callable[[Any], None], Any]]) -> None:
    for sink, item in items:
        sink(item)


@dataclass
class Job:
    """One generation request, as the worker thread sees it."""

    tokens: list[int]
    max_tokens: int
    temperature: float
    seed: int
    stops: tuple[str, ...]
    emit: Emit  # thread-safe; used when no loop is given
    stop_flag: threading.Event = field(default_factory=threading.Event)
    ignore_eos: bool = False  # generate exactly max_tokens (benchmarks)
    loop: Any = None  # an event loop: items go to `sink` on it, one wake-up per step for every job
    sink: Callable[[Any], None] | None = None


@dataclass
class Seq:
    job: Job
    seq_id: int
    pending: list[int]  # prompt tokens not yet in the KV cache
    history: list[int]  # tokens in the KV cache, in order
    sampler: Any
    scanner: StopScanner
    decoder: Any
    produced: int = 0
    next_token: int | None = None  # sampled, not yet fed
    logits_at: int | None = None  # its row in the current batch, when it wants a token


@dataclass
class Stats:
    steps: int = 0
    decoded: int = 0  # tokens sampled
    prefilled: int = 0  # prompt tokens read
    reused: int = 0  # prompt tokens not re-read thanks to a saved state
    saves: int = 0
    save_s: float = 0.0
    restores: int = 0
    restore_s: float = 0.0
    cancelled: int = 0
    max_batch_seqs: int = 0
    cached_bytes: int = 0  # KV states kept now
    evicted: int = 0  # states dropped to stay within the budget


class BatchEngine:
    def __init__(self, llm: Any, slots: int, window: int, threads: int, n_batch: int = 512,
                 cache_entries: int = 64, cache_budget: int = CACHE_BUDGET) -> None:
        """`window` tokens per sequence, each sequence with its own KV stream."""
        self.llm = llm
        self.slots = slots
        self.window = window
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = window * slots
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = slots
        params.n_threads = threads
        params.n_threads_batch = threads
        # one KV stream per sequence, and sliding-window layers keep only their window: both measured
        # several times faster to decode here than a unified or full-size cache
        params.kv_unified = False
        params.swa_full = False
        params.no_perf = True
        self.ctx = LlamaContext(model=llm._model, params=params, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_batch = n_batch
        self.batch = LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=slots, verbose=False)
        self.inbox: queue.Queue[Job | None] = queue.Queue()
        self.free_ids = list(range(slots))
        self.active: list[Seq] = []
        self.waiting: list[Job] = []
        self.cache: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.cache_entries = cache_entries
        self.cache_budget = cache_budget
        self.keep_finished = True  # keep a finished sequence's state too, not only a closed one's
        self.stats = Stats()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._outbox: dict[Any, list[tuple[Callable[[Any], None], Any]]] = {}
        self._flushed = 0.0
        self._ended = False  # a sequence ended this step: hand over at once

    # -- the event loop's side -----------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llamacpp-batch", daemon=True)
            self._thread.start()
        self.inbox.put(job)

    @property
    def busy(self) -> int:
        return len(self.active)

    def close(self) -> None:
        self._closing = True
        self.inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.cache.clear()
        self.batch.close()
        self.ctx.close()

    # -- the worker thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closing:
            self._admit(block=not self.active)
            if self._closing:
                break
            self._reap_cancelled()
            if self.active:
                try:
                    self._step()
                except Exception as exc:  # fail the calls in flight, keep the engine
                    for seq in list(self.active):
                        self._finish(seq, "error", error=exc)
            self._flush_out(force=self._ended)
            self._ended = False

    def _out(self, job: Job, item: Any) -> None:
        if job.loop is None or job.sink is None:
            job.emit(item)
        else:
            self._outbox.setdefault(job.loop, []).append((job.sink, item))

    def _flush_out(self, force: bool = False) -> None:
        """Hand tokens to each event loop in one wake-up, at most every `FLUSH_S` while sequences run.

        Every wake-up of the loop's thread on a busy machine stalls llama.cpp's spinning threads for a
        moment; batching the hand-over keeps decode speed near raw llama.cpp (measured by bench.batching).
        """
        now = time.perf_counter()
        if not self._outbox or (not force and self.active and now - self._flushed < FLUSH_S):
            return
        self._flushed = now
        outbox, self._outbox = self._outbox, {}
        for loop, items in outbox.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: nobody is listening any more
                pass

    def _admit(self, block: bool) -> None:
        try:
            while True:
                job = self.inbox.get(block=block and not self.waiting)
                block = False
                if job is None:
                    self._closing = True
                    return
                self.waiting.append(job)
        except queue.Empty:
            pass
        while self.waiting and self.free_ids:
            job = self.waiting.pop(0)
            if job.stop_flag.is_set():
                self._out(job, Chunk(done=True, prompt_tokens=len(job.tokens), finish_reason="cancelled"))
                continue
            self._start(job)

    def _start(self, job: Job) -> None:
        seq_id = min(self.free_ids)  # the lowest: the ids in a batch stay consecutive (see `_step`)
        self.free_ids.remove(seq_id)
        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
        history: list[int] = []
        reused = self._restore(job.tokens, seq_id)
        if reused:
            history = list(job.tokens[:reused])
        self.stats.reused += reused
        seq = Seq(job=job, seq_id=seq_id, pending=list(job.tokens[reused:]), history=history,
                  sampler=self._sampler(job), scanner=StopScanner(job.stops),
                  decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"))
        self.active.append(seq)

    def _sampler(self, job: Job) -> Any:
        if job.temperature <= 0:
            return None  # greedy: the largest logit, read directly (see `_sample`)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        for sampler in (
            llama_cpp.llama_sampler_init_penalties(64, 1.1, 0.0, 0.0),
            llama_cpp.llama_sampler_init_top_k(40),
            llama_cpp.llama_sampler_init_top_p(0.9, 1),
            llama_cpp.llama_sampler_init_min_p(0.05, 1),
            llama_cpp.llama_sampler_init_temp(job.temperature),
            llama_cpp.llama_sampler_init_dist(job.seed & 0xFFFFFFFF),
        ):
            llama_cpp.llama_sampler_chain_add(chain, sampler)
        return chain

    def _reap_cancelled(self) -> None:
        for seq in list(self.active):
            if seq.job.stop_flag.is_set():
                self._save(seq)
                self._finish(seq, "cancelled")
                self.stats.cancelled += 1

    def _step(self) -> None:
        """One decode over every active sequence."""
        b = self.batch.batch
        n = 0
        # rows in sequence-id order: llama.cpp splits a batch whose sequences (each with its own KV stream)
        # are not consecutive ids into several passes, and P sequences would cost P decodes
        self.active.sort(key=lambda s: s.seq_id)
        for seq in self.active:  # generating sequences: one token each
            seq.logits_at = None
            if seq.next_token is not None:
                n = self._put(b, n, seq, seq.next_token, logits=True)
                seq.next_token = None
        for seq in self.active:  # prompts: what fits in the rest of the batch
            if not seq.pending or n >= self.n_batch:
                continue
            take = seq.pending[: self.n_batch - n]
            del seq.pending[: len(take)]
            for i, token in enumerate(take):
                n = self._put(b, n, seq, token, logits=not seq.pending and i == len(take) - 1)
            self.stats.prefilled += len(take)
        if n == 0:
            return
        b.n_tokens = n
        self.stats.max_batch_seqs = max(self.stats.max_batch_seqs, sum(s.logits_at is not None for s in self.active))
        rc = llama_cpp.llama_decode(self.ctx.ctx, b)
        if rc != 0:
            raise BackendError(f"llama.cpp could not decode the batch (code {rc}); the context may be full")
        self.stats.steps += 1
        for seq in list(self.active):
            if seq.logits_at is not None:
                self._sample(seq)

    def _put(self, b: Any, n: int, seq: Seq, token: int, logits: bool) -> int:
        """Row `n` of the batch: `token` at the next position of `seq`."""
        b.token[n] = token
        b.pos[n] = len(seq.history)
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = seq.seq_id
        b.logits[n] = logits
        seq.history.append(token)
        if logits:
            seq.logits_at = n
        return n + 1

    def _sample(self, seq: Seq) -> None:
        if seq.sampler is None:
            # greedy: argmax over the row's logits; llama_sampler_sample would first copy all 262k of them
            # into a candidate array, about 2 ms a token here
            row = llama_cpp.llama_get_logits_ith(self.ctx.ctx, seq.logits_at)
            token = int(np.ctypeslib.as_array(row, shape=(self.n_vocab,)).argmax())
        else:
            token = llama_cpp.llama_sampler_sample(seq.sampler, self.ctx.ctx, seq.logits_at)
        seq.logits_at = None
        self.stats.decoded += 1
        if llama_cpp.llama_vocab_is_eog(self.vocab, token) and not seq.job.ignore_eos:
            self._finish(seq, "stop")
            return
        seq.produced += 1
        piece = self.llm.detokenize([token], special=False)
        text, hit = seq.scanner.feed(seq.decoder.decode(piece))
        if text:
            self._out(seq.job, Chunk(text=text))
        if hit:
            self._finish(seq, "stop")
        elif seq.produced >= seq.job.max_tokens or len(seq.history) + 1 >= self.window:
            self._finish(seq, "length")
        else:
            seq.next_token = token

    def _finish(self, seq: Seq, reason: str, error: BaseException | None = None) -> None:
        if reason in ("stop", "length"):
            tail = seq.scanner.flush() if reason == "length" else ""
            tail = seq.decoder.decode(b"", final=True) + tail
            if tail:
                self._out(seq.job, Chunk(text=tail))
        if error is not None:
            failure = error if isinstance(error, BackendError) else BackendError(f"embedded model failed: {error}")
            self._out(seq.job, failure)
        else:
            self._out(seq.job, Chunk(done=True, prompt_tokens=len(seq.job.tokens), completion_tokens=seq.produced,
                               finish_reason=reason))
        self._ended = True
        if reason in ("stop", "length") and self.keep_finished:
            self._save(seq)  # an agent's next turn starts with this prompt and this answer
        llama_cpp.llama_memory_seq_rm(self.memory, seq.seq_id, -1, -1)
        if seq.sampler is not None:
            llama_cpp.llama_sampler_free(seq.sampler)
        self.active.remove(seq)
        self.free_ids.append(seq.seq_id)

    # -- saved states --------------------------------------------------------------------------------
    def _save(self, seq: Seq) -> None:
        """Keep a closed sequence's KV state, so a resume need not re-read its tokens."""
        if len(seq.history) < MIN_REUSE or seq.pending:
            return
        t0 = time.perf_counter()
        size = llama_cpp.llama_state_seq_get_size(self.ctx.ctx, seq.seq_id)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.ctx.ctx, buf, size, seq.seq_id)
        if not written:
            return
        key = tuple(seq.history)
        if key in self.cache:
            self._drop(key)
        self.cache[key] = (buf, written)
        self.stats.cached_bytes += written
        while self.cache and (len(self.cache) > self.cache_entries or self.stats.cached_bytes > self.cache_budget):
            self._drop(next(iter(self.cache)))
            self.stats.evicted += 1
        self.stats.saves += 1
        self.stats.save_s += time.perf_counter() - t0

    def _drop(self, key: tuple[int, ...]) -> Any:
        buf, size = self.cache.pop(key)
        self.stats.cached_bytes -= size
        return buf, size

    def _restore(self, tokens: list[int], seq_id: int) -> int:
        """Load the saved state sharing the longest prefix with `tokens`; returns the tokens reused."""
        best, best_len = None, 0
        for key in self.cache:
            common = 0
            for a, b in zip(key, tokens, strict=False):
                if a != b:
                    break
                common += 1
            if common > best_len:
                best, best_len = key, common
        best_len = min(best_len, len(tokens) - 1)  # the last prompt token is fed again, for its logits
        if best is None or best_len < MIN_REUSE:
            return 0
        t0 = time.perf_counter()
        buf, size = self._drop(best)
        if not llama_cpp.llama_state_seq_set_data(self.ctx.ctx, buf, size, seq_id):
            return 0
        if not llama_cpp.llama_memory_seq_rm(self.memory, seq_id, best_len, -1):
            # a sliding-window cache cannot always be cut back: read the prompt again instead
            llama_cpp.llama_memory_seq_rm(self.memory, seq_id, -1, -1)
            return 0
        self.stats.restores += 1
        self.stats.restore_s += time.perf_counter() - t0
        return best_len
