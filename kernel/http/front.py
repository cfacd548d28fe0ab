"""aios as a model server: the Ollama API and the OpenAI API on 127.0.0.1, every client an aios process.

    aios serve --http 127.0.0.1:11435        (or AIOS_HTTP=127.0.0.1:11435 for any aios that hosts the kernel)

Routes: `/api/chat`, `/api/generate` (NDJSON streaming), `/api/tags`, `/api/show`, `/api/ps`, `/api/version`;
`/v1/chat/completions` (server-sent events, tool calls), `/v1/models`. Each also under `/t/TOKEN/…`, for clients
that can be given a base URL but no header (the `ollama` client); else the token is the bearer
(`Authorization: Bearer TOKEN`, the `openai` client's api key).

Who calls is the OS's word or the token's. A request with no token is its OS user's: the uid owning the client's
socket (the kernel's own table, /proc/net/tcp), as the Unix socket takes the peer's credentials; a program in the
sandbox (a sandbox uid) must use its token. A token is a user's own (`aios token`, kept in
`AIOS_HOME/http-tokens.json`, mode 0600), or a process's (`run ext -- CMD` gives its child one, with
`OLLAMA_HOST` and `OPENAI_BASE_URL` pointing here). A process's token makes its calls that process's; a user's
token, or their uid, makes them a session's: one `client` process per user and client program (named by
`X-Aios-Program`, else the User-Agent's first word), ended after `callers.SESSION_IDLE_S` without a call. So every call
passes the scheduler, quotas and accounting, shows in `ps`, `top` and `sched`; a stopped process's stream
pauses, a killed one's ends with an error its client library raises.

Bad input is the status the API defines and one `dmesg` line: a body that is not JSON or not valid (400), over
`MAX_BODY` (413), no or a wrong token (401), an unknown model (404), a process that has ended (410), a user at
their process limit (429); more than `MAX_CONNECTIONS` connections at once get 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from kernel.errors import KernelError, ResourceLimit
from kernel.http import formats
from kernel.http.callers import Callers, HttpError
from kernel.http.formats import BadRequest

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.process import Process

MAX_BODY = 8 << 20
MAX_CONNECTIONS = 256  # at once; past it a client gets 503 and the kernel goes on
VERSION = "0.12.0"  # the Ollama API version this front speaks


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, or `PORT`) on this machine; ValueError with a line otherwise."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"{text}: the HTTP front listens on this machine only (127.0.0.1)")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text}: expected HOST:PORT, e.g. 127.0.0.1:11435")
    return ("127.0.0.1" if host == "localhost" else host), int(port)


class _Server:
    """uvicorn's server without its signal handlers (the shell owns Ctrl-C)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.server = Quiet(uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False,
                                           timeout_graceful_shutdown=1, limit_concurrency=MAX_CONNECTIONS))
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]), name="http-front")

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)


class Front:
    """The HTTP front of one kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.address: tuple[str, int] | None = None
        self._server: _Server | None = None
        self.callers = Callers(kernel)
        self._lock = asyncio.Lock()
        self.requests = 0

    def user_token(self, user: str, new: bool = False) -> str:
        return self.callers.user_token(user, new)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.address is None:
            raise RuntimeError("the HTTP front is not running")
        return f"http://{self.address[0]}:{self.address[1]}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (0: a free port); returns the URL. OSError (one line) when it cannot."""
        async with self._lock:
            if self._server is not None:
                return self.url
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # answers are many small writes (a line a token): no Nagle delay behind a client's delayed ACK
            # (Linux gives accepted sockets the listening socket's TCP_NODELAY)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                raise OSError(f"the HTTP front cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            sock.listen(128)
            sock.setblocking(False)
            self.address = (host, sock.getsockname()[1])
            self._server = _Server(self._app(), sock)
            while not self._server.server.started and not self._server.task.done():
                await asyncio.sleep(0.01)
            self.kernel.kmsg.write("info", f"http: serving the Ollama and OpenAI APIs at {self.url}")
            return self.url

    async def stop(self) -> None:
        self.callers.close()
        if self._server is not None:
            await self._server.stop()
            self._server = None

    # -- tokens --------------------------------------------------------------------------------------
    def client_env(self, proc: Process) -> dict[str, str]:
        """What an outside program needs to call the model as `proc`: the Ollama and OpenAI clients' settings."""
        token = self.callers.process_token(proc)
        base = f"{self.url}/t/{token}"
        return {"OLLAMA_HOST": base, "OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEY": token, "AIOS_TOKEN": token,
                "AIOS_MODEL": self.kernel.backend.model}

    # -- the app ---------------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        routes = [Route("/api/chat", self.chat, methods=["POST"]),
                  Route("/api/generate", self.generate, methods=["POST"]),
                  Route("/api/tags", self.tags, methods=["GET"]), Route("/api/show", self.show, methods=["POST"]),
                  Route("/api/ps", self.ps, methods=["GET"]), Route("/api/version", self.version, methods=["GET"]),
                  Route("/v1/chat/completions", self.completions, methods=["POST"]),
                  Route("/v1/models", self.models, methods=["GET"])]
        return Starlette(routes=[Route("/", self.root), *routes, Mount("/t/{token}", routes=routes)])

    def _fail(self, request: Request, status: int, message: str, openai: bool) -> JSONResponse:
        peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
        self.kernel.kmsg.write("warning", f"http: {status} to {peer} {request.url.path.split('/t/')[0] or '/'}"
                                          f"{'' if '/t/' not in request.url.path else '…'}: {message}")
        if openai:
            kind = {401: "authentication_error", 404: "not_found_error"}.get(status, "invalid_request_error")
            return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status)
        return JSONResponse({"error": message}, status)

    async def _body(self, request: Request) -> dict[str, Any]:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY:
            raise HttpError(413, f"the body is over {MAX_BODY >> 20} MiB")
        data = bytearray()
        async for piece in request.stream():
            data += piece
            if len(data) > MAX_BODY:
                raise HttpError(413, f"the body is over {MAX_BODY >> 20} MiB")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body

    def _model(self, name: Any) -> str:
        model = self.kernel.backend.model
        if name in (None, "", model, "aios") or (isinstance(name, str) and name.split(":")[0] == model):
            return model
        raise HttpError(404, f"model '{str(name)[:100]}' not found; this kernel serves '{model}'")

    async def root(self, request: Request) -> Response:
        return Response("aios is running", media_type="text/plain")

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": VERSION})

    def _entry(self) -> dict[str, Any]:
        model = self.kernel.backend.model
        return {"name": model, "model": model, "modified_at": formats.now_iso(), "size": 0, "digest": "",
                "details": {"format": "gguf", "family": self.kernel.backend.name, "parameter_size": "",
                            "quantization_level": ""}}

    async def tags(self, request: Request) -> Response:
        return await self._guarded(request, False, lambda proc: JSONResponse({"models": [self._entry()]}))

    async def ps(self, request: Request) -> Response:
        return await self._guarded(request, False, lambda proc: JSONResponse({"models": [
            {**self._entry(), "size_vram": 0, "expires_at": None, "context_length":
             self.kernel.backend.context_window}]}))

    async def show(self, request: Request) -> Response:
        async def answer(proc: Process) -> Response:
            body = await self._body(request)
            self._model(body.get("model", body.get("name")))
            return JSONResponse({"modelfile": "", "parameters": "", "template": "", "details": self._entry()["details"],
                                 "model_info": {"context_length": self.kernel.backend.context_window},
                                 "capabilities": ["completion", "tools"]})
        return await self._guarded(request, False, answer)

    async def models(self, request: Request) -> Response:
        return await self._guarded(request, True, lambda proc: JSONResponse({"object": "list", "data": [
            {"id": self.kernel.backend.model, "object": "model", "created": int(self.kernel.boot_time),
             "owned_by": "aios"}]}))

    async def _guarded(self, request: Request, openai: bool, answer: Any) -> Response:
        """Run `answer(proc)` for the request's caller; every refusal is the API's error and one dmesg line."""
        self.requests += 1
        try:
            proc = self.callers.who(request, self.address[1] if self.address else None)
            out = answer(proc)
            return await out if asyncio.iscoroutine(out) else out
        except HttpError as exc:
            return self._fail(request, exc.status, str(exc), openai)
        except BadRequest as exc:
            return self._fail(request, 400, str(exc), openai)
        except KernelError as exc:  # no session for this user now (its process limit), …
            return self._fail(request, 429 if isinstance(exc, ResourceLimit) else 403, str(exc), openai)

    # -- model calls ---------------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        return await self._guarded(request, False, lambda proc: self._ollama(request, proc, generate=False))

    async def generate(self, request: Request) -> Response:
        return await self._guarded(request, False, lambda proc: self._ollama(request, proc, generate=True))

    async def completions(self, request: Request) -> Response:
        return await self._guarded(request, True, lambda proc: self._openai(request, proc))

    def _call(self, proc: Process, llm_request: Any) -> tuple[asyncio.Task[Any], asyncio.Queue[str]]:
        pieces: asyncio.Queue[str] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(
            self.kernel.syscall_llm(proc, llm_request, on_text=pieces.put_nowait), name=f"http-call-{proc.pid}")
        return task, pieces

    @staticmethod
    async def _pieces(proc: Process, task: asyncio.Task[Any], pieces: asyncio.Queue[str]) -> AsyncIterator[str]:
        """The answer's pieces as they come, until the call ends or its process does (killed: its call is
        dropped, and the call gives up)."""
        ended = asyncio.ensure_future(proc.exited.wait())
        try:
            while True:
                getter = asyncio.ensure_future(pieces.get())
                await asyncio.wait({getter, task, ended}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                if ended.done() and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                while not pieces.empty():
                    yield pieces.get_nowait()
                return
        finally:
            ended.cancel()

    def _ended(self, proc: Process, task: asyncio.Task[Any]) -> str | None:
        """Why a call gave no answer (None when it did)."""
        if task.cancelled():
            sig = proc.term_signal
            return f"aios process {proc.pid} was ended" + (f" by signal {sig}" if sig else "")
        exc = task.exception()
        return None if exc is None else " ".join(str(exc).split()) or type(exc).__name__

    async def _ollama(self, request: Request, proc: Process, generate: bool) -> Response:
        body = await self._body(request)
        model = self._model(body.get("model"))
        llm_request = formats.ollama_request(body, generate=generate)
        started = time.perf_counter()
        task, pieces = self._call(proc, llm_request)
        if body.get("stream", True) is False:
            text = "".join([p async for p in self._pieces(proc, task, pieces)])
            if (why := self._ended(proc, task)) is not None:
                return JSONResponse({"error": why}, 500)
            return JSONResponse(formats.ollama_final(model, task.result(), generate, started, text))

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for piece in self._pieces(proc, task, pieces):
                    yield (json.dumps(formats.ollama_piece(model, piece, generate)) + "\n").encode()
                why = self._ended(proc, task)
                last = {"error": why} if why is not None else formats.ollama_final(model, task.result(), generate,
                                                                                    started)
                yield (json.dumps(last) + "\n").encode()
            finally:
                task.cancel()  # the client went away: the call gives up its slot

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def _openai(self, request: Request, proc: Process) -> Response:
        body = await self._body(request)
        model = self._model(body.get("model"))
        llm_request = formats.openai_request(body)
        ident = "chatcmpl-" + secrets.token_hex(12)
        task, pieces = self._call(proc, llm_request)
        if not body.get("stream"):
            async for _ in self._pieces(proc, task, pieces):
                pass
            if (why := self._ended(proc, task)) is not None:
                return JSONResponse({"error": {"message": why, "type": "server_error", "code": None}}, 500)
            return JSONResponse(formats.openai_whole(ident, model, task.result()))
        usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            try:
                yield _sse(formats.openai_chunk(ident, model, {"role": "assistant", "content": ""}))
                async for piece in self._pieces(proc, task, pieces):
                    yield _sse(formats.openai_chunk(ident, model, {"content": piece}))
                why = self._ended(proc, task)
                if why is not None:
                    yield _sse({"error": {"message": why, "type": "server_error", "code": None}})
                    return
                for chunk in formats.openai_tail(ident, model, task.result(), usage):
                    yield _sse(chunk)
                yield b"data: [DONE]\n\n"
            finally:
                task.cancel()

        return StreamingResponse(events(), media_type="text/event-stream")


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"
