"""Access rules: `tool(pattern)` globs, the shell-command analysis behind them, and policy files.

A rule is a glob on the tool name and, optionally, a glob on the call's target string (matched with
`fnmatch.fnmatchcase`, so `*` crosses `/`): `shell(git status*)`, `fs.write(workspace/**)`, `calc`.
`tool` and `tool(*)` match any arguments; `tool()` matches only an empty target.

Shell commands get special care, because a glob cannot see what a shell will do:
- an ALLOW rule for `shell` whose pattern is not exactly `*` matches only a *simple* command (no shell
  metacharacters, splits with shlex) whose first word is not a wrapper or interpreter (`eval`, `env`,
  `timeout`, `bash`, `python`, …) unless the pattern itself starts with that word. A pattern without any
  wildcard (as `Rule.for_call` makes) matches exactly that one string and nothing else.
- a DENY rule matches broadly: the whole command, each piece between metacharacters, each piece with
  quotes resolved, leading `VAR=value` and wrappers (with their options) stripped, and the strings
  inside `sh -c "…"`, `eval …`, `script -c …`, recursively.

For `fs.*` tools the target is a path: an allow rule must match it both as given and normalised
(`a/../b` → `b`); a deny rule matches either form.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

WRAPPERS = frozenset(
    "eval exec env timeout nice nohup xargs sudo doas su sh bash zsh dash fish python python3 perl ruby node "
    "command builtin time stdbuf setsid chroot busybox watch strace script ionice chrt flock taskset setpriv "
    "nsenter unshare rbash ksh mksh csh tcsh numactl prlimit runuser sg systemd-run cgexec ltrace valgrind "
    "awk gawk mawk nawk firejail faketime".split()
)
INTERPRETERS = frozenset(
    "sh bash rbash zsh dash fish ksh mksh csh tcsh su runuser sg flock script busybox python python3 perl ruby node "
    "awk gawk mawk nawk".split()
)
# flags with which a program runs another program (or a command string): a command using one is not simple,
# so an allow rule with wildcards never covers it and a person is asked. Two-letter flags match attached too
# (`-O"cmd"`).
EXEC_FLAGS: dict[str, tuple[str, ...]] = {
    "git": ("-c", "--config-env", "--exec-path", "-O", "--open-files-in-pager", "--upload-pack", "--receive-pack",
            "--exec", "-x", "--extcmd", "--ext-diff", "--textconv", "foreach", "filter-branch", "run"),
    "tar": ("--checkpoint-action", "--to-command", "-I", "--use-compress-program", "--info-script", "-F",
            "--new-volume-script", "--rsh-command", "--rmt-command"),
    "find": ("-exec", "-execdir", "-ok", "-okdir"),
    "rsync": ("-e", "--rsh", "--rsync-path"),
    "ssh": ("-o", "-F"), "scp": ("-o", "-F", "-S"), "sftp": ("-o", "-F", "-S"),
    "zip": ("-TT", "--unzip-command"),
    "vi": ("-c", "--cmd", "+"), "vim": ("-c", "--cmd", "+"), "nvim": ("-c", "--cmd", "+"), "ex": ("-c", "+"),
    "man": ("-P", "--pager", "-H", "--html"),
    "less": ("+",), "sed": ("e",), "make": ("-f", "--eval", "SHELL"),
}
# wrapper options that take the next word as their value (so the command starts after it)
ARG_OPTIONS: dict[str, frozenset[str]] = {
    "env": frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}),
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "sudo": frozenset({"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U"}),
    "doas": frozenset({"-u", "-C"}),
    "exec": frozenset({"-a"}),
    "xargs": frozenset({"-I", "-i", "-n", "-P", "-L", "-l", "-s", "-d", "-E", "-e", "-a"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "watch": frozenset({"-n", "--interval", "-d"}),
    "strace": frozenset({"-o", "-e", "-p", "-s", "-u", "-E"}),
    "chroot": frozenset({"--userspec", "--groups"}),
}
POSITIONAL_FIRST = frozenset({"timeout", "chroot"})  # the first plain word is the duration / new root

_UNSAFE = re.compile(r"[;&|<>$`(){}\\\x00-\x08\x0a-\x1f\x7f]")  # any of these → not a simple command
_SPLIT = re.compile(r"\$\(|[;&|<>$`(){}\n\r\x00]")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_NUMBERISH = re.compile(r"^[+-]?\d+(\.\d+)?[smhd]?$")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.*?\[\]!-]+")
_MAX_DEPTH = 4
_MAX_VIEWS = 512  # how many views of one command a deny rule looks at, at most


def _usage(text: str, why: str) -> ValueError:
    return ValueError(f"bad rule {text!r}: {why} (expected tool or tool(pattern), e.g. shell(git status*))")


def _escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def literal_of(pattern: str) -> str | None:
    """The one string `pattern` matches when it has no wildcard (`[*]` is an escaped `*`), else None."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[" and i + 2 < len(pattern) and pattern[i + 2] == "]" and pattern[i + 1] in "*?[":
            out.append(pattern[i + 1])
            i += 3
            continue
        if ch in "*?[":
            return None
        out.append(ch)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Rule:
    tool: str  # glob on the tool name: "shell", "fs.*", "*"
    pattern: str | None  # glob on the call's target string; None = any arguments

    @classmethod
    def parse(cls, text: str) -> Rule:
        """`shell(git status*)`, `fs.write(workspace/**)`, `calc`; bad text → ValueError (one line)."""
        if not isinstance(text, str) or not text.strip():
            raise _usage(str(text), "it is empty")
        text = text.strip()
        name, paren, rest = text.partition("(")
        if paren and not rest.endswith(")"):
            raise _usage(text, "the pattern must end with ')'")
        if not paren and ")" in text:
            raise _usage(text, "a ')' without '('")
        if not name:
            raise _usage(text, "missing the tool name")
        if not _TOOL_NAME.fullmatch(name):
            raise _usage(text, f"{name!r} is not a tool name (letters, digits, '.', '_', '-', or a glob)")
        return cls(name, rest[:-1] if paren else None)

    def __str__(self) -> str:
        return self.tool if self.pattern is None else f"{self.tool}({self.pattern})"

    @classmethod
    def for_call(cls, tool: str, target: str) -> Rule:
        """The rule that matches exactly this one call (glob characters escaped)."""
        return cls(_escape(tool), _escape(target))

    def matches(self, tool: str, target: str, effect: str = "allow") -> bool:
        """Does this rule, used with `effect` ("allow" or "deny"), cover `tool` called on `target`?"""
        if not fnmatchcase(tool, self.tool):
            return False
        if self.pattern is None or self.pattern == "*":
            return True
        deny = effect == "deny"
        if tool in ("shell", "net"):  # net(COMMAND): the shell commands that get the network
            if deny:
                return any(fnmatchcase(view, self.pattern) for view in shell_views(target))
            return self._allows_shell(target)
        if tool.startswith("fs.") and target:
            views = [target, _normpath(target)]
            hits = [fnmatchcase(v, self.pattern) for v in views]
            return any(hits) if deny else all(hits)
        return fnmatchcase(target, self.pattern)

    def _allows_shell(self, command: str) -> bool:
        assert self.pattern is not None
        literal = literal_of(self.pattern)
        if literal is not None:
            return command == literal  # an exact command a person approved, metacharacters and all
        words = simple_words(command)
        if words is None or runs_programs(words):
            return False
        first = next((w for w in words if not _ASSIGNMENT.match(w)), None)
        if first is not None and posixpath.basename(first) in WRAPPERS:
            pattern_words = [w for w in self.pattern.split() if not _ASSIGNMENT.match(w)]
            head = pattern_words[0] if pattern_words else ""
            if not (head == first or head.startswith(first + "*")):
                return False
        return fnmatchcase(command, self.pattern)


def _flag_hits(word: str, flag: str) -> bool:
    if flag == "+":  # vim's and less's `+cmd`
        return word.startswith("+")
    if flag == "e":  # sed's `e` command, or the `e` flag of `s/…/…/e`
        if word.startswith("s") and len(word) > 1 and not word[1].isalnum():
            parts = word.split(word[1])
            if len(parts) >= 4 and "e" in parts[-1]:
                return True
        return any(p.strip() == "e" or p.strip().startswith("e ") for p in re.split(r"[;\n]", word))
    if flag == "SHELL":
        return word.startswith("SHELL=")
    return word == flag or word.startswith(flag + "=") or (len(flag) == 2 and word.startswith(flag))


def runs_programs(words: list[str]) -> bool:
    """Whether a program among `words` is given a flag that makes it run another program (EXEC_FLAGS)."""
    for i, word in enumerate(words):
        flags = EXEC_FLAGS.get(posixpath.basename(word))
        if flags and any(_flag_hits(w, f) for w in words[i + 1:] for f in flags):
            return True
    return False


def _normpath(path: str) -> str:
    norm = posixpath.normpath(path)
    return norm[2:] if norm.startswith("./") else norm


def simple_words(command: str) -> list[str] | None:
    """The words of a simple command, or None when a shell would do more than run one program."""
    if not command.strip() or _UNSAFE.search(command):
        return None
    try:
        return shlex.split(command, posix=True)
    except ValueError:
        return None


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, posix=True)
    except ValueError:  # an unbalanced quote after splitting: take the words as they stand
        return [w.strip("'\"") for w in text.split()]


def shell_views(command: str, depth: int = 0) -> set[str]:
    """Every way a deny rule should see `command`: whole, per segment, unquoted, unwrapped, `-c` strings."""
    views = {command, command.strip()}
    if depth > _MAX_DEPTH:
        return views
    text = command.replace("\\\n", "")
    text = re.sub(r"\$\{IFS\}|\$IFS\b", " ", text)
    views.add(text.strip())
    for segment in _SPLIT.split(text):
        if segment.strip():
            views.add(segment.strip())
            _unwrap(_words(segment), views, depth)
    views.discard("")
    return views


def _unwrap(words: list[str], views: set[str], depth: int) -> None:
    """Add `words` (and the basename form) to `views`, then the command behind any leading wrapper."""
    while words and _ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words or depth > _MAX_DEPTH:
        return
    views.add(" ".join(words))
    base = posixpath.basename(words[0])
    views.add(" ".join([base, *words[1:]]))
    if base not in WRAPPERS:
        return
    rest = words[1:]
    if base == "env":  # `env -S 'rm -f x'` splits that string into the command
        for j, word in enumerate(rest):
            value = None
            if word in ("-S", "--split-string") and j + 1 < len(rest):
                value = rest[j + 1]
            elif word.startswith("--split-string="):
                value = word.split("=", 1)[1]
            elif word.startswith("-S") and len(word) > 2:
                value = word[2:]
            if value:
                views.update(shell_views(value, depth + 1))
    if len(views) < _MAX_VIEWS:  # options this table does not know: the command may start at any later word
        for j in range(1, len(rest)):
            if not rest[j].startswith("-") and len(views) < _MAX_VIEWS:
                views.add(" ".join(rest[j:]))
                views.add(" ".join([posixpath.basename(rest[j]), *rest[j + 1:]]))
    if base == "eval" and rest:
        views.update(shell_views(" ".join(rest), depth + 1))
    if base in INTERPRETERS:  # `bash -c "rm x"`, `su -c '…'`, `perl -e 'system(…)'`: look inside every word
        for word in rest:
            if not word.startswith("-"):
                views.update(shell_views(word, depth + 1))
    i, positional_skipped = 0, False
    options = ARG_OPTIONS.get(base, frozenset())
    while i < len(rest):
        word = rest[i]
        if word == "--":
            i += 1
            break
        if word.startswith("-") and len(word) > 1:
            i += 2 if word in options else 1
        elif base in POSITIONAL_FIRST and not positional_skipped:
            positional_skipped = True
            i += 1
        elif _ASSIGNMENT.match(word) or (base != "xargs" and _NUMBERISH.match(word)):
            i += 1
        else:
            break
    inner = rest[i:]
    if base == "xargs" and inner:
        inner = [*inner, "ARGS"]  # xargs appends words from its input: `xargs rm` runs `rm …`
    if inner:
        _unwrap(inner, views, depth + 1)


# -- policy files ------------------------------------------------------------------------------------
BUILTIN_DEFAULTS = ("fs.read(*)", "fs.list(*)", "calc", "memory.search", "memory.add")


@dataclass
class RuleSet:
    allow: list[Rule] = field(default_factory=list)
    deny: list[Rule] = field(default_factory=list)


@dataclass
class Policy:
    """A parsed policy.toml (see kernel.access for the format)."""

    admins: frozenset[str] = frozenset()
    default: RuleSet | None = None  # None: the built-in defaults apply
    users: dict[str, RuleSet] = field(default_factory=dict)
    groups: dict[str, RuleSet] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # group → users


class PolicyError(ValueError):
    pass


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PolicyError(f"{where} must be a list of names")
    return [v.strip() for v in value]


def _ruleset(table: Any, where: str, extra: tuple[str, ...] = ()) -> RuleSet:
    if not isinstance(table, dict):
        raise PolicyError(f"{where} must be a table")
    unknown = sorted(set(table) - {"allow", "deny", *extra})
    if unknown:
        expected = ", ".join(("allow", "deny", *extra))
        raise PolicyError(f"{where}: unknown key {unknown[0]!r} (expected {expected})")
    rules = RuleSet()
    for effect in ("allow", "deny"):
        texts = table.get(effect, [])
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise PolicyError(f"{where}.{effect} must be a list of rules")
        try:
            getattr(rules, effect).extend(Rule.parse(t) for t in texts)
        except ValueError as exc:
            raise PolicyError(f"{where}.{effect}: {exc}") from None
    return rules


def parse_policy(text: str) -> Policy:
    """Parse policy.toml text; any problem → PolicyError with one readable line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"admins", "default", "users", "groups"})
    if unknown:
        raise PolicyError(f"unknown key {unknown[0]!r} (expected admins, default, users, groups)")
    policy = Policy(admins=frozenset(_names(data.get("admins", []), "admins")))
    if "default" in data:
        policy.default = _ruleset(data["default"], "default")
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise PolicyError("users must be a table of [users.NAME] tables")
    policy.users = {name: _ruleset(t, f"users.{name}") for name, t in users.items()}
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        raise PolicyError("groups must be a table")
    for name, value in groups.items():
        if isinstance(value, list):  # [groups] dev = ["alice", "bob"]
            policy.members[name] = _names(value, f"groups.{name}")
        else:  # [groups.dev] members = [...], allow = [...], deny = [...]
            policy.groups[name] = _ruleset(value, f"groups.{name}", extra=("members",))
            policy.members[name] = _names(value.get("members", []), f"groups.{name}.members")
    return policy
