"""Who an HTTP request is: a token's user or process, else the OS user owning the client's socket.

A user's token (`aios token`) is kept in `AIOS_HOME/http-tokens.json` (mode 0600, replaced whole); a process's
lives while it does (`run ext` gives one to its child). Calls of a user (by token or uid) are a session's: one
`client` process per user and client program, ended after `SESSION_IDLE_S` without a call (while a call streams
it stays). The uid comes from the kernel's own table of sockets (/proc/net/tcp), as SO_PEERCRED gives it on the
Unix socket; a sandbox uid is nobody's login, so a program in the sandbox must use its token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request

from kernel.sanitize import strip_controls
from kernel.server import login_name

if TYPE_CHECKING:
    from kernel.kernel import Kernel
    from kernel.process import Process

SESSION_IDLE_S = 300.0


class HttpError(Exception):
    """A refusal, with the HTTP status the API defines for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _endpoint(hexed: str) -> tuple[str, int]:
    """An address of /proc/net/tcp{,6} (`0100007F:1F90`) as (ip, port)."""
    ip, _, port = hexed.partition(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # four host-order words
    text = socket.inet_ntop(socket.AF_INET6, words)
    return (text[7:] if text.startswith("::ffff:") else text), int(port, 16)


def peer_uid(host: str, port: int, server_port: int) -> int | None:
    """The uid owning the client end of a connection to this machine's `server_port` (the kernel's table of
    sockets, /proc/net/tcp), or None when it is not found (not a local peer)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 8:
                continue
            with contextlib.suppress(ValueError):
                if _endpoint(fields[1]) == (host, port) and _endpoint(fields[2])[1] == server_port:
                    return int(fields[7])
    return None


class Callers:
    """The tokens and sessions of one kernel's HTTP front."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._tokens_file = Path(kernel.config.home) / "http-tokens.json"
        self._proc_tokens: dict[str, int] = {}  # a process's token -> its pid
        self._sessions: dict[tuple[str, str], Process] = {}
        self._idle: dict[int, asyncio.TimerHandle] = {}
        self._tokens: tuple[tuple[int, int] | None, dict[str, str]] = (None, {})  # (mtime, size) when read, and what

    def close(self) -> None:
        for handle in self._idle.values():
            handle.cancel()

    def _user_tokens(self) -> dict[str, str]:
        """The users' tokens as the file has them: read again only when it changed (not on every request)."""
        try:
            st = self._tokens_file.stat()
        except OSError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._tokens[0] != stamp:
            try:
                data = json.loads(self._tokens_file.read_text())
            except (OSError, ValueError):
                data = {}
            self._tokens = (stamp, {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {})
        return dict(self._tokens[1])

    def user_token(self, user: str, new: bool = False) -> str:
        """`user`'s token (made on first use; `new` makes another, and the old one stops working)."""
        tokens = self._user_tokens()
        if new or user not in tokens:
            tokens[user] = "aios-" + secrets.token_urlsafe(24)
            tmp = self._tokens_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(tokens, f)
            os.replace(tmp, self._tokens_file)
        return tokens[user]

    def process_token(self, proc: Process) -> str:
        """A token that makes a client's calls `proc`'s (for as long as it lives)."""
        token = "aios-p-" + secrets.token_urlsafe(24)
        self._proc_tokens[token] = proc.pid
        return token

    def who(self, request: Request, server_port: int | None) -> Process:
        """The process a request's calls are made for: its token's, else its OS user's (the peer's uid)."""
        token = request.path_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if not token:
            uid = peer_uid(request.client.host, request.client.port, server_port) \
                if request.client is not None and server_port is not None else None
            if uid is None or self.kernel.sandbox.is_sandbox_uid(uid):  # a sandboxed program has its own token
                raise HttpError(401, "no token, and the caller is no user of this machine: use `aios token` as the "
                                     "bearer (or /t/TOKEN/…), or run the program with `run ext -- CMD`")
            return self._session(login_name(uid), self._client_name(request))
        pid = self._proc_tokens.get(token)
        if pid is not None:
            proc = self.kernel.procs.get(pid)
            if proc is None or not proc.alive:
                raise HttpError(410, f"process {pid} has exited")
            return proc
        user = next((u for u, t in self._user_tokens().items() if secrets.compare_digest(t, token)), None)
        if user is None:
            raise HttpError(401, "that token is not a token of this kernel")
        return self._session(user, self._client_name(request))

    @staticmethod
    def _client_name(request: Request) -> str:
        """The client program, as it names itself (`X-Aios-Program`, else its User-Agent's first word)."""
        client = request.headers.get("x-aios-program") or request.headers.get("user-agent", "client").split("/")[0]
        return strip_controls(client)[:40].strip() or "client"

    def _session(self, user: str, client: str) -> Process:
        from kernel.syscall import Pipe

        key = (user, client)
        proc = self._sessions.get(key)
        if proc is None or not proc.alive:
            proc = self.kernel.spawn("client", [client], user=user, stdin=Pipe())
            self._sessions[key] = proc
        if (handle := self._idle.pop(proc.pid, None)) is not None:
            handle.cancel()
        self._idle[proc.pid] = asyncio.get_running_loop().call_later(SESSION_IDLE_S, self._end, proc)
        return proc

    def _end(self, proc: Process) -> None:
        self._idle.pop(proc.pid, None)
        if proc.inflight:  # a call still streams: idle is counted from its end
            self._idle[proc.pid] = asyncio.get_running_loop().call_later(SESSION_IDLE_S, self._end, proc)
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the session's program ends at end-of-file
