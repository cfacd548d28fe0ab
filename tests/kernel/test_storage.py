"""Storage: WAL, numbered migrations, pids never reused, `ps -a` across restarts."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from kernel.kernel import boot
from kernel.llm.simulated import SimulatedBackend
from kernel.process import Signal
from kernel.storage import MIGRATIONS, Storage
from tests.conftest import make_config, until


def test_wal_and_migrations_run_once(home: Path) -> None:
    first = Storage(home)
    assert first.journal_mode() == "wal"
    assert first.applied_migrations() == [name for name, _ in MIGRATIONS]
    first.close()
    again = Storage(home)
    assert again.migrate() == []  # nothing left to apply
    assert again.integrity() == "ok"
    again.close()


def test_pids_are_monotonic_across_storages(home: Path) -> None:
    a, b = Storage(home), Storage(home)  # two kernels on one AIOS_HOME
    pids = [a.allocate_pid(), b.allocate_pid(), a.allocate_pid(), b.allocate_pid()]
    assert pids == [1, 2, 3, 4]
    a.close()
    b.close()


async def test_ps_all_shows_earlier_runs_and_pids_are_not_reused(home: Path) -> None:
    async with await boot(make_config(home), backend=SimulatedBackend(decode_tps=500)) as kernel:
        done = kernel.spawn("chat", ["short"])
        killed = kernel.spawn("chat", ["long"])
        await kernel.wait(done.pid)
        kernel.signal(killed.pid, Signal.KILL)
    async with await boot(make_config(home), backend=SimulatedBackend()) as kernel:
        assert kernel.ps() == []  # nothing live in the new kernel
        history = {p.pid: p for p in kernel.ps(all=True)}
        assert history[done.pid].status == "EXITED(0)"
        assert history[done.pid].completion_tokens == 8
        assert history[killed.pid].status == "EXITED(SIGKILL)"
        new = kernel.spawn("chat", ["short"])
        assert new.pid == 3
        await kernel.wait(new.pid)
        messages = kernel.storage.messages(done.pid)
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[0]["content"] == "short"
        assert messages[1]["content"] == "".join(done.output).strip()
        kinds = [e["type"] for e in kernel.storage.events(pid=done.pid)]
        assert kinds[0] == "ProcessSpawned" and kinds[-1] == "ProcessExited"


async def test_processes_of_a_dead_kernel_are_marked_lost(home: Path) -> None:
    storage = Storage(home)
    pid = storage.allocate_pid()
    storage.db["processes"].insert({
        "pid": pid, "ppid": 0, "user": "alice", "program": "chat", "argv": '["hi"]', "nice": 0,
        "state": "RUNNING", "created_at": 1.0, "kernel_pid": 2**22 + 12345,  # no such OS process
    })
    storage.close()
    async with await boot(make_config(home), backend=SimulatedBackend()) as kernel:
        assert kernel.lost_at_boot == [pid]
        assert kernel.lookup(pid).status == "EXITED(lost)"


async def test_rows_are_written_as_they_happen(home: Path) -> None:
    async with await boot(make_config(home), backend=SimulatedBackend(decode_tps=50)) as kernel:
        proc = kernel.spawn("chat", ["long"])
        await until(lambda: proc.status == "RUNNING" and proc.output)
        other = sqlite3.connect(home / "aios.db")  # another reader sees it within one flush interval

        def state() -> object:
            row = other.execute("select state from processes where pid = ?", [proc.pid]).fetchone()
            return row and row[0]

        await until(lambda: state() == "RUNNING", timeout=2)
        messages = other.execute("select role from messages where pid = ?", [proc.pid]).fetchall()
        assert messages == [("user",)]
        other.close()
        kernel.signal(proc.pid, Signal.KILL)


async def test_a_failed_write_is_kept_and_retried(home: Path) -> None:
    storage = Storage(home)
    storage.db.execute("PRAGMA query_only = 1")  # every write now fails, as on a full disk
    storage.record(__import__("kernel.events", fromlist=["ProcessOutput"]).ProcessReniced(pid=1, old=0, new=1))
    storage.flush()
    assert storage.write_errors == 1 and "readonly" in storage.last_write_error
    storage.db.execute("PRAGMA query_only = 0")
    assert [e["type"] for e in storage.events()] == ["ProcessReniced"]  # kept, then written
    storage.close()


def test_home_is_per_user_by_default(monkeypatch) -> None:  # noqa: ANN001
    from kernel.storage import default_home

    monkeypatch.delenv("AIOS_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", "/tmp/xdg-test")
    assert default_home() == Path("/tmp/xdg-test/aios")
    monkeypatch.setenv("AIOS_HOME", "~/x")
    assert default_home() == Path(os.path.expanduser("~/x"))
