"""A stand-in OpenAI-compatible server for tests (stdlib only), on a real socket on 127.0.0.1.

It speaks what llama.cpp's server and vLLM speak: `GET /v1/models`, and `POST /v1/chat/completions` streaming
server-sent events (`data: {chunk}` lines, `data: [DONE]` at the end), with `choices[0].delta.content` pieces, tool
calls streamed in fragments by index, a `finish_reason`, and a usage chunk when `stream_options.include_usage`
asks for it. Faults are attributes: `status` (answer every completion with that HTTP status and an OpenAI error
body), `cut_after` (reset the connection after N pieces), `garbage` (send a data line that is not JSON),
`hold` (stream nothing until released), `no_usage` (no usage chunk). `requests` records every completion body;
`gone` counts streams the client closed before the end.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "test"}
                                                        for m in fake.models]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        fake.requests.append(body)
        if fake.status:
            self._json(fake.status, {"error": {"message": fake.error, "type": "server_error"}})
            return
        if body.get("model") not in fake.models:
            self._json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist",
                                       "type": "invalid_request_error", "code": "model_not_found"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self._stream(fake, body)
        except (BrokenPipeError, ConnectionResetError):
            fake.gone += 1

    def _event(self, obj: Any) -> None:
        self.wfile.write(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")
        self.wfile.flush()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.server.fake.models[0], "choices": [{"index": 0, "delta": delta,
                                                                  "finish_reason": finish}]}

    def _stream(self, fake: FakeOpenAI, body: dict[str, Any]) -> None:
        fake.held.wait()
        words = fake.reply.split(" ")[: int(body.get("max_tokens") or 1 << 30)]
        self._event(self._chunk({"role": "assistant", "content": ""}))
        for i, word in enumerate(words):
            if fake.cut_after is not None and i >= fake.cut_after:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # a reset, as a server that died mid-answer
                return
            if fake.garbage and i == 1:
                self._event(b"{not json")
            self._event(self._chunk({"content": word if i == 0 else " " + word}))
            if fake.delay:
                time.sleep(fake.delay)
        calls = fake.tool_calls if body.get("tools") else []
        for index, call in enumerate(calls):
            text = call["arguments"] if isinstance(call["arguments"], str) else json.dumps(call["arguments"])
            half = len(text) // 2  # arguments in two fragments, as engines stream them
            self._event(self._chunk({"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                                                     "function": {"name": call["name"], "arguments": text[:half]}}]}))
            self._event(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": text[half:]}}]}))
        finish = "tool_calls" if calls else ("length" if len(words) == body.get("max_tokens") else "stop")
        self._event(self._chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage") and not fake.no_usage:
            prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
            self._event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                         "model": fake.models[0], "choices": [],
                         "usage": {"prompt_tokens": prompt, "completion_tokens": len(words),
                                   "total_tokens": prompt + len(words)}})
        self._event(b"[DONE]")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class FakeOpenAI:
    """A started stand-in server: `url` is its API root (…/v1)."""

    def __init__(self, models: list[str] | None = None, reply: str = "Hello from the stand-in engine.") -> None:
        self.models = models or ["gemma-test"]
        self.reply = reply
        self.tool_calls: list[dict[str, Any]] = []
        self.status = 0
        self.error = "the engine failed"
        self.cut_after: int | None = None
        self.garbage = False
        self.no_usage = False
        self.delay = 0.0
        self.held = threading.Event()
        self.held.set()
        self.requests: list[dict[str, Any]] = []
        self.gone = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.held.set()
        self._server.shutdown()
        self._server.server_close()
