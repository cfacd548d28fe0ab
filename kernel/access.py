"""Access control: users and groups, rules and grants, trusted project configs, the audit log.

`check(user, tool, target, workspace)` gathers the rules that apply and decides: **any matching deny
→ deny; else any matching allow → allow; else ask** (a person decides). Rules come from
- the policy file `$AIOS_HOME/policy.toml` ("policy"), or the built-in defaults when it has no
  `[default]` table or there is no file ("default": fs.read, fs.list, calc, memory.search, memory.add);
- standing grants in the database, per user ("grant:always"), and grants held in memory by this
  AccessControl, per user ("grant:session");
- `--yes-for RULE` on the command line: allows for every user in this session ("yes-for");
- the workspace's `.aios/policy.toml` ("project"): its `[default]` allow rules count only once a
  person has trusted that exact file (`trust` records its sha256; an edit makes it untrusted again);
  its deny rules always count, since a project can make things stricter without being trusted.

The policy file (TOML; re-read when it changes; a broken file is reported in `policy_error` and
ignored, as if it were absent)::

    admins = ["alice"]            # besides the kernel's admins and users added with admin=1

    [default]                     # everyone; replaces the built-in defaults
    allow = ["fs.read(*)", "fs.list(*)", "calc", "memory.search(*)"]
    deny = []

    [users.alice]
    allow = ["shell(git status*)"]
    deny = ["shell(rm *)"]

    [groups]                      # membership only ...
    dev = ["alice", "bob"]

    [groups.ops]                  # ... or membership with rules
    members = ["carol"]
    allow = ["shell(systemctl status*)"]

Users and groups also live in the `users` table (`add_user`, by an admin). Every tool call is written
to the hash-chained, append-only audit log (`kernel/audit.py`; `audit`, `verify` here hand it on).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.access_rules import BUILTIN_DEFAULTS, Policy, PolicyError, Rule, RuleSet, parse_policy
from kernel.audit import AuditCheck, AuditLog
from kernel.beneath import NotRegular, read_beneath
from kernel.errors import InvalidArgument, PermissionDenied
from kernel.storage import Storage

__all__ = ["AccessControl", "AuditCheck", "Rule", "Verdict"]

PROJECT_FILE = ".aios/policy.toml"
PROJECT_CAP = 64 * 1024  # a project policy file larger than this is not read (and decides nothing)
SCOPES = ("session", "always")
EFFECTS = ("allow", "deny")
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True)
class Verdict:
    effect: str  # "allow" | "deny" | "ask"
    rule: str | None  # the rule that decided, or None for ask
    source: str  # "policy" | "grant:always" | "grant:session" | "yes-for" | "project" | "default"


@dataclass(frozen=True)
class _Grant:
    rule: Rule
    effect: str
    by: str
    created_at: float


class AccessControl:
    """Decides tool calls, keeps grants and trusted project configs, and writes the audit log."""

    def __init__(self, storage: Storage, home: Path, admins: frozenset[str] = frozenset({"root"}),
                 yes_for: Iterable[str] = (), clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.home = Path(home)
        self.admins = frozenset(admins)
        self.clock = clock
        self.yes_for = [Rule.parse(text) for text in yes_for]  # a bad rule → ValueError for the CLI
        self.policy_error: str | None = None
        self._policy = Policy()
        self._policy_sig: tuple[int, int, int] | None = None
        self._session: dict[str, list[_Grant]] = {}
        self._projects: dict[Path, tuple[tuple[int, ...], str, RuleSet | None]] = {}
        self._lock = threading.Lock()
        self.log = AuditLog(storage, self.home, clock)

    @property
    def policy_path(self) -> Path:
        return self.home / "policy.toml"

    # -- the policy file ---------------------------------------------------------------------------
    def policy(self) -> Policy:
        """The policy file's rules, re-read when the file changes (size, mtime or inode)."""
        try:
            st = self.policy_path.stat()
            sig: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        if sig != self._policy_sig:
            self._policy_sig = sig
            self._policy, self.policy_error = Policy(), None
            if sig is not None:
                try:
                    self._policy = parse_policy(self.policy_path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, PolicyError) as exc:
                    self.policy_error = f"{self.policy_path}: {exc}"
        return self._policy

    def _defaults(self) -> tuple[str, str, RuleSet]:
        """The rules for everyone: the policy's [default] table, else the built-in defaults."""
        default = self.policy().default
        if default is None:
            return "default", "*", RuleSet(allow=[Rule.parse(t) for t in BUILTIN_DEFAULTS])
        return "policy", "*", default

    def _policy_rules(self, user: str) -> list[tuple[str, str, RuleSet]]:
        """(source, owner, rules) from the policy file that apply to `user`."""
        policy = self.policy()
        out = [self._defaults()]
        if user in policy.users:
            out.append(("policy", user, policy.users[user]))
        for group in self.groups_of(user):
            if group in policy.groups:
                out.append(("policy", f"@{group}", policy.groups[group]))
        return out

    # -- users and groups --------------------------------------------------------------------------
    def _db_users(self) -> dict[str, dict[str, Any]]:
        rows = self.storage.db.conn.execute("SELECT name, groups, admin FROM users").fetchall()
        out = {}
        for name, groups, admin in rows:
            try:
                parsed = json.loads(groups or "[]")
            except ValueError:
                parsed = []
            out[name] = {"groups": [g for g in parsed if isinstance(g, str)], "admin": bool(admin)}
        return out

    def is_admin(self, user: str) -> bool:
        if user in self.admins or user in self.policy().admins:
            return True
        return bool(self._db_users().get(user, {}).get("admin"))

    def groups_of(self, user: str) -> list[str]:
        groups = {g for g, members in self.policy().members.items() if user in members}
        groups.update(self._db_users().get(user, {}).get("groups", []))
        return sorted(groups)

    def users(self) -> list[dict[str, Any]]:
        """Everyone known from the policy file, the kernel's admins and the users table."""
        policy, db = self.policy(), self._db_users()
        names = set(db) | set(self.admins) | set(policy.admins) | set(policy.users)
        for members in policy.members.values():
            names.update(members)
        return [{"name": n, "groups": self.groups_of(n), "admin": self.is_admin(n),
                 "source": "db" if n in db else "policy"} for n in sorted(names)]

    def add_user(self, name: str, groups: Iterable[str] = (), admin: bool = False, by: str = "") -> None:
        """Add (or update) a user in the users table; only an admin may."""
        if not self.is_admin(by):
            raise PermissionDenied(f"cannot add user {name!r}: only an admin may add users")
        bad = [n for n in (name, *groups) if not _USER_NAME.fullmatch(n)]
        if bad:
            raise InvalidArgument(f"{bad[0]!r} is not a valid user or group name")
        with self._lock, self.storage.db.conn:
            self.storage.db.conn.execute(
                "INSERT INTO users (name, groups, admin, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) "
                "DO UPDATE SET groups = excluded.groups, admin = excluded.admin",
                [name, json.dumps(sorted(set(groups))), int(admin), self.clock()],
            )

    # -- project configs ---------------------------------------------------------------------------
    @staticmethod
    def _project_file(path: Path) -> Path:
        path = Path(path)
        return path / ".aios" / "policy.toml" if path.is_dir() else path

    def trust(self, path: Path, user: str) -> None:
        """Trust a workspace's `.aios/policy.toml` (or that file) as it is now."""
        file = self._project_file(path)
        try:
            digest = hashlib.sha256(_read_project(file)).hexdigest()
        except NotRegular:
            raise InvalidArgument(f"cannot trust {file}: not a regular file") from None
        except ValueError as exc:
            raise InvalidArgument(f"cannot trust {file}: too large (limit {PROJECT_CAP} bytes)") from exc
        except OSError as exc:
            raise InvalidArgument(f"cannot trust {file}: {exc.strerror or exc}") from None
        with self._lock, self.storage.db.conn:
            self.storage.db.conn.execute(
                "INSERT INTO trusted (path, sha256, user, ts) VALUES (?, ?, ?, ?) ON CONFLICT(path) "
                "DO UPDATE SET sha256 = excluded.sha256, user = excluded.user, ts = excluded.ts",
                [str(file.resolve()), digest, user, self.clock()],
            )

    def _trusted_digest(self, file: Path) -> str | None:
        row = self.storage.db.conn.execute("SELECT sha256 FROM trusted WHERE path = ?",
                                           [str(file.resolve())]).fetchone()
        return row[0] if row else None

    def is_trusted(self, path: Path) -> bool:
        file = self._project_file(path)
        try:
            digest = hashlib.sha256(_read_project(file)).hexdigest()
        except (OSError, ValueError):
            return False
        return self._trusted_digest(file) == digest

    def _project(self, workspace: Path) -> tuple[RuleSet | None, bool]:
        """The workspace's project rules (None: no usable file) and whether that exact file is trusted."""
        file = Path(workspace) / PROJECT_FILE
        sig = _project_sig(workspace)
        if sig is None:
            return None, False
        cached = self._projects.get(file)
        if cached is None or cached[0] != sig:
            # a regular file beneath the workspace, reached through no link, read without blocking and only up
            # to PROJECT_CAP: a FIFO, a device or a link there decides nothing and cannot hang the kernel
            try:
                data = read_beneath(workspace, PROJECT_FILE, PROJECT_CAP)
                rules: RuleSet | None = parse_policy(data.decode("utf-8")).default or RuleSet()
            except (OSError, ValueError, UnicodeDecodeError, PolicyError):
                data, rules = b"", None
            cached = (sig, hashlib.sha256(data).hexdigest(), rules)
            self._projects[file] = cached
        _, digest, rules = cached
        return rules, rules is not None and self._trusted_digest(file) == digest

    def load_project(self, workspace: Path) -> None:
        """Read the workspace's project file into the cache (the tool service calls it in a worker thread)."""
        self._project(workspace)

    def project_cached(self, workspace: Path) -> bool:
        """Whether the project file is as the cache has it (or absent): then `check` reads nothing (one stat)."""
        sig = _project_sig(workspace)
        if sig is None:
            return True
        cached = self._projects.get(Path(workspace) / PROJECT_FILE)
        return cached is not None and cached[0] == sig

    # -- decisions ---------------------------------------------------------------------------------
    def _always(self, user: str) -> list[_Grant]:
        rows = self.storage.db.conn.execute(
            "SELECT pattern, effect, by, created_at FROM grants WHERE user = ? ORDER BY id", [user]
        ).fetchall()
        out = []
        for pattern, effect, by, created in rows:
            try:
                out.append(_Grant(Rule.parse(pattern), effect, by or "", created or 0.0))
            except ValueError:
                continue  # a row written by hand that is not a rule decides nothing
        return out

    def check(self, user: str, tool: str, target: str, workspace: Path | None = None) -> Verdict:
        """allow, deny or ask for `user` calling `tool` on `target` (deny beats allow, from any source)."""
        candidates: list[tuple[str, str, Rule]] = []  # (effect, source, rule)
        for source, _owner, rules in self._policy_rules(user):
            candidates += [("deny", source, r) for r in rules.deny] + [("allow", source, r) for r in rules.allow]
        if workspace is not None:
            project, trusted = self._project(workspace)
            if project is not None:
                candidates += [("deny", "project", r) for r in project.deny]
                if trusted:
                    candidates += [("allow", "project", r) for r in project.allow]
        candidates += [(g.effect, "grant:always", g.rule) for g in self._always(user)]
        candidates += [(g.effect, "grant:session", g.rule) for g in self._session.get(user, [])]
        candidates += [("allow", "yes-for", r) for r in self.yes_for]
        for wanted in EFFECTS[::-1]:  # deny first
            for effect, source, rule in candidates:
                if effect == wanted and rule.matches(tool, target, effect):
                    return Verdict(effect, str(rule), source)
        return Verdict("ask", None, "default")

    def grant(self, user: str, rule: str | Rule, scope: str = "session", effect: str = "allow",
              by: str = "") -> Rule:
        """Allow (or deny) `rule` for `user`: for this session (memory) or always (the database)."""
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
        if effect not in EFFECTS:
            raise ValueError(f"effect {effect!r}: expected allow or deny")
        parsed = rule if isinstance(rule, Rule) else Rule.parse(rule)
        now = self.clock()
        if scope == "session":
            held = self._session.setdefault(user, [])
            if not any(g.rule == parsed and g.effect == effect for g in held):
                held.append(_Grant(parsed, effect, by, now))
            return parsed
        with self._lock, self.storage.db.conn:
            conn = self.storage.db.conn
            conn.execute("BEGIN IMMEDIATE")
            exists = conn.execute("SELECT 1 FROM grants WHERE user = ? AND pattern = ? AND effect = ?",
                                  [user, str(parsed), effect]).fetchone()
            if not exists:
                conn.execute("INSERT INTO grants (user, pattern, effect, by, created_at) VALUES (?, ?, ?, ?, ?)",
                             [user, str(parsed), effect, by, now])
        return parsed

    def revoke(self, user: str, rule: str | Rule) -> int:
        """Remove `rule` from `user`'s session and standing grants (either effect); how many went."""
        text = str(rule if isinstance(rule, Rule) else Rule.parse(rule))
        held = self._session.get(user, [])
        kept = [g for g in held if str(g.rule) != text]
        removed = len(held) - len(kept)
        self._session[user] = kept
        with self._lock, self.storage.db.conn:
            cur = self.storage.db.conn.execute("DELETE FROM grants WHERE user = ? AND pattern = ?", [user, text])
        return removed + cur.rowcount

    def grants(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every rule in force (for `user`, or everyone): policy, defaults, yes-for, always, session."""
        out: list[dict[str, Any]] = []

        def add(owner: str, rule: Rule, effect: str, scope: str, by: str, created: float | None) -> None:
            out.append({"user": owner, "rule": str(rule), "effect": effect, "scope": scope, "by": by,
                        "created_at": created})

        policy = self.policy()
        if user is not None:
            sets = self._policy_rules(user)
        else:
            sets = [self._defaults()]
            sets += [("policy", name, rs) for name, rs in sorted(policy.users.items())]
            sets += [("policy", f"@{name}", rs) for name, rs in sorted(policy.groups.items())]
        for source, owner, rules in sets:
            by = "built-in" if source == "default" else "policy.toml"
            for effect in EFFECTS:
                for rule in getattr(rules, effect):
                    add(owner, rule, effect, source, by, None)
        for rule in self.yes_for:
            add("*", rule, "allow", "yes-for", "--yes-for", None)
        where, args = ("WHERE user = ?", [user]) if user is not None else ("", [])
        rows = self.storage.db.conn.execute(
            f"SELECT user, pattern, effect, by, created_at FROM grants {where} ORDER BY id", args
        ).fetchall()
        for owner, pattern, effect, by, created in rows:
            out.append({"user": owner, "rule": pattern, "effect": effect, "scope": "always", "by": by or "",
                        "created_at": created})
        for owner, held in sorted(self._session.items()):
            if user is None or owner == user:
                for g in held:
                    add(owner, g.rule, g.effect, "session", g.by, g.created_at)
        return out

    # -- audit: kept by kernel/audit.py ----------------------------------------------------------------
    def audit(self, *, user: str, pid: int, program: str, tool: str, args: dict[str, Any], decision: str,
              by: str, reason: str = "") -> int:
        """Append one decision to the hash-chained audit log (committed at once); returns its id."""
        return self.log.append(user=user, pid=pid, program=program, tool=tool, args=args, decision=decision,
                               by=by, reason=reason)

    def audit_rows(self, limit: int | None = None, user: str | None = None,
                   pid: int | None = None) -> list[dict[str, Any]]:
        return self.log.rows(limit, user, pid)

    def verify(self) -> AuditCheck:
        return self.log.verify()

    @property
    def anchor_path(self) -> Path:
        return self.log.anchor_path

    def close(self) -> None:
        self.log.close()


def _project_sig(workspace: Path) -> tuple[int, ...] | None:
    """What tells one version of the workspace's project file from another (None: there is none)."""
    try:
        st = os.lstat(os.path.join(workspace, PROJECT_FILE))
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def _read_project(file: Path) -> bytes:
    """A project policy file a person names (`trust FILE`): regular, not a link, capped, read without blocking."""
    return read_beneath(file.parent, file.name, PROJECT_CAP)
