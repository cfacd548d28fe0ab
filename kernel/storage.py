"""The SQLite database: one file per `AIOS_HOME`, WAL mode, numbered migrations.

Processes, their messages and the kernel's events are written as they happen:
each write joins a batch that is committed in one transaction within
`FLUSH_INTERVAL` seconds (at once when no event loop runs, and before any read),
so the kernel's hot path never waits on SQLite. A new `aios` sees the processes
of earlier runs; a kernel that dies loses at most the last batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from kernel.events import Event, MessageLogged, ProcessOutput, TokenGenerated
from kernel.home import default_home, shared_home  # noqa: F401 - default_home: where it was, for its callers
from kernel.redact import redact, redact_value

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


@migration
def m002_access(db: sqlite_utils.Database) -> None:
    """Users and groups, standing grants, trusted project configs, and the hash-chained audit log."""
    db["users"].create({"name": str, "groups": str, "admin": int, "created_at": float}, pk="name")
    db["grants"].create(
        {"id": int, "user": str, "pattern": str, "effect": str, "by": str, "created_at": float}, pk="id"
    )
    db["grants"].create_index(["user"])
    db["trusted"].create({"path": str, "sha256": str, "user": str, "ts": float}, pk="path")
    db["audit"].create(
        {
            "id": int, "ts": float, "user": str, "pid": int, "program": str, "tool": str, "args": str,
            "decision": str, "by": str, "reason": str, "prev": str, "hash": str,
        },
        pk="id",
    )
    db.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )


@migration
def m003_memory(db: sqlite_utils.Database) -> None:
    """Long-term memory per user (pid set when a process wrote it), searched with FTS5."""
    db["memory"].create({"id": int, "user": str, "pid": int, "text": str, "tags": str, "ts": float}, pk="id")
    db["memory"].create_index(["user"])
    db.execute(
        "CREATE VIRTUAL TABLE memory_fts USING fts5(text, tags, content='memory', content_rowid='id', "
        "tokenize='porter unicode61')"
    )
    db.execute(
        "CREATE TRIGGER memory_ai AFTER INSERT ON memory BEGIN "
        "INSERT INTO memory_fts(rowid, text, tags) VALUES (new.id, new.text, new.tags); END"
    )
    db.execute(
        "CREATE TRIGGER memory_ad AFTER DELETE ON memory BEGIN "
        "INSERT INTO memory_fts(memory_fts, rowid, text, tags) VALUES ('delete', old.id, old.text, old.tags); END"
    )


@migration
def m004_files(db: sqlite_utils.Database) -> None:
    """Versioned agent files: every write through the fs tools keeps a version."""
    db["file_versions"].create(
        {"id": int, "pid": int, "user": str, "path": str, "version": int, "content": bytes, "size": int,
         "sha256": str, "ts": float},
        pk="id",
    )
    db["file_versions"].create_index(["pid", "path", "version"], unique=True)


@migration
def m005_process_workspace(db: sqlite_utils.Database) -> None:
    db["processes"].add_column("workspace", str)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to the database file for worker threads (see `Storage.worker_db`)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class WorkerDB:
    """One connection, used by one thread at a time; `write()` is a committed transaction."""

    def __init__(self, path: Path) -> None:
        self.conn = _connect(path)
        self.lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class StorageError(Exception):
    pass


def _private(path: Path, mode: int) -> None:
    """chmod `path` to `mode` when it exists and is ours (a link is left alone)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def storable(text: str) -> str:
    """`text` as SQLite can keep it: a lone surrogate (a model's broken reply, a filename's bad byte) becomes
    its escape `\\udcff`, so nothing is lost and nothing stops the write."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _storable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(storable(v) if isinstance(v, str) else v for v in row)


def _event_row(event: tuple[Any, ...]) -> tuple[Any, ...]:
    ts, kind, pid, data = event
    return ts, kind, pid, json.dumps(redact_value(data), default=str)  # ASCII escapes: always storable


def _message_row(message: tuple[Any, ...]) -> tuple[Any, ...]:
    pid, role, text, ts = message
    return pid, role, storable(redact(text)), ts


PROCESS_COLUMNS = (
    "pid", "ppid", "user", "program", "argv", "nice", "state", "waiting_on", "exit_code", "signal", "error",
    "lost", "created_at", "started_at", "ended_at", "prompt_tokens", "completion_tokens", "llm_time",
    "queue_wait", "syscalls", "tool_calls", "ctx_switches", "ctx_tokens", "kernel_pid", "output", "workspace",
)
UPSERT_PROCESS = (
    f"INSERT INTO processes ({', '.join(PROCESS_COLUMNS)}) VALUES ({', '.join('?' * len(PROCESS_COLUMNS))}) "
    f"ON CONFLICT(pid) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in PROCESS_COLUMNS[1:])}"
)
INSERT_EVENT = "INSERT INTO events (ts, type, pid, data) VALUES (?, ?, ?, ?)"
INSERT_MESSAGE = "INSERT INTO messages (pid, role, content, ts) VALUES (?, ?, ?, ?)"


class Storage:
    """Access to the database: writes are batched (see the module's docstring), reads see them all."""

    OUTPUT_CAP = 64 * 1024
    FLUSH_INTERVAL = 0.05

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not shared_home(self.home):
                _private(self.home, 0o700)  # what agents said and did is the user's alone
            self.path = self.home / "aios.db"
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                _private(path, 0o600)  # sqlite makes the WAL and shm files with the database's mode
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 10000")
            self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.migrate()
            self._procs: dict[int, Any] = {}  # pid → process to write at the next flush
            self._events: list[tuple[Any, ...]] = []
            self._messages: list[tuple[Any, ...]] = []
            self._timer: asyncio.TimerHandle | None = None
            self.flushes = 0
            self.write_errors = 0
            self.last_write_error: str | None = None
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the aios database in {self.home}: {exc}") from exc

    def worker_db(self) -> WorkerDB:
        """A connection of its own to this database, for what tools do in worker threads (memory, files): the
        storage's connection batches writes from the event loop, and two threads must never share one SQLite
        connection's transaction. WAL lets both work at once."""
        return WorkerDB(self.path)

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
    # -- batched writes ----------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_later(self.FLUSH_INTERVAL, self.flush)

    def _process_row(self, proc: Any) -> tuple[Any, ...]:
        return _storable((
            proc.pid, proc.ppid, proc.user, proc.program, json.dumps(redact_value(list(proc.argv))), proc.nice,
            proc.state.value, proc.waiting_on, proc.exit_code, proc.term_signal, redact(proc.error or "") or None,
            int(proc.lost),
            proc.created_at, proc.started_at, proc.ended_at, proc.prompt_tokens, proc.completion_tokens,
            proc.llm_time, proc.queue_wait, proc.syscalls, proc.tool_calls, proc.ctx_switches, proc.ctx_tokens,
            proc.kernel_pid, redact("".join(proc.output)[-self.OUTPUT_CAP :]), proc.workspace,
        ))

    def flush(self) -> None:
        """Commit everything pending in one transaction. A failed write (a full disk) is counted, kept
        for the next try, and never raised into the kernel."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not (self._procs or self._events or self._messages):
            return
        procs, events, messages = list(self._procs.values()), self._events, self._messages
        batches: list[tuple[str, list[Any], Callable[[Any], tuple[Any, ...]]]] = [
            (UPSERT_PROCESS, procs, self._process_row),
            # secrets are masked here, off the syscall path
            (INSERT_EVENT, events, _event_row),
            (INSERT_MESSAGE, messages, _message_row),
        ]
        try:
            self._write(batches, one_by_one=False)
        except sqlite3.OperationalError as exc:  # a full disk, a locked database: all kept for the next try
            self.write_errors += 1
            self.last_write_error = str(exc)
            return
        except Exception:  # some row cannot be written: write the others one by one, skip only the bad ones
            try:
                self._write(batches, one_by_one=True)
            except sqlite3.OperationalError as exc:
                self.write_errors += 1
                self.last_write_error = str(exc)
                return
        self._procs, self._events, self._messages = {}, [], []
        self.flushes += 1

    def _write(self, batches: list[tuple[str, list[Any], Callable[[Any], tuple[Any, ...]]]],
               one_by_one: bool) -> None:
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            for sql, items, make in batches:
                if not one_by_one:
                    self.db.conn.executemany(sql, [make(item) for item in items])
                    continue
                for item in items:
                    self.db.execute("SAVEPOINT one_row")
                    try:
                        self.db.conn.execute(sql, make(item))
                    except sqlite3.OperationalError:
                        raise
                    except Exception as exc:  # this row alone is lost; it is counted and said
                        self.db.execute("ROLLBACK TO one_row")
                        self.write_errors += 1
                        self.last_write_error = f"a row was not saved: {exc}"
                    self.db.execute("RELEASE one_row")

    def save_process(self, proc: Any) -> None:
        self._procs[proc.pid] = proc
        self._schedule()

    def process_rows(self, pids: list[int] | None = None) -> list[dict[str, Any]]:
        self.flush()
        if pids is None:
            rows = self.db["processes"].rows_where(order_by="pid")
        else:
            marks = ",".join("?" * len(pids))
            rows = self.db["processes"].rows_where(f"pid in ({marks})", pids, order_by="pid")
        return [dict(r) for r in rows]

    def mark_lost(self, alive: Callable[[int], bool]) -> list[int]:
        """Processes left running by a kernel that is gone: EXITED(lost), conversation kept."""
        self.flush()
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
        self.flush()
        return [dict(r) for r in self.db["messages"].rows_where("pid = ?", [pid], order_by="id")]

    def events(self, pid: int | None = None, types: tuple[str, ...] = (), since: float | None = None,
               last: int | None = None) -> list[dict[str, Any]]:
        """Stored events, oldest first: of `pid`, of these `types`, from `since` on, only the `last` N."""
        self.flush()
        where, args = [], []
        if pid is not None:
            where.append("pid = ?")
            args.append(pid)
        if types:
            where.append(f"type in ({','.join('?' * len(types))})")
            args.extend(types)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        order = "id desc" if last is not None else "id"
        rows = list(self.db["events"].rows_where(" and ".join(where) or None, args, order_by=order, limit=last))
        if last is not None:
            rows.reverse()
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def record(self, event: Event) -> None:
        """The bus handler: persist an event as it happens (tokens live in the messages)."""
        if isinstance(event, (TokenGenerated, ProcessOutput)):
            return
        if isinstance(event, MessageLogged):
            self._messages.append((event.pid, event.role, event.content, event.ts))
        else:
            data = event.to_dict()
            self._events.append((event.ts, event.kind, data.get("pid"), data))
        self._schedule()

    def integrity(self) -> str:
        self.flush()
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def journal_mode(self) -> str:
        return self.db.execute("PRAGMA journal_mode").fetchone()[0]

    def close(self) -> None:
        self.flush()
        self.db.conn.close()
