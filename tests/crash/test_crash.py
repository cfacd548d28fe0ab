"""SIGKILL a kernel subprocess mid-write, 50 times on one AIOS_HOME: nothing it said was committed is lost.

The worker (crash_worker.py) prints a line for every row once it is committed. After each kill the
database must pass `PRAGMA integrity_check` and FTS5's own check, hold every reported row as reported,
and keep an intact audit chain; then a kernel boots on it here: the killed kernel's unfinished
processes — exactly those — become EXITED(lost) with their messages, and `resume` of one of them runs
to the end. Later runs boot on top of the earlier crashes. The first run is a plain subprocess; the
others are forked from a server that has already imported the kernel (an import costs a second).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from kernel.access import AccessControl
from kernel.kernel import KernelConfig, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.recovery import resume
from kernel.storage import Storage

WORKER = Path(__file__).with_name("crash_worker.py")
RUNS = 50
SEED = 20240917
DELAY = (0.05, 1.5)  # seconds from the start of a run to its SIGKILL


class Lines:
    """A pipe's lines, read by a thread so the worker never blocks on a full pipe."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            self.queue.put(raw.decode().rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float = 30.0) -> str | None:
        return self.queue.get(timeout=timeout)


@dataclass
class Ledger:
    """Every row the workers reported committed, as reported."""

    procs: dict[int, tuple[str, str]] = field(default_factory=dict)  # pid → (state, exit code or -)
    messages: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # id → (pid, role, sha1)
    memory: dict[int, str] = field(default_factory=dict)  # id → token in its text
    files: dict[tuple[int, str, int], str] = field(default_factory=dict)  # (pid, path, version) → sha256
    audit: dict[int, str] = field(default_factory=dict)  # id → hash
    checked: int = 0  # row checks done, over all the runs
    lost: int = 0
    resumed: int = 0

    def take(self, line: str) -> None:
        words = line.split()
        if words[:1] != ["C"]:
            return
        kind, rest = words[1], words[2:]
        if kind == "process":
            self.procs[int(rest[0])] = (rest[1], rest[2])
        elif kind == "message":
            self.messages[int(rest[0])] = (int(rest[1]), rest[2], rest[3])
        elif kind == "memory":
            self.memory[int(rest[0])] = rest[1]
        elif kind == "file":
            self.files[(int(rest[0]), rest[1], int(rest[2]))] = rest[3]
        elif kind == "audit":
            self.audit[int(rest[0])] = rest[1]
        else:
            raise AssertionError(f"unknown report: {line}")

    def size(self) -> int:
        return len(self.procs) + len(self.messages) + len(self.memory) + len(self.files) + len(self.audit)


def sha1(text: str | None) -> str:
    return hashlib.sha1((text or "").encode()).hexdigest()[:12]


def check_database(home: Path, ledger: Ledger, killed: int, tokens: list[str]) -> dict[int, int]:
    """Everything reported is there, as reported; returns the unfinished processes (pid → kernel pid)."""
    conn = sqlite3.connect(home / "aios.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('integrity-check', 1)")  # raises if bad

        procs = {pid: (state, "-" if code is None else str(code), lost) for pid, state, code, lost in
                 conn.execute("SELECT pid, state, exit_code, lost FROM processes")}
        for pid, (state, code) in ledger.procs.items():
            assert pid in procs, f"process {pid} was committed and is gone"
            if state == "EXITED":  # an end once committed stays as it was
                assert procs[pid] == (state, code, 0), f"process {pid}: reported EXITED({code}), now {procs[pid]}"
        messages = {mid: (pid, role, sha1(content)) for mid, pid, role, content in
                    conn.execute("SELECT id, pid, role, content FROM messages")}
        for mid, want in ledger.messages.items():
            assert messages.get(mid) == want, f"message {mid}: reported {want}, now {messages.get(mid)}"
        orphans = conn.execute("SELECT count(*) FROM messages WHERE pid NOT IN (SELECT pid FROM processes)")
        assert orphans.fetchone()[0] == 0, "a message of a process whose row was never written"
        notes = dict(conn.execute("SELECT id, text FROM memory"))
        for nid, token in ledger.memory.items():
            assert token in notes.get(nid, ""), f"memory note {nid} ({token}) was committed and is gone"
        for token in tokens:  # the last run's notes are found by search
            found = conn.execute("SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?", [f'"{token}"']).fetchall()
            assert [nid for nid, t in ledger.memory.items() if t == token] == [r[0] for r in found], token
        files = {(pid, path, version): (digest, hashlib.sha256(content).hexdigest()) for pid, path, version, digest,
                 content in conn.execute("SELECT pid, path, version, sha256, content FROM file_versions")}
        for key, digest in ledger.files.items():
            assert files.get(key) == (digest, digest), f"file version {key} was committed and is gone or changed"
        audit = dict(conn.execute("SELECT id, hash FROM audit"))
        for aid, digest in ledger.audit.items():
            assert audit.get(aid) == digest, f"audit row {aid} was committed and is gone or changed"
        ledger.checked += ledger.size()

        unfinished = {pid: kp for pid, kp in conn.execute(
            "SELECT pid, kernel_pid FROM processes WHERE state != 'EXITED'")}
        assert set(unfinished.values()) <= {killed}, "a process of an earlier kernel was left unfinished"
    finally:
        conn.close()
    storage = Storage(home)
    try:
        check = AccessControl(storage, home).verify()
        assert check.ok, check.message
        assert check.rows >= len(ledger.audit)
    finally:
        storage.close()
    return unfinished


async def boot_and_resume(home: Path, ledger: Ledger, unfinished: dict[int, int], rng: random.Random) -> None:
    """Boot here: the killed kernel's unfinished processes are lost, messages kept; resume one of them."""
    config = KernelConfig(home=home, backend="simulated", user="alice", admins=frozenset({"root"}), term_grace=0.2)
    kernel = await boot(config, backend=SimulatedBackend(decode_tps=0, prefill_tps=0))
    new = None
    try:
        assert sorted(kernel.lost_at_boot) == sorted(unfinished)
        ledger.lost += len(kernel.lost_at_boot)
        chats = []
        for pid in kernel.lost_at_boot:
            old = kernel.lookup(pid)
            assert old.status == "EXITED(lost)"
            kept = {m["id"] for m in kernel.storage.messages(pid)}
            assert {mid for mid, (p, _, _) in ledger.messages.items() if p == pid} <= kept
            if old.program == "chat":
                chats.append(pid)
        assert not [p for p in kernel.ps(all=True) if p.alive]
        if chats:
            pid = rng.choice(sorted(chats))
            new = resume(kernel, pid, "alice")
            await asyncio.wait_for(kernel.wait(new.pid), 10)
            assert new.status == "EXITED(0)", new.error
            assert new.ppid == pid
            assert new.history == [{"role": m["role"], "content": m["content"]} for m in kernel.storage.messages(pid)]
            ledger.resumed += 1
    finally:
        await kernel.shutdown()
    if new is not None:
        ledger.procs[new.pid] = ("EXITED", "0")


def plain_run(home: Path, run: int, seed: int, delay: float, stderr: IO[bytes]) -> list[str]:
    """A worker in a subprocess of its own, killed `delay` s after it booted."""
    proc = subprocess.Popen([sys.executable, str(WORKER), str(home), str(run), str(seed)],
                            stdout=subprocess.PIPE, stderr=stderr)
    lines = Lines(proc.stdout)  # type: ignore[arg-type]
    first = lines.next(timeout=60)
    assert first is not None and first.startswith("B "), f"the worker did not boot: {first!r}"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    out = [first]
    while (line := lines.next()) is not None:
        out.append(line)
    return out


class ForkServer:
    """crash_worker.py --serve: forks a worker per run; reports its pid and, once reaped, its status."""

    def __init__(self, home: Path, stderr: IO[bytes]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "--serve", str(home)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self.lines = Lines(self.proc.stdout)  # type: ignore[arg-type]
        assert self.lines.next(timeout=60) == "Z ready"

    def run(self, run: int, seed: int, delay: float) -> tuple[int, list[str]]:
        started = time.monotonic()
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {run} {seed}\n".encode())
        self.proc.stdin.flush()
        line = self.lines.next()
        assert line is not None and line.startswith(f"Z pid {run} "), line
        pid = int(line.split()[3])
        time.sleep(max(0.0, started + delay - time.monotonic()))
        os.kill(pid, signal.SIGKILL)
        out = []
        while (line := self.lines.next()) is not None and not line.startswith("Z exit"):
            out.append(line)
        assert line == f"Z exit {run} {pid} {line.split()[-1]}", f"the fork server stopped: {line!r}"
        status = int(line.split()[-1])
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the worker ended by itself"
        return pid, out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.crash
@pytest.mark.timeout(240)
def test_sigkill_never_loses_a_committed_row(tmp_path: Path) -> None:
    home = tmp_path / "crash-home"
    rng = random.Random(SEED)
    ledger = Ledger()
    started = time.monotonic()
    errors = tmp_path / "worker.err"
    with errors.open("wb") as stderr:
        server = None
        try:
            for run in range(RUNS):
                delay, seed = rng.uniform(*DELAY), rng.randrange(2**31)
                if run == 0:
                    out = plain_run(home, run, seed, delay, stderr)
                else:
                    server = server or ForkServer(home, stderr)
                    _, out = server.run(run, seed, delay)
                booted = [line for line in out if line.startswith("B ")]
                killed = int(booted[0].split()[1]) if booted else -1
                for line in out:
                    ledger.take(line)
                tokens = [line.split()[3] for line in out if line.startswith("C memory ")]
                try:
                    unfinished = check_database(home, ledger, killed, tokens)
                    asyncio.run(boot_and_resume(home, ledger, unfinished, rng))
                except AssertionError as exc:
                    raise AssertionError(f"run {run} (killed after {delay:.2f} s): {exc}") from exc
        finally:
            if server is not None:
                server.close()
    assert not errors.read_text().strip(), errors.read_text()
    print(f"\ncrash: {RUNS} runs, {RUNS} kills, {ledger.size()} rows reported committed, {ledger.checked} row checks, "
          f"{ledger.lost} processes lost, {ledger.resumed} resumed, {time.monotonic() - started:.1f} s")
    assert ledger.resumed >= RUNS // 2  # most kills leave a chat agent to resume
    assert len(ledger.messages) > 0 and len(ledger.procs) > RUNS
