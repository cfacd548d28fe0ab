"""The kernel's API on the wire: length-prefixed JSON frames over the Unix socket in AIOS_HOME.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON, one object. The client speaks first:
`{"aios": PROTOCOL, "user": NAME?}`; the kernel answers `{"aios": PROTOCOL, "user": …, "admin": …, …}` or
`{"error": …}` and closes. Then each request carries an `id` that its reply (`result` or `error`) repeats; frames
without an `id` (`out`, `err`, `events`, `lost`, `gone`) are the kernel speaking on its own; `events` holds the
events of one turn of the kernel's loop, in order (a client reads them as one `event` frame each).

`Connection` is the client end, for any Python program: `await Connection.open(home)`, `await conn.call("ps")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

PROTOCOL = 1
MAX_FRAME = 1 << 20  # bytes in one frame, either way; a longer one is refused and the connection closed
HEADER = struct.Struct(">I")
SOCKET_NAME = "kernel.sock"


class WireError(Exception):
    """The other end broke the protocol (a frame too long, not JSON, not an object) or went away."""


class RemoteError(Exception):
    """The kernel refused a request; the message says why, as it would in-process."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    if len(body) > MAX_FRAME:
        raise WireError(f"a frame of {len(body)} bytes is over the limit of {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, timeout: float | None = None,
                     idle: float | None = None) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream. `idle` bounds the wait for a frame to begin, `timeout`
    the time from its first byte to its last (half a frame and then silence is a broken client)."""
    try:
        first = await asyncio.wait_for(reader.readexactly(1), idle)
    except asyncio.IncompleteReadError:
        return None
    except TimeoutError:
        raise WireError(f"no frame within {idle:g}s") from None
    try:
        rest = await asyncio.wait_for(_rest(reader, first), timeout)
    except asyncio.IncompleteReadError:
        raise WireError("the connection closed inside a frame") from None
    except TimeoutError:
        raise WireError(f"a frame was not finished within {timeout:g}s") from None
    try:
        message = json.loads(rest.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"a frame that is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(message, dict):
        raise WireError("a frame that is not a JSON object")
    return message


async def _rest(reader: asyncio.StreamReader, first: bytes) -> bytes:
    (length,) = HEADER.unpack(first + await reader.readexactly(HEADER.size - 1))
    if length > MAX_FRAME:
        raise WireError(f"a frame of {length} bytes is over the limit of {MAX_FRAME}")
    return await reader.readexactly(length)


def socket_path(home: Path | str) -> Path:
    return Path(home) / SOCKET_NAME


def short_path(path: Path) -> str:
    """`path` as `bind`/`connect` can take it: AF_UNIX names are at most 107 bytes, so a longer one is reached
    through the directory's open descriptor (`/proc/self/fd/N/NAME`, Linux); the caller closes nothing — the
    descriptor stays open for the process's life, one per directory."""
    text = os.fsencode(path)
    if len(text) < 100:
        return str(path)
    fd = _dir_fds.get(path.parent)
    if fd is None:
        fd = _dir_fds[path.parent] = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{path.name}"


_dir_fds: dict[Path, int] = {}


class Connection:
    """A client's connection to the kernel of one AIOS_HOME."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict[str, Any]) -> None:
        self.reader = reader
        self.writer = writer
        self.hello = hello  # what the kernel said of itself and of who we are
        self._ids = iter(range(1, 1 << 62))
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.unsolicited: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # frames without an id; None: gone
        self._reader_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @property
    def user(self) -> str:
        return str(self.hello.get("user", ""))

    @classmethod
    async def open(cls, home: Path | str, user: str | None = None, timeout: float = 10.0) -> Connection:
        """Connect and say hello. Raises FileNotFoundError or ConnectionRefusedError when no kernel listens,
        RemoteError when the kernel refuses us (another protocol version, a user we may not act as)."""
        path = socket_path(home)
        reader, writer = await asyncio.open_unix_connection(short_path(path), limit=MAX_FRAME + HEADER.size)
        try:
            hello: dict[str, Any] = {"aios": PROTOCOL}
            if user:
                hello["user"] = user
            writer.write(encode(hello))
            answer = await read_frame(reader, timeout=timeout, idle=timeout)
            if answer is None:
                raise WireError("the kernel closed the connection before it said hello")
            if "error" in answer:
                raise RemoteError(str(answer["error"]), str(answer.get("kind", "")))
        except BaseException:
            writer.close()
            raise
        conn = cls(reader, writer, answer)
        conn._reader_task = asyncio.get_running_loop().create_task(conn._read_all(), name="aios-connection")
        return conn

    def send(self, message: dict[str, Any]) -> None:
        if self.closed.is_set():
            raise WireError("the kernel has gone")
        self.writer.write(encode(message))

    def request(self, message: dict[str, Any]) -> tuple[int, asyncio.Future[Any]]:
        """Send a request; its reply frame lands in the future returned."""
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        self.send({**message, "id": rid})
        return rid, future

    async def call(self, method: str, **args: Any) -> Any:
        """Call API method `method` as the caller the kernel took from the socket; its result as JSON."""
        return await self.call_op("call", method=method, args=args)

    async def call_op(self, op: str, **fields: Any) -> Any:
        """Send request `op` and wait for its reply: the result, or RemoteError."""
        _, future = self.request({"op": op, **fields})
        reply = await future
        if "error" in reply:
            raise RemoteError(str(reply["error"]), str(reply.get("kind", "")))
        return reply.get("result")

    async def events(self, *types: str) -> AsyncIterator[dict[str, Any]]:
        """The kernel's events this caller may see, as dicts (`Event.from_dict` makes them events again)."""
        _, future = self.request({"op": "events", "types": list(types)})
        reply = await future
        if "error" in reply:
            raise RemoteError(str(reply["error"]), str(reply.get("kind", "")))
        while True:
            frame = await self.unsolicited.get()
            if frame is None:
                return
            if "event" in frame:
                yield frame["event"]

    async def _read_all(self) -> None:
        try:
            while True:
                frame = await read_frame(self.reader)
                if frame is None:
                    break
                rid = frame.get("id")
                future = self._waiting.pop(rid, None) if isinstance(rid, int) else None
                if future is not None:
                    if not future.done():
                        future.set_result(frame)
                elif isinstance(frame.get("events"), list):  # a turn of the kernel's loop: one frame each
                    for event in frame["events"]:
                        self.unsolicited.put_nowait({"event": event})
                else:
                    self.unsolicited.put_nowait(frame)
        except (WireError, OSError):
            pass
        finally:
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(WireError("the kernel has gone"))
            self._waiting.clear()
            self.unsolicited.put_nowait(None)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket, from the OS (SO_PEERCRED)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid
