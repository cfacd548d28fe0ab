"""The crash test's worker: a kernel on the simulated model writing as fast as it can until it is killed.

    python tests/crash/crash_worker.py HOME RUN SEED     one worker run
    python tests/crash/crash_worker.py --serve HOME      a fork server: imports once, then forks one
                                                         worker a line `run RUN SEED` on stdin

Each run boots a kernel on HOME and loops: chat agents (process rows and messages, written behind),
memory notes, file versions, audit rows (direct, and calc calls through the tool syscall). Every
stdout line is about a row already committed — for processes and messages, read back after
`storage.flush()` returned — and is written with one `write(2)`, so a kill never leaves half a line:

    B KERNEL_PID                      booted
    C process PID STATE CODE          process row as committed (CODE: exit code, or -)
    C message ID PID ROLE SHA         a message (SHA: sha1 of its content, 12 hex digits)
    C memory ID TOKEN                 a note whose text holds TOKEN (a word to search for)
    C file PID PATH VERSION SHA256    a file version
    C audit ID HASH                   an audit row and its chain hash

The fork server answers `Z ready` once, then `Z pid RUN PID` after each fork and `Z exit RUN PID
STATUS` (os.waitpid's status) once that worker is gone and reaped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from kernel.kernel import Kernel, KernelConfig, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Process
from kernel.programs import load

USER = "alice"
IDLE_AGENT = "import asyncio\n\n\nasync def main(ctx):\n    await asyncio.Event().wait()\n"
MAX_LIVE = 8  # chat agents alive at once; the rest of the time goes to the other writes
LIFETIME = 30.0  # seconds: a worker nobody kills (its test failed) ends by itself


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


def prepare(home: Path) -> None:
    """The agents the worker runs: `chat` (installed) and `idle` (holds tool calls; never ends)."""
    agents = home / "agents"
    agents.mkdir(parents=True, exist_ok=True)
    if not (agents / "idle.py").is_file():
        (agents / "idle.py").write_text(IDLE_AGENT)
    load("chat", home)  # entry points scanned once, before any fork


class Reporter:
    """Reads back what is committed and says so, once per row (once per state for processes)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.conn = kernel.storage.db.conn
        self.me = os.getpid()
        self.seen_procs: dict[int, tuple[str, Any]] = {}
        self.last_message = self._max("messages")
        self.last_audit = self._max("audit")

    def _max(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])

    def written_behind(self) -> None:
        """Commit the pending batch, then report the process rows and messages it (or a timer) wrote."""
        storage = self.kernel.storage
        errors = storage.write_errors
        storage.flush()
        if storage.write_errors != errors:
            raise RuntimeError(f"flush failed: {storage.last_write_error}")
        for pid, state, code in self.conn.execute(
            "SELECT pid, state, exit_code FROM processes WHERE kernel_pid = ?", [self.me]
        ):
            if self.seen_procs.get(pid) != (state, code):
                self.seen_procs[pid] = (state, code)
                emit(f"C process {pid} {state} {'-' if code is None else code}")
        for mid, pid, role, content in self.conn.execute(
            "SELECT id, pid, role, content FROM messages WHERE id > ? ORDER BY id", [self.last_message]
        ).fetchall():
            emit(f"C message {mid} {pid} {role} {sha1(content)}")
            self.last_message = mid

    def audits(self) -> None:
        for aid, digest in self.conn.execute(
            "SELECT id, hash FROM audit WHERE id > ? ORDER BY id", [self.last_audit]
        ).fetchall():
            emit(f"C audit {aid} {digest}")
            self.last_audit = aid


def sha1(text: str | None) -> str:
    return hashlib.sha1((text or "").encode()).hexdigest()[:12]


async def work(home: Path, run: int, seed: int) -> None:
    rng = random.Random(seed)
    backend = SimulatedBackend(slots=4, decode_tps=300.0, prefill_tps=1e6, seed=seed)
    config = KernelConfig(home=home, backend="simulated", user=USER, admins=frozenset({"root"}), term_grace=0.2)
    kernel = await boot(config, backend=backend)
    emit(f"B {os.getpid()}")
    report = Reporter(kernel)
    host: Process = kernel.spawn("idle")  # the process the audited tool calls belong to
    chats: list[Process] = []
    deadline = time.monotonic() + LIFETIME
    for i in range(1, 1_000_000):
        if time.monotonic() > deadline:
            raise SystemExit("not killed in time")
        chats = [p for p in chats if p.alive]
        if len(chats) < MAX_LIVE:
            size = "long" if rng.random() < 0.25 else "short"
            chats.append(kernel.spawn("chat", [size, f"r{run}", f"i{i}"], nice=rng.randint(0, 10)))
        token = f"tok{run}x{i}"
        note = kernel.memory.add(USER, f"note {token} " + ("password=hunter2" if i % 7 == 0 else "plain"),
                                 tags="crash", pid=host.pid)
        emit(f"C memory {note} {token}")
        path = f"dir{i % 2}/f{i % 3}.txt"
        content = rng.randbytes(rng.randint(0, 4096))
        version = kernel.files.record(host.pid, USER, path, content)
        emit(f"C file {host.pid} {path} {version} {hashlib.sha256(content).hexdigest()}")
        kernel.access.audit(user=USER, pid=host.pid, program="idle", tool="fs.write",
                            args={"path": path, "token": "sk-" + "x" * 24}, decision="allow", by="crash")
        if i % 2 == 0:
            result = await kernel.syscall_tool(host, "calc", {"expression": f"{i} * 7"})
            if not result.ok:
                raise RuntimeError(f"calc failed: {result.error}")
        report.audits()
        report.written_behind()
        await asyncio.sleep(0.002)  # the agents and the flush timer get their turn


def child(home: Path, run: int, seed: int) -> None:
    asyncio.run(work(home, run, seed))


def serve(home: Path) -> None:
    prepare(home)
    emit("Z ready")
    for line in sys.stdin:
        words = line.split()
        if words[:1] != ["run"]:
            break
        run, seed = int(words[1]), int(words[2])
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the server's loop
            code = 1
            try:
                child(home, run, seed)
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        emit(f"Z pid {run} {pid}")
        _, status = os.waitpid(pid, 0)
        emit(f"Z exit {run} {pid} {status}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"] and len(argv) == 2:
        serve(Path(argv[1]))
    elif len(argv) == 3:
        home = Path(argv[0])
        prepare(home)
        child(home, int(argv[1]), int(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
