"""Long-term memory: short notes per user, kept in SQLite and searched with FTS5 (bm25, porter stemming).

A note is written at once, in its own committed transaction, with its secrets masked (`kernel.redact`).
A search only ever sees the caller's own notes. Its query is what a person or a model typed, never FTS5
syntax: the words are quoted one by one, so `"`, `*`, `:`, `-`, `NEAR` or parentheses are plain text.
Notes holding every word come first, then notes holding some of them.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from kernel.redact import redact
from kernel.storage import Storage, storable

MAX_TEXT = 8192  # characters in one note
MAX_TAGS = 256  # characters of a note's tags
MAX_LIMIT = 100  # rows from one search or listing
MAX_TERMS = 32  # words of a query that count
_WORD = re.compile(r"[^\W_]+")  # letters and digits, as FTS5's unicode61 tokenizer splits them
COLUMNS = "m.id, m.user, m.pid, m.text, m.tags, m.ts"


def fts_query(text: str, op: str = "AND") -> str:
    """`text` as a safe FTS5 query: each word quoted, joined with AND or OR ('' when it has no words)."""
    terms: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in terms:
            terms.append(word)
    return f" {op} ".join(f'"{t}"' for t in terms[:MAX_TERMS])


class Memory:
    """Notes per user: `add`, `search`, `remove`, `list`."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time) -> None:
        self.db = storage.worker_db()
        self.clock = clock

    def add(self, user: str, text: str, tags: str = "", pid: int | None = None) -> int:
        """Keep a note for `user` (secrets masked); returns its id. ValueError for an empty or huge note."""
        text = redact(text.strip())
        if not text:
            raise ValueError("nothing to remember: the text is empty")
        if len(text) > MAX_TEXT:
            raise ValueError(f"the text is too long ({len(text)} characters, at most {MAX_TEXT})")
        if len(tags) > MAX_TAGS:
            raise ValueError(f"the tags are too long ({len(tags)} characters, at most {MAX_TAGS})")
        tags = redact(tags.strip())
        text, tags = storable(text), storable(tags)
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT INTO memory (user, pid, text, tags, ts) VALUES (?, ?, ?, ?, ?)",
                [user, pid, text, tags, self.clock()],
            )
            return int(cur.lastrowid or 0)

    def search(self, user: str, query: str, limit: int = 5, pid: int | None = None) -> list[dict[str, Any]]:
        """`user`'s notes that match `query`, best first (only those `pid` wrote, when given).

        Each row: id, user, pid, text, tags, ts and score (bm25 relevance, higher is better).
        """
        limit = max(0, min(int(limit), MAX_LIMIT))
        every, some = fts_query(query, "AND"), fts_query(query, "OR")
        if not every or not limit:
            return []
        hits = self._match(user, every, limit, pid)
        if len(hits) < limit and some != every:
            seen = {h["id"] for h in hits}
            hits += [h for h in self._match(user, some, limit + len(hits), pid) if h["id"] not in seen]
        return hits[:limit]

    def _match(self, user: str, match: str, limit: int, pid: int | None) -> list[dict[str, Any]]:
        where, args = "memory_fts MATCH ? AND m.user = ?", [match, user]
        if pid is not None:
            where += " AND m.pid = ?"
            args.append(pid)
        sql = (f"SELECT {COLUMNS}, bm25(memory_fts) AS rank FROM memory_fts "
               f"JOIN memory m ON m.id = memory_fts.rowid WHERE {where} ORDER BY rank, m.id DESC LIMIT ?")
        with self.db.read() as conn:
            rows = conn.execute(sql, [*args, limit]).fetchall()
        return [{**_row(r), "score": -float(r["rank"])} for r in rows]

    def remove(self, user: str, id: int) -> bool:
        """Forget note `id` if `user` owns it; False when there is no such note of theirs."""
        with self.db.write() as conn:
            return conn.execute("DELETE FROM memory WHERE id = ? AND user = ?", [id, user]).rowcount > 0

    def list(self, user: str, limit: int = 50) -> list[dict[str, Any]]:
        """`user`'s notes, newest first."""
        limit = max(0, min(int(limit), MAX_LIMIT))
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM memory m WHERE m.user = ? ORDER BY m.id DESC LIMIT ?", [user, limit]
            ).fetchall()
        return [_row(r) for r in rows]

    def close(self) -> None:
        self.db.close()


def _row(r: sqlite3.Row) -> dict[str, Any]:
    return {"id": r["id"], "user": r["user"], "pid": r["pid"], "text": r["text"], "tags": r["tags"] or "",
            "ts": r["ts"]}
