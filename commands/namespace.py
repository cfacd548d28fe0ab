"""The read-only aios namespace that `ls` and `cat` show, as /proc shows a Unix kernel.

    /proc/PID/{status,context,log,tools}   a process: its state, its conversation, its output, its tool calls
    /proc/PID/files/PATH                   the files its tools wrote (latest version; `files log` has them all)
    /proc/kmsg                             the kernel's own messages (`dmesg`)
    /agents/NAME   /tools/NAME   /users/NAME   /models/NAME   /mem/ID   /audit

Any other path is a file or directory of the real file system, read-only here too.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commands.registry import CommandError
from kernel.api import ContextCompacted, ContextSwitched, KernelError, NoSuchProcess, SyscallDone, strip_controls

if TYPE_CHECKING:
    from aios_shell.shell import Shell
    from kernel.api import Process

ROOTS = ("agents", "audit", "mem", "models", "proc", "tools", "users")
PROC_FILES = ("status", "context", "log", "tools")
PROC_DIRS = ("files",)


@dataclass
class Entry:
    name: str
    path: str
    type: str  # "dir" | "file"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "type": self.type}


def normalize(path: str) -> str:
    return posixpath.normpath("/" + path.strip("/")) if path.startswith("/") else path


def in_namespace(path: str) -> bool:
    parts = normalize(path).strip("/").split("/")
    return path.startswith("/") and (parts == [""] or parts[0] in ROOTS)


def _missing(path: str) -> CommandError:
    return CommandError(f"{path}: No such file or directory")


def _proc(sh: Shell, text: str, path: str) -> Process:
    if not text.isdigit():
        raise _missing(path)
    try:
        return sh.api.process(int(text))
    except NoSuchProcess:
        raise _missing(path) from None


def users(sh: Shell) -> list[str]:
    return sh.api.user_names()


def tools(sh: Shell) -> dict[str, str]:
    """Tool name → description, from the kernel's tool registry."""
    return {t.name: t.description for t in sh.api.tools()}


def audit_text(sh: Shell, limit: int | None = None) -> str:
    """The audit log as lines; an admin sees every user's calls, anyone else their own."""
    lines = []
    for r in sh.api.audit(limit=limit):
        args = json.dumps(r.args, ensure_ascii=False)
        lines.append(f"{r.id} {fmt_ts(r.ts)} {r.user} pid={r.pid} {r.program} {r.tool} {args} "
                     f"{r.decision} by={r.by}{' (' + r.reason + ')' if r.reason else ''}\n")
    return strip_controls("".join(lines))


def kmsg_text(sh: Shell) -> str:
    """The kernel's messages, one a line: `2026-12-02 13:20:01 error: event handler … failed …`."""
    try:
        messages = sh.api.kmsg()
    except KernelError as exc:
        raise CommandError(str(exc)) from None
    return "".join(f"{fmt_ts(m.ts)} {m.level}: {m.text}\n" for m in messages)


def fmt_ts(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def memories(sh: Shell) -> dict[str, str]:
    return {str(r["id"]): r["text"] for r in sh.api.notes(limit=1000)}


def _owned(sh: Shell, proc: Process, path: str) -> None:
    if not sh.api.may_manage(proc.user):
        raise CommandError(f"{path}: Permission denied")


async def models(sh: Shell) -> list[str]:
    return await sh.api.list_models()


async def listdir(sh: Shell, path: str) -> list[Entry]:
    """The entries of a namespace directory; raises CommandError when it is not one."""
    norm = normalize(path)
    parts = norm.strip("/").split("/") if norm != "/" else []
    if not parts:
        return [Entry(name, "/" + name, "file" if name == "audit" else "dir") for name in ROOTS]
    root, rest = parts[0], parts[1:]
    if root == "audit":
        raise CommandError(f"{norm}: Not a directory")
    if root == "proc":
        if not rest:
            return [Entry(str(p.pid), f"/proc/{p.pid}", "dir") for p in sh.api.ps(all=True)] + [
                Entry("kmsg", "/proc/kmsg", "file")]
        if rest == ["kmsg"]:
            raise CommandError(f"{norm}: Not a directory")
        if len(rest) == 1:
            _proc(sh, rest[0], norm)
            return [Entry(name, f"{norm}/{name}", "file") for name in PROC_FILES] + [
                Entry(name, f"{norm}/{name}", "dir") for name in PROC_DIRS]
        if len(rest) == 2 and rest[1] == "files":
            proc = _proc(sh, rest[0], norm)
            _owned(sh, proc, norm)
            return [Entry(f["path"], f"{norm}/{f['path']}", "file") for f in sh.api.files(proc.pid)]
        if len(rest) == 2 and rest[1] in PROC_FILES:
            _proc(sh, rest[0], norm)
            raise CommandError(f"{norm}: Not a directory")
        raise _missing(norm)
    names: list[str]
    if root == "agents":
        names = list(sh.api.agents())
    elif root == "tools":
        await sh.api.load_tools()  # the MCP servers' tools too: listing them is a need
        names = sorted(tools(sh))
    elif root == "users":
        names = users(sh)
    elif root == "mem":
        names = list(memories(sh))
    else:
        names = await models(sh)
    if not rest:
        return [Entry(n, f"/{root}/{n}", "file") for n in names]
    if len(rest) == 1 and rest[0] in names:
        raise CommandError(f"{norm}: Not a directory")
    raise _missing(norm)


async def read(sh: Shell, path: str) -> str:
    """The text of a namespace file; raises CommandError for a directory or a missing path."""
    norm = normalize(path)
    parts = norm.strip("/").split("/") if norm != "/" else []
    if parts == ["audit"]:
        return audit_text(sh)
    if parts == ["proc", "kmsg"]:
        return kmsg_text(sh)
    if parts[:1] == ["proc"] and len(parts) >= 4 and parts[2] == "files":
        proc = _proc(sh, parts[1], norm)
        _owned(sh, proc, norm)
        rel = "/".join(parts[3:])
        versions = sh.api.file_log(proc.pid, rel)
        if not versions:
            raise _missing(norm)
        data = sh.api.file_version(proc.pid, rel, max(v["version"] for v in versions))
        return strip_controls(data.decode("utf-8", errors="replace"))
    if len(parts) <= 1 or (parts[0] == "proc" and len(parts) == 2):
        await listdir(sh, norm)  # a missing one says so
        raise CommandError(f"{norm}: Is a directory")
    root, name = parts[0], parts[1]
    if root == "proc":
        if len(parts) != 3 or parts[2] not in PROC_FILES:
            raise _missing(norm)
        return proc_file(sh, _proc(sh, name, norm), parts[2])
    if len(parts) != 2:
        raise _missing(norm)
    if root == "agents":
        found = sh.api.agents()
        if name not in found:
            raise _missing(norm)
        return f"name: {name}\nsource: {found[name]}\nrun: run {name} ARGS…\n"
    if root == "tools":
        await sh.api.load_tools()
        found_tools = sh.api.tools([name])
        if not found_tools:
            raise _missing(norm)
        tool = found_tools[0]
        params = json.dumps(tool.schema["function"]["parameters"], indent=2)
        return f"name: {name}\n{tool.description}\ntimeout: {tool.timeout:g}s\nparameters: {params}\n"
    if root == "mem":
        found_mem = memories(sh)
        if name not in found_mem:
            raise _missing(norm)
        return strip_controls(found_mem[name]) + "\n"
    if root == "users":
        if name not in users(sh):
            raise _missing(norm)
        procs = sh.api.ps(all=True, user=name)
        admin = "yes" if sh.api.is_admin(name) else "no"
        running = sum(p.alive for p in procs)
        return f"user: {name}\nadmin: {admin}\nprocesses: {len(procs)} ({running} running)\n"
    if name not in await models(sh):
        raise _missing(norm)
    info = sh.api.describe()["backend"] if name == sh.api.model().model else {"model": name}
    return "".join(f"{k}: {v}\n" for k, v in info.items())


def proc_file(sh: Shell, proc: Process, name: str) -> str:
    if name != "status":  # what a process said and did is its owner's (and an admin's) to read
        _owned(sh, proc, f"/proc/{proc.pid}/{name}")
    if name == "status":
        fields = sh.api.status(proc)
        fields["argv"] = json.dumps(fields["argv"], ensure_ascii=False)
        for key in ("created_at", "started_at", "ended_at"):  # as a person reads a time; --json keeps the number
            if isinstance(fields.get(key), float):
                fields[key] = fmt_ts(fields[key])
        return "".join(f"{k}: {'' if v is None else v}\n" for k, v in fields.items())
    if name == "log":
        return "".join(proc.output)
    if name == "context":
        return context_header(sh, proc) + "".join(
            f"[{m.role}]\n{m.content}\n\n" for m in sh.api.transcript(proc.pid))
    calls = [e for e in sh.api.events(pid=proc.pid, types=(SyscallDone,)) if isinstance(e, SyscallDone)]
    return "".join(f"{c.call} ok={c.ok} wait={c.wait_s:.3f}s "
                   f"service={c.service_s:.3f}s{' error=' + c.error if c.error else ''}\n"
                   for c in calls if c.call != "llm")


def context_header(sh: Shell, proc: Process) -> str:
    """Used/window tokens, compactions and switches: from the events, so earlier runs' processes have them too."""
    window = proc.ctx_window or sh.api.context_window()
    events = sh.api.events(pid=proc.pid, types=(ContextCompacted, ContextSwitched))
    compacted = [e for e in events if isinstance(e, ContextCompacted)]
    cost = sum(e.cost_s for e in events if isinstance(e, ContextSwitched))
    last = compacted[-1] if compacted else None
    note = (f" (last: {last.dropped_turns} turns dropped, {last.before_tokens} → {last.after_tokens} "
            f"tokens, {last.how})" if last else "")
    used = proc.usage().ctx_tokens
    held = sh.api.model_holds(proc.pid) if proc.alive else None
    return (f"used: {used} / {window} tokens ({100 * used / window:.0f}%)\n"
            + (f"model holds: {held}\n" if held else "") +
            f"compactions: {len(compacted)}{note}\n"
            f"switches: {proc.ctx_switches}\n"
            f"switch cost: {1000 * cost:.1f} ms total\n\n")


def real_path(sh: Shell, path: str) -> Path:
    return sh.host_path(path)
