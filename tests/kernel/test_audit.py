"""The audit log: append-only, hash-chained, redacted, and safe with two kernels on one database."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from kernel.access import AccessControl
from kernel.audit import _row_hash
from kernel.storage import Storage

FAKE_KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5"  # 30 characters after sk-


@pytest.fixture
def ac(storage: Storage) -> AccessControl:
    ticks = itertools.count(1)
    return AccessControl(storage, storage.home, clock=lambda: 1000.0 + next(ticks) / 8)


def log(ac: AccessControl, n: int, user: str = "alice", pid: int = 1) -> list[int]:
    return [ac.audit(user=user, pid=pid, program="chat", tool="shell", args={"command": f"echo {i}"},
                     decision="allow", by="policy", reason="shell(echo*)") for i in range(n)]


def raw(storage: Storage, sql: str, params: tuple[object, ...] = ()) -> None:
    storage.db.conn.execute(sql, params)


def test_rows_are_chained(ac: AccessControl, storage: Storage) -> None:
    ids = log(ac, 3)
    assert ids == sorted(ids) and len(set(ids)) == 3
    rows = ac.audit_rows()
    assert [r["id"] for r in rows] == ids
    assert rows[0]["prev"] == "0" * 64
    assert [r["prev"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    first = rows[0]
    canonical = json.dumps([first["ts"], "alice", 1, "chat", "shell", json.dumps({"command": "echo 0"}), "allow",
                            "policy", "shell(echo*)"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first["hash"] == hashlib.sha256(("0" * 64 + canonical).encode()).hexdigest()
    assert first["args"] == {"command": "echo 0"} and first["ts"] == 1000.125
    check = ac.verify()
    assert (check.ok, check.rows, check.bad_id) == (True, 3, None)


def test_empty_log_verifies(ac: AccessControl) -> None:
    assert ac.verify().ok and ac.verify().rows == 0


def test_audit_rows_filters(ac: AccessControl) -> None:
    log(ac, 2, user="alice", pid=1)
    log(ac, 3, user="bob", pid=2)
    assert len(ac.audit_rows(user="bob")) == 3
    assert {r["user"] for r in ac.audit_rows(pid=1)} == {"alice"}
    newest = ac.audit_rows(limit=2)
    assert [r["args"]["command"] for r in newest] == ["echo 1", "echo 2"]
    assert ac.audit_rows(user="carol") == []


def test_the_table_is_append_only(ac: AccessControl, storage: Storage) -> None:
    log(ac, 2)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw(storage, "UPDATE audit SET decision = 'deny' WHERE id = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw(storage, "DELETE FROM audit WHERE id = 1")
    assert ac.verify().ok


@pytest.mark.hostile
def test_an_edited_row_is_found(ac: AccessControl, storage: Storage) -> None:
    ids = log(ac, 4)
    raw(storage, "DROP TRIGGER audit_no_update")
    raw(storage, "UPDATE audit SET decision = 'deny' WHERE id = ?", (ids[2],))
    check = ac.verify()
    assert not check.ok and check.bad_id == ids[2] and "edited" in check.message


@pytest.mark.hostile
def test_an_edited_row_with_a_fresh_hash_breaks_the_next_link(ac: AccessControl, storage: Storage) -> None:
    ids = log(ac, 4)
    row = ac.audit_rows()[1]
    forged = {**row, "args": json.dumps({"command": "echo innocent"}, sort_keys=True)}
    raw(storage, "DROP TRIGGER audit_no_update")
    raw(storage, "UPDATE audit SET args = ?, hash = ? WHERE id = ?",
        (forged["args"], _row_hash(row["prev"], forged), ids[1]))
    check = ac.verify()
    assert not check.ok and check.bad_id == ids[2]


@pytest.mark.hostile
def test_a_deleted_row_is_found(ac: AccessControl, storage: Storage) -> None:
    ids = log(ac, 4)
    raw(storage, "DROP TRIGGER audit_no_delete")
    raw(storage, "DELETE FROM audit WHERE id = ?", (ids[1],))
    check = ac.verify()
    assert not check.ok and check.bad_id == ids[2] and "chain" in check.message


@pytest.mark.hostile
def test_a_truncated_tail_is_found(ac: AccessControl, storage: Storage) -> None:
    ids = log(ac, 3)
    raw(storage, "DROP TRIGGER audit_no_delete")
    raw(storage, "DELETE FROM audit WHERE id = ?", (ids[-1],))
    check = ac.verify()
    assert not check.ok and check.bad_id == ids[-1] and "truncated" in check.message


@pytest.mark.hostile
def test_a_reordered_chain_is_found(ac: AccessControl, storage: Storage) -> None:
    ids = log(ac, 3)
    rows = {r["id"]: r for r in ac.audit_rows()}
    raw(storage, "DROP TRIGGER audit_no_update")
    cols = ("ts", "user", "pid", "program", "tool", "args", "decision", "by", "reason", "prev", "hash")
    sets = ", ".join(f"{c} = ?" for c in cols)
    a, b = rows[ids[0]], rows[ids[1]]
    for target, source in ((ids[0], b), (ids[1], a)):  # swap the first two rows, hashes and all
        values = [json.dumps(source[c], sort_keys=True) if c == "args" else source[c] for c in cols]
        raw(storage, f"UPDATE audit SET {sets} WHERE id = ?", (*values, target))
    check = ac.verify()
    assert not check.ok and check.bad_id == ids[0]


@pytest.mark.hostile
def test_secrets_never_reach_the_database(ac: AccessControl, storage: Storage) -> None:
    ac.audit(user="alice", pid=3, program="chat", tool="shell",
             args={"command": f"curl -H 'Authorization: {FAKE_KEY}' x", "env": {"keys": [FAKE_KEY]}},
             decision="allow", by="user:once", reason=f"approved with {FAKE_KEY}")
    for row in storage.db.conn.execute("SELECT * FROM audit"):
        assert all(FAKE_KEY not in str(value) for value in row)
    storage.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
    for file in storage.home.glob("aios.db*"):
        assert FAKE_KEY.encode() not in file.read_bytes()
    row = ac.audit_rows()[0]
    assert "[REDACTED]" in row["args"]["command"] and row["args"]["env"]["keys"] == ["[REDACTED]"]
    assert ac.verify().ok


def test_unusual_argument_values_are_stored_as_text(ac: AccessControl) -> None:
    ac.audit(user="alice", pid=1, program="p", tool="t", args={"path": Path("a/b"), "n": 3, "x": None},
             decision="deny", by="policy")
    assert ac.audit_rows()[0]["args"] == {"path": "a/b", "n": 3, "x": None}
    assert ac.verify().ok


def test_two_kernels_on_one_database_keep_one_chain(tmp_path: Path) -> None:
    stores = [Storage(tmp_path), Storage(tmp_path)]
    try:
        controls = [AccessControl(s, tmp_path) for s in stores]

        def work(ac: AccessControl, who: str) -> None:
            log(ac, 25, user=who)

        threads = [threading.Thread(target=work, args=(ac, f"k{i}")) for i, ac in enumerate(controls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for ac in controls:
            check = ac.verify()
            assert check.ok, check.message
            assert check.rows == 50
    finally:
        for s in stores:
            s.close()
