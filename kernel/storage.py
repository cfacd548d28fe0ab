"""The SQLite database: one file per `AIOS_HOME`, WAL mode, numbered migrations.

Processes, their messages and the kernel's events are written as they happen,
so a new `aios` sees the processes of earlier runs and nothing committed is lost
when a kernel dies.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

from kernel.events import Event, MessageLogged, ProcessOutput, TokenGenerated

MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    """Register `mNNN_name` as a migration; they run once each, in order."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["processes"].create(
        {
            "pid": int,
            "ppid": int,
            "user": str,
            "program": str,
            "argv": str,
            "nice": int,
            "state": str,
            "waiting_on": str,
            "exit_code": int,
            "signal": int,
            "error": str,
            "lost": int,
            "created_at": float,
            "started_at": float,
            "ended_at": float,
            "prompt_tokens": int,
            "completion_tokens": int,
            "llm_time": float,
            "queue_wait": float,
            "syscalls": int,
            "tool_calls": int,
            "ctx_switches": int,
            "ctx_tokens": int,
            "kernel_pid": int,
            "output": str,
        },
        pk="pid",
    )
    db["messages"].create(
        {"id": int, "pid": int, "role": str, "content": str, "ts": float}, pk="id"
    )
    db["messages"].create_index(["pid"])
    db["events"].create({"id": int, "ts": float, "type": str, "pid": int, "data": str}, pk="id")
    db["events"].create_index(["pid"])
    db["meta"].insert({"key": "next_pid", "value": "1"})


def default_home() -> Path:
    """`AIOS_HOME`, else the per-user data dir (XDG)."""
    if env := os.environ.get("AIOS_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aios"


class StorageError(Exception):
    pass


class Storage:
    """Thin, synchronous access to the database; every write commits at once."""

    OUTPUT_CAP = 64 * 1024

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.path = self.home / "aios.db"
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 10000")
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the aios database in {self.home}: {exc}") from exc

    # -- schema ------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        db = self.db
        if "_migrations" not in db.table_names():
            db["_migrations"].create({"name": str, "applied_at": float}, pk="name")
        done = {row["name"] for row in db["_migrations"].rows}
        applied = []
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with db.conn:
                db.execute("BEGIN IMMEDIATE")
                if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                    continue  # another kernel got there first
                fn(db)
                db["_migrations"].insert({"name": name, "applied_at": time.time()})
            applied.append(name)
        return applied

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self.db["_migrations"].rows_where(order_by="name")]

    # -- pids --------------------------------------------------------------------------------
    def allocate_pid(self) -> int:
        """Next pid for this AIOS_HOME: monotonic, never reused, safe with several kernels."""
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT value FROM meta WHERE key = 'next_pid'").fetchone()
            pid = int(row[0])
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'next_pid'", [str(pid + 1)])
        return pid

    # -- processes -----------------------------------------------------------------------------
    def save_process(self, proc: Any) -> None:
        row = {
            "pid": proc.pid,
            "ppid": proc.ppid,
            "user": proc.user,
            "program": proc.program,
            "argv": json.dumps(list(proc.argv)),
            "nice": proc.nice,
            "state": proc.state.value,
            "waiting_on": proc.waiting_on,
            "exit_code": proc.exit_code,
            "signal": proc.term_signal,
            "error": proc.error,
            "lost": int(proc.lost),
            "created_at": proc.created_at,
            "started_at": proc.started_at,
            "ended_at": proc.ended_at,
            "prompt_tokens": proc.prompt_tokens,
            "completion_tokens": proc.completion_tokens,
            "llm_time": proc.llm_time,
            "queue_wait": proc.queue_wait,
            "syscalls": proc.syscalls,
            "tool_calls": proc.tool_calls,
            "ctx_switches": proc.ctx_switches,
            "ctx_tokens": proc.ctx_tokens,
            "kernel_pid": proc.kernel_pid,
            "output": "".join(proc.output)[-self.OUTPUT_CAP :],
        }
        self.db["processes"].upsert(row, pk="pid")

    def process_rows(self, pids: list[int] | None = None) -> list[dict[str, Any]]:
        if pids is None:
            rows = self.db["processes"].rows_where(order_by="pid")
        else:
            marks = ",".join("?" * len(pids))
            rows = self.db["processes"].rows_where(f"pid in ({marks})", pids, order_by="pid")
        return [dict(r) for r in rows]

    def mark_lost(self, alive: Callable[[int], bool]) -> list[int]:
        """Processes left running by a kernel that is gone: EXITED(lost), conversation kept."""
        lost = []
        rows = self.db["processes"].rows_where("state != 'EXITED'")
        for row in list(rows):
            if row["kernel_pid"] is not None and alive(row["kernel_pid"]):
                continue
            lost.append(row["pid"])
        for pid in lost:
            self.db["processes"].update(
                pid, {"state": "EXITED", "lost": 1, "exit_code": 1, "waiting_on": None, "ended_at": time.time()}
            )
        return lost

    # -- messages and events ---------------------------------------------------------------------
    def messages(self, pid: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db["messages"].rows_where("pid = ?", [pid], order_by="id")]

    def events(self, pid: int | None = None, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        where, args = [], []
        if pid is not None:
            where.append("pid = ?")
            args.append(pid)
        if types:
            where.append(f"type in ({','.join('?' * len(types))})")
            args.extend(types)
        rows = self.db["events"].rows_where(" and ".join(where) or None, args, order_by="id")
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def record(self, event: Event) -> None:
        """The bus handler: persist an event as it happens (tokens live in the messages)."""
        if isinstance(event, (TokenGenerated, ProcessOutput)):
            return
        if isinstance(event, MessageLogged):
            self.db["messages"].insert(
                {"pid": event.pid, "role": event.role, "content": event.content, "ts": event.ts}
            )
            return
        data = event.to_dict()
        self.db["events"].insert(
            {"ts": event.ts, "type": event.kind, "pid": data.get("pid"), "data": json.dumps(data, default=str)}
        )

    def integrity(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def journal_mode(self) -> str:
        return self.db.execute("PRAGMA journal_mode").fetchone()[0]

    def close(self) -> None:
        self.db.conn.close()
