"""Real OpenAI-compatible engines on this machine: `python -m llama_cpp.server` serving the embedded Gemma.

    with llama_server(threads=2) as url:   # url: http://127.0.0.1:PORT/v1, its model named "gemma3-270m"
        ...

The server comes with llama-cpp-python's `[server]` extra (the Makefile installs it). It evaluates one request
at a time (`llama_cpp/server/app.py`: one `llama_outer_lock`), so an endpoint has one slot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ALIAS = "gemma3-270m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weights() -> Path:
    from kernel.llm.llamacpp import default_model_path

    return default_model_path()


class LlamaServer:
    """One `llama_cpp.server` process; `kill()` ends it at once (SIGKILL), as a crash would."""

    def __init__(self, threads: int = 1, n_ctx: int = 8192, model: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model or weights()), "--model_alias", ALIAS,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_up(self, timeout: float = 120.0) -> LlamaServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {Path(self._log.name).read_text()[-400:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/models", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout:g} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@contextlib.contextmanager
def llama_servers(count: int, threads: int = 1, n_ctx: int = 8192) -> Iterator[list[LlamaServer]]:
    """`count` servers, started together, up when this yields; stopped after."""
    servers = [LlamaServer(threads=threads, n_ctx=n_ctx) for _ in range(count)]
    try:
        for server in servers:
            server.wait_up()
        yield servers
    finally:
        for server in servers:
            server.close()


@contextlib.contextmanager
def llama_server(threads: int = 1, n_ctx: int = 8192) -> Iterator[str]:
    """One server; yields its API root."""
    with llama_servers(1, threads, n_ctx) as (server,):
        yield server.url
