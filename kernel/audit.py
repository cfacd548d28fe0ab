"""The audit log: every tool call's decision, hash-chained in the `audit` table and anchored outside it.

Each row's hash covers the previous row's hash and the row (its arguments redacted first), so an edited,
deleted, inserted or reordered row breaks the chain; the last row's id and hash are also written to
`$AIOS_HOME/audit.head`, so a log cut at its end or rewritten whole is found too (`verify`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.redact import redact, redact_value
from kernel.storage import Storage, storable

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditCheck:
    ok: bool
    rows: int
    bad_id: int | None
    message: str


def _canonical(values: list[Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _row_hash(prev: str, row: dict[str, Any]) -> str:
    fields = [row["ts"], row["user"], row["pid"], row["program"], row["tool"], row["args"], row["decision"],
              row["by"], row["reason"]]
    return hashlib.sha256((prev + _canonical(fields)).encode()).hexdigest()


class AuditLog:
    """The hash-chained audit table of `storage` and its anchor file in `home`."""

    def __init__(self, storage: Storage, home: Path, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.home = Path(home)
        self.clock = clock
        self._lock = threading.Lock()
        self._anchor: int | None = None  # the anchor file's descriptor, once opened
        self._anchored = 0  # the last row this process anchored
        self._anchor_checked = 0.0
        self._anchor_head()

    @property
    def anchor_path(self) -> Path:
        return self.home / "audit.head"

    def _anchor_head(self) -> None:
        """First start with an audit log but no anchor (an older AIOS_HOME): anchor the head the database has."""
        if self.anchor_path.exists():
            return
        head = self.storage.db.conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        if head is not None:
            self._write_anchor(head[0])

    def close(self) -> None:
        if self._anchor is not None:
            os.close(self._anchor)
            self._anchor = None

    def _anchor_fd(self) -> int:
        """The anchor file, kept open (opened again if someone removed it)."""
        fd, now = self._anchor, time.monotonic()
        if fd is not None and now - self._anchor_checked > 1.0:  # removed? (looked at once a second)
            self._anchor_checked = now
            if os.fstat(fd).st_nlink == 0:
                os.close(fd)
                fd = None
        if fd is None:
            fd = os.open(self.anchor_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            self._anchor = fd
        return fd

    def _write_anchor(self, value: str) -> None:
        """One fixed-size record written in place: a single small write, no temporary file."""
        fd = self._anchor_fd()
        os.pwrite(fd, (value + "\n").encode().ljust(_ANCHOR_SIZE, b" "), 0)

    def _advance_anchor(self, rid: int, digest: str) -> None:
        """Anchor row `rid`. Two kernels on one AIOS_HOME may anchor out of order, which leaves the anchor a
        row behind the chain until the next call: `verify` accepts rows past the anchor (they chain), it
        never accepts fewer."""
        if rid > self._anchored:
            self._write_anchor(f"{rid}:{digest}")
            self._anchored = rid

    def _read_anchor(self) -> tuple[int, str] | None:
        try:
            return _parse_anchor(self.anchor_path.read_bytes()[:_ANCHOR_SIZE])
        except OSError:
            return None

    def append(self, *, user: str, pid: int, program: str, tool: str, args: dict[str, Any], decision: str,
              by: str, reason: str = "") -> int:
        """Append one decision to the hash-chained audit log (committed at once); returns its id."""
        safe = redact_value(json.loads(json.dumps(args, default=str)))
        row = {"ts": self.clock(), "user": user, "pid": pid, "program": program, "tool": tool,
               "args": json.dumps(safe, sort_keys=True, ensure_ascii=False), "decision": decision, "by": by,
               "reason": redact(reason)}
        row = {k: storable(v) if isinstance(v, str) else v for k, v in row.items()}  # bad text: escaped
        conn = self.storage.db.conn
        with self._lock:
            rid, digest = self._append(conn, row)
            # after the commit (a crash in between leaves the anchor one row behind, never ahead), and only
            # forward: kernels sharing this AIOS_HOME may commit in one order and anchor in another
            self._advance_anchor(rid, digest)
        return rid

    def _append(self, conn: Any, row: dict[str, Any]) -> tuple[int, str]:
        with conn:
            conn.execute("BEGIN IMMEDIATE")  # the last hash and the new row in one transaction
            last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev = last[0] if last else GENESIS
            digest = _row_hash(prev, row)
            cur = conn.execute(
                "INSERT INTO audit (ts, user, pid, program, tool, args, decision, by, reason, prev, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*row.values(), prev, digest],
            )
            rid = int(cur.lastrowid or 0)
            conn.execute("INSERT INTO meta (key, value) VALUES ('audit_head', ?) ON CONFLICT(key) "
                         "DO UPDATE SET value = excluded.value", [f"{rid}:{digest}"])
        return rid, digest

    def rows(self, limit: int | None = None, user: str | None = None,
                   pid: int | None = None) -> list[dict[str, Any]]:
        """Audit rows, oldest first (with `limit`, the newest `limit` of them); args decoded."""
        where, params = [], []
        if user is not None:
            where.append("user = ?")
            params.append(user)
        if pid is not None:
            where.append("pid = ?")
            params.append(pid)
        sql = "SELECT * FROM audit" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        cur = self.storage.db.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        for row in rows:
            try:
                row["args"] = json.loads(row["args"])
            except (TypeError, ValueError):
                pass
        return rows[::-1]

    def verify(self) -> AuditCheck:
        """Recompute the chain: an edited, deleted, inserted or reordered row gives the first bad id."""
        conn = self.storage.db.conn
        anchor = self._read_anchor()
        cur = conn.execute("SELECT * FROM audit ORDER BY id")
        names = [d[0] for d in cur.description]
        prev, count, last_id, anchored = GENESIS, 0, None, None
        for values in cur:
            row = dict(zip(names, values, strict=True))
            count += 1
            if row["prev"] != prev:
                return AuditCheck(False, count, row["id"], f"audit row {row['id']}: the chain is broken before it "
                                  "(a row was deleted, inserted or moved)")
            if _row_hash(prev, row) != row["hash"]:
                return AuditCheck(False, count, row["id"], f"audit row {row['id']}: its contents do not match "
                                  "its hash (the row was edited)")
            prev, last_id = row["hash"], row["id"]
            if anchor is not None and row["id"] == anchor[0]:
                anchored = row["hash"]
        if anchor is None:
            head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
            if count:
                return AuditCheck(False, count, None, f"the audit anchor {self.anchor_path} is missing: the log's "
                                  f"{count} rows chain, but a cut at the end cannot be ruled out")
            if head is not None:  # no rows, but the database once had a head
                return AuditCheck(False, 0, None, f"audit log emptied: the database says it ended at {head[0]}")
            return AuditCheck(True, 0, None, "audit log intact: 0 rows")
        want_id, want_hash = anchor
        end = last_id or 0
        if want_id > end:
            first = end + 1
            gone = f"row {first}" if first == want_id else f"rows {first}…{want_id}"
            return AuditCheck(False, count, first, f"audit log truncated: {gone} missing (the anchor outside the "
                              f"database says the log ends at row {want_id})")
        if anchored != want_hash:
            return AuditCheck(False, count, want_id, f"audit chain rewritten: row {want_id}'s hash is not the one "
                              "anchored outside the database")
        # rows past the anchor: a kernel that died between its commit and its anchor (they chain, so they count)
        return AuditCheck(True, count, None, f"audit log intact: {count} rows")


_ANCHOR_SIZE = 96  # `id:sha256` and a newline, padded: room for a 20-digit id


def _parse_anchor(data: bytes) -> tuple[int, str] | None:
    rid, _, digest = data.decode("ascii", "replace").strip().partition(":")
    return (int(rid), digest) if rid.isdigit() else None
