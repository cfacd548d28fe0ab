"""A protocol-faithful fake Ollama server for tests (stdlib only).

It speaks the real Ollama HTTP API over a real socket on 127.0.0.1, so the official
``ollama`` client (and plain httpx) work against it unmodified.  Behaviour switches and
request records are plain attributes; see ``FakeOllama``.

Tool calling as in Ollama: a scripted reply may be ``{"content": str, "tool_calls": [{"name":
…, "arguments": {…}}]}``; when the /api/chat request has ``tools``, the calls are streamed as
one message ``{"role": "assistant", "content": "", "tool_calls": [{"function": {"index": i,
"name": …, "arguments": {…}}}]}`` before the final ``done`` line (without ``tools`` only the
content is sent).  A model listed in ``no_tools`` answers a request with ``tools`` with
400 ``registry.ollama.ai/library/<model> does not support tools``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.12.0"
MODEL_SIZE = 291554930
PULL_MISSING_ERROR = "pull model manifest: file does not exist"
Reply = str | dict[str, Any]  # text, or {"content": str, "tool_calls": [{"name", "arguments"}]}


class _ClientGone(Exception):
    """The client closed or reset the connection."""


class _Stopping(Exception):
    """stop() was called while a request was in progress."""


class _InStreamError(Exception):
    """Injected model error (error_after_chunks)."""


class _Reset(Exception):
    """Injected TCP reset (reset_after_chunks)."""


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _norm(name: str) -> str:
    """Ollama treats ``gemma3`` and ``gemma3:latest`` as the same model."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(_norm(name).encode()).hexdigest()


def _family(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def _details(name: str) -> dict[str, Any]:
    family = _family(name)
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family],
            "parameter_size": "268.10M", "quantization_level": "Q8_0"}


def split_pieces(text: str, words_per_chunk: int = 1) -> list[str]:
    """Split into word pieces (leading whitespace kept) so ``"".join(pieces) == text``."""
    words = re.findall(r"\s*\S+|\s+", text)
    n = max(1, words_per_chunk)
    return ["".join(words[i : i + n]) for i in range(0, len(words), n)]


def _keep_alive_seconds(value: Any) -> float | None:
    """Seconds a model stays loaded; None means forever (negative keep_alive)."""
    if value is None:
        return 300.0
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)([smh]?)", str(value).strip())
    if match is None:
        return 300.0
    amount = float(match[1])
    return None if amount < 0 else amount * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def _registry_name(name: str) -> str:
    """How Ollama names a model in errors: ``registry.ollama.ai/library/gemma3:270m``."""
    name = _norm(name)
    return f"registry.ollama.ai/{name if '/' in name else 'library/' + name}"


def _reply_parts(reply: Any) -> tuple[str, list[dict[str, Any]]]:
    """A scripted reply (str or {"content", "tool_calls"}) as text and calls in Ollama's wire form."""
    if not isinstance(reply, dict):
        return str(reply), []
    calls = []
    for i, call in enumerate(reply.get("tool_calls") or []):
        fn = call.get("function", call)
        calls.append({"function": {"index": i, "name": fn["name"], "arguments": dict(fn.get("arguments") or {})}})
    return str(reply.get("content") or ""), calls


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    fake: FakeOllama

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind's getfqdn() reverse lookup (slow without DNS).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.fake.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    ROUTES = {
        ("GET", "/"): "_root", ("GET", "/api/version"): "_version", ("GET", "/api/tags"): "_tags",
        ("GET", "/api/ps"): "_ps", ("POST", "/api/show"): "_show", ("POST", "/api/pull"): "_pull",
        ("POST", "/api/chat"): "_chat", ("POST", "/api/generate"): "_generate",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: no request logging

    @property
    def fake(self) -> FakeOllama:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self.fake._record(self.path, "HEAD", None)
        self._send_bytes(200, "text/plain; charset=utf-8", b"Ollama is running", head=True)

    # ----------------------------------------------------------------- plumbing
    def _dispatch(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw) if raw else None
        path = self.path.split("?", 1)[0]
        self.fake._record(path, method, body)
        try:
            while self.fake.hang:  # until stop(), the client leaves, or a test clears it
                self._pause(0.02)
            route = self.ROUTES.get((method, path))
            if route is None:
                self._send_bytes(404, "text/plain", b"404 page not found")
            elif method == "POST" and not isinstance(body, dict):
                self._error(400, "missing request body" if not raw else "invalid request body")
            else:
                getattr(self, route)(body or {})
        except (_ClientGone, _Stopping):
            self.close_connection = True

    def _send_bytes(self, status: int, ctype: str, data: bytes, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self._write(data)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send_bytes(status, "application/json; charset=utf-8", json.dumps(obj).encode())

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)  # unbuffered socket writer: one sendall per call
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClientGone from exc

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_line(self, obj: Any) -> None:
        line = json.dumps(obj).encode() + b"\n"
        self._write(b"%x\r\n%s\r\n" % (len(line), line))

    def _end_stream(self) -> None:
        self._write(b"0\r\n\r\n")

    def _client_gone(self) -> bool:
        """True when the peer closed/reset (readable with EOF); no request is pipelined here."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _pause(self, seconds: float) -> None:
        """Sleep, but notice stop() and a departed client promptly."""
        deadline = time.monotonic() + seconds
        while True:
            if self.fake._stopping.is_set():
                raise _Stopping
            if self._client_gone():
                raise _ClientGone
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.01))

    def _reset(self) -> None:
        """Abort the connection with RST (SO_LINGER 0 + close)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.rfile.close()  # drops the last makefile reference: the fd really closes now

    # ------------------------------------------------------------------- routes
    def _root(self, _body: dict[str, Any]) -> None:
        self._send_bytes(200, "text/plain; charset=utf-8", b"Ollama is running")

    def _version(self, _body: dict[str, Any]) -> None:
        self._send_json(200, {"version": VERSION})

    def _tags(self, _body: dict[str, Any]) -> None:
        models = [{"name": m, "model": m, "modified_at": "2025-01-01T00:00:00Z", "size": MODEL_SIZE,
                   "digest": _digest(m), "details": _details(m)} for m in list(self.fake.models)]
        self._send_json(200, {"models": models})

    def _ps(self, _body: dict[str, Any]) -> None:
        self._send_json(200, {"models": self.fake._loaded_models()})

    def _show(self, body: dict[str, Any]) -> None:
        model = body.get("model") or body.get("name") or ""
        if not self.fake.has_model(model):
            return self._error(404, f"model '{model}' not found")
        family = _family(model)
        self._send_json(200, {
            "license": "", "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model}\n',
            "parameters": 'stop "<end_of_turn>"\ntemperature 1', "template": "{{ .Prompt }}",
            "details": _details(model), "capabilities": ["completion"],
            "model_info": {"general.architecture": family, "general.parameter_count": 268098176,
                           f"{family}.context_length": self.fake.context_length},
            "modified_at": "2025-01-01T00:00:00Z",
        })

    def _pull(self, body: dict[str, Any]) -> None:
        model = body.get("model") or body.get("name") or ""
        if not body.get("stream", True):
            if "missing" in model:
                return self._error(500, PULL_MISSING_ERROR)
            self.fake._add_model(model)
            return self._send_json(200, {"status": "success"})
        self._start_stream()
        self._write_line({"status": "pulling manifest"})
        if "missing" in model:
            self._write_line({"error": PULL_MISSING_ERROR})
            return self._end_stream()
        digest = _digest(model)
        for part in range(4):
            self._pause(self.fake.chunk_delay)
            self._write_line({"status": f"pulling {digest[7:19]}", "digest": digest,
                              "total": MODEL_SIZE, "completed": MODEL_SIZE * part // 3})
        for status in ("verifying sha256 digest", "writing manifest"):
            self._write_line({"status": status})
        self.fake._add_model(model)
        self._write_line({"status": "success"})
        self._end_stream()

    def _chat(self, body: dict[str, Any]) -> None:
        self._complete("chat", body)

    def _generate(self, body: dict[str, Any]) -> None:
        self._complete("generate", body)

    # --------------------------------------------------------------- generation
    def _complete(self, kind: str, body: dict[str, Any]) -> None:
        fake, model = self.fake, body.get("model") or ""
        if not model:
            return self._error(400, "model is required")
        if not fake.has_model(model):
            return self._error(404, f'model "{model}" not found, try pulling it first')
        tools = body.get("tools") if kind == "chat" else None
        if tools and fake.without_tools(model):
            return self._error(400, f"{_registry_name(model)} does not support tools")
        if fake.fail_status is not None:
            return self._error(fake.fail_status, _status_text(fake.fail_status))
        keep_alive = _keep_alive_seconds(body.get("keep_alive"))
        fake._touch(model, keep_alive)  # shows in /api/ps until it expires (keep_alive 0: at once)
        messages = body.get("messages") or []
        if (kind == "chat" and not messages) or (kind == "generate" and not body.get("prompt")):
            reason = "unload" if keep_alive == 0 else "load"
            return self._send_json(200, {**self._piece(kind, model, ""), "done": True, "done_reason": reason})
        text, calls = _reply_parts(fake._next_reply(model))
        if kind == "chat" and messages[-1].get("role") == "assistant":
            prefix = messages[-1].get("content") or ""
            text = text[len(prefix):] if prefix and text.startswith(prefix) else text
        options = body.get("options") or {}
        for stop in options.get("stop") or []:  # like Ollama: cut before a stop sequence
            text = text.split(stop, 1)[0] if isinstance(stop, str) and stop else text
        pieces, reason = split_pieces(text, fake.chunk_words), "stop"
        limit = options.get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(pieces):
            pieces, reason = pieces[:limit], "length"
        calls = calls if tools and reason == "stop" else []
        if kind == "chat":
            prompt_count = sum(_words(m.get("content")) + 4 for m in messages)
        else:
            prompt_count = _words(body.get("prompt")) + _words(body.get("system")) + 4
        stats = {"done": True, "done_reason": reason, "prompt_eval_count": prompt_count,
                 "prompt_eval_duration": prompt_count * 100_000, "eval_count": len(pieces),
                 "eval_duration": len(pieces) * 1_000_000, "load_duration": 1_000_000}
        send = self._stream_reply if body.get("stream", True) else self._whole_reply
        send(kind, model, pieces, stats, calls)

    def _piece(self, kind: str, model: str, piece: str) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "created_at": _now_iso()}
        if kind == "chat":
            out["message"] = {"role": "assistant", "content": piece}
        else:
            out["response"] = piece
        return out

    def _paced(self, pieces: list[str]) -> Iterator[str]:
        """Yield pieces with the configured delays, raising injected faults on cue."""
        fake = self.fake
        for i, piece in enumerate(pieces):
            self._pause(fake.first_token_delay if i == 0 else fake.chunk_delay)
            self._check_fault(i)
            yield piece
        self._check_fault(len(pieces))

    def _check_fault(self, sent: int) -> None:
        fake = self.fake
        if fake.error_after_chunks is not None and sent >= fake.error_after_chunks:
            raise _InStreamError(fake.error_message)
        if fake.reset_after_chunks is not None and sent >= fake.reset_after_chunks:
            raise _Reset

    def _final(self, kind: str, model: str, content: str, stats: dict[str, Any], t0: int) -> dict[str, Any]:
        total = max(time.monotonic_ns() - t0, 1)
        return {**self._piece(kind, model, content), **stats, "total_duration": total}

    def _stream_reply(self, kind: str, model: str, pieces: list[str], stats: dict[str, Any],
                      calls: list[dict[str, Any]]) -> None:
        fake, t0, outcome = self.fake, time.monotonic_ns(), ""
        fake._stream_event(+1)
        try:
            self._start_stream()
            for piece in self._paced(pieces):
                self._write_line(self._piece(kind, model, piece))
            if calls:  # as Ollama does: the parsed calls in their own message, then the final line
                line = self._piece(kind, model, "")
                line["message"]["tool_calls"] = calls
                self._write_line({**line, "done": False})
            self._write_line(self._final(kind, model, "", stats, t0))
            self._end_stream()
            outcome = "completed"
        except _InStreamError as exc:
            self._write_line({"error": str(exc)})
            self._end_stream()
        except _Reset:
            self._reset()
        except _ClientGone:
            outcome = "disconnect"
            raise
        finally:
            fake._stream_event(-1, outcome)

    def _whole_reply(self, kind: str, model: str, pieces: list[str], stats: dict[str, Any],
                     calls: list[dict[str, Any]]) -> None:
        t0 = time.monotonic_ns()
        try:
            content = "".join(self._paced(pieces))
        except _InStreamError as exc:
            return self._error(500, str(exc))
        except _Reset:
            return self._reset()
        final = self._final(kind, model, content, stats, t0)
        if calls:
            final["message"]["tool_calls"] = calls
        self._send_json(200, final)


def _status_text(status: int) -> str:
    with contextlib.suppress(ValueError):
        return HTTPStatus(status).phrase.lower()
    return "error"


class FakeOllama:
    """A fake Ollama server on 127.0.0.1 (``port=0``: a free port), started by ``start()``.

    Switches (plain attributes, read per request, so tests may flip them at any time):
    ``models`` served/accepted names (``x`` == ``x:latest``); ``reply``/``replies`` (per model)/
    ``queue`` (scripted, popped per chat/generate; each a str or ``{"content", "tool_calls"}``);
    ``no_tools`` (models that answer 400 to a request with ``tools``); ``chunk_words``, ``first_token_delay``,
    ``chunk_delay`` (pacing); faults ``fail_status`` (HTTP error before streaming),
    ``error_after_chunks`` (in-stream ``{"error"}`` line, or HTTP 500 when not streaming),
    ``reset_after_chunks`` (TCP RST), ``hang`` (every request except HEAD waits until stop()
    or until cleared).  Records: ``requests``, ``disconnects``, ``completed_streams`` and
    ``active_streams`` (chat/generate streams only), ``errors`` (bugs inside the fake).
    """

    def __init__(self, models: list[str] | None = None, reply: Reply = "Hello from the fake model.",
                 *, replies: dict[str, Reply] | None = None, queue: list[Reply] | None = None,
                 no_tools: list[str] | None = None,
                 chunk_words: int = 1, first_token_delay: float = 0.0, chunk_delay: float = 0.0,
                 fail_status: int | None = None, error_after_chunks: int | None = None,
                 reset_after_chunks: int | None = None, hang: bool = False, port: int = 0,
                 error_message: str = "an error was encountered while running the model: unexpected EOF",
                 context_length: int = 32768) -> None:
        self.models: list[str] = list(models) if models is not None else ["gemma3:270m"]
        self.reply, self.replies, self.queue = reply, dict(replies or {}), list(queue or [])
        self.no_tools: list[str] = list(no_tools or [])
        self.chunk_words = chunk_words
        self.first_token_delay, self.chunk_delay = first_token_delay, chunk_delay
        self.fail_status, self.error_after_chunks = fail_status, error_after_chunks
        self.reset_after_chunks, self.hang, self.error_message = reset_after_chunks, hang, error_message
        self.context_length, self.port = context_length, port
        self.requests: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []  # unexpected exceptions inside the fake itself
        self.disconnects = self.completed_streams = self.active_streams = 0
        self._loaded: dict[str, float | None] = {}  # model -> expiry (epoch s) or None = forever
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> FakeOllama:
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake, self.port = self, server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"fake-ollama:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = dict(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in conns.values():
            thread.join(timeout=2)
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- helpers
    def without_tools(self, name: str) -> bool:
        return _norm(name) in {_norm(m) for m in list(self.no_tools)}

    def has_model(self, name: str) -> bool:
        return bool(name) and _norm(name) in {_norm(m) for m in list(self.models)}

    def paths(self) -> list[str]:
        """Paths requested so far, in order (convenience for assertions)."""
        return [r["path"] for r in list(self.requests)]

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns[conn] = threading.current_thread()
            else:
                self._conns.pop(conn, None)

    def _record(self, path: str, method: str, body: Any) -> None:
        with self._lock:
            self.requests.append({"path": path, "method": method, "body": body})

    def _next_reply(self, model: str) -> Reply:
        with self._lock:
            if self.queue:
                return self.queue.pop(0)
        if model in self.replies:
            return self.replies[model]
        by_norm = {_norm(k): v for k, v in self.replies.items()}
        return by_norm.get(_norm(model), self.reply)

    def _add_model(self, name: str) -> None:
        with self._lock:
            if not self.has_model(name):
                self.models.append(name)

    def _touch(self, model: str, keep_alive: float | None) -> None:
        with self._lock:
            self._loaded[model] = None if keep_alive is None else time.time() + keep_alive

    def _loaded_models(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            loaded = [(m, exp) for m, exp in self._loaded.items() if exp is None or exp > now]
        far = datetime.now(UTC) + timedelta(days=365 * 100)
        return [{"name": m, "model": m, "size": MODEL_SIZE, "size_vram": MODEL_SIZE, "digest": _digest(m),
                 "details": _details(m), "context_length": self.context_length,
                 "expires_at": (far if exp is None else datetime.fromtimestamp(exp, UTC)).isoformat()}
                for m, exp in loaded]

    def _stream_event(self, delta: int, outcome: str = "") -> None:
        with self._lock:
            self.active_streams += delta
            self.completed_streams += outcome == "completed"
            self.disconnects += outcome == "disconnect"


@contextlib.contextmanager
def fake_ollama(**kw: Any) -> Iterator[FakeOllama]:
    """``with fake_ollama(reply="hi") as fake: ...`` - a started FakeOllama, stopped afterwards."""
    fake = FakeOllama(**kw).start()
    try:
        yield fake
    finally:
        fake.stop()
