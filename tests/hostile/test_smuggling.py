"""Rule smuggling: an allowed prefix (`shell(git status*)`) must never stretch to a second command.

Each smuggled command carries `touch marker` aimed at the workspace; with nobody to ask it is denied and
audited, with a person attached it is asked (never allowed by the rule) — and the marker never appears.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kernel.kernel import Kernel, boot
from kernel.llm.simulated import SimulatedBackend
from kernel.tools.sandbox import sandbox_uid
from tests.conftest import make_config
from tests.hostile.conftest import answer_next, audit, call, run_calls, start_calls, watch_requests

pytestmark = pytest.mark.hostile

# Shell metacharacters: a shell would run `touch marker` after (or inside) the allowed `git status`.
CHAINED = {
    "and": "git status && touch marker",
    "semicolon": "git status; touch marker",
    "pipe": "git status | touch marker",
    "newline": "git status\ntouch marker",
    "carriage-return": "git status\rtouch marker",
    "subst": "git status $(touch marker)",
    "backticks": "git status `touch marker`",
    "redirect": "git status > marker",
    "append": "git status >> marker",
    "background": "git status & touch marker",
    "or": "git status || touch marker",
    "brace": "git status ${IFS}&&touch marker",
    "process-subst": "git status <(touch marker)",
}
# Wrappers and interpreters that run their arguments as a command.
WRAPPED = {
    "eval": "eval 'git status; touch marker'",
    "bash -c": "bash -c 'git status; touch marker'",
    "sh -c": "sh -c 'touch marker'",
    "env": "env X=1 touch marker",
    "timeout": "timeout 5 touch marker",
    "nice": "nice touch marker",
    "nohup": "nohup touch marker",
    "xargs": "xargs touch marker",
}
# The same wrappers when the glob itself would match them (`*git status*`): the wrapper check must refuse.
GLOB_WRAPPED = {
    "bash -c": "bash -c 'touch marker' git status",
    "sh -c": "sh -c 'touch marker' git status",
    "env": "env X=1 touch marker git status",
    "env path": "/usr/bin/env touch marker git status",
    "env quoted": "'e'nv touch marker git status",
    "timeout": "timeout 5 touch marker git status",
    "nice": "nice -n 5 touch marker git status",
    "nohup": "nohup touch marker git status",
    "setsid": "setsid touch marker git status",
    "busybox": "busybox touch marker git status",
}


def smuggled_files(workspace: Path) -> list[str]:
    return sorted(p.name for p in workspace.iterdir() if p.name in ("marker", "git", "status"))


async def shell_denied(kernel: Kernel, command: str) -> None:
    """`command` is denied with nobody to ask, audited once as such, and leaves no marker."""
    proc, out = await run_calls(kernel, [call("shell", command=command)])
    assert out[0].startswith("ERR permission denied: shell("), out
    assert audit(kernel, proc.pid) == [("shell", "deny", "no terminal", {"command": command})]
    assert smuggled_files(kernel.workspace(proc)) == []


async def test_the_grant_itself_allows_plain_git_status(kernel: Kernel) -> None:
    """The control: the grant does allow the real command, so each denial below is the smuggling's doing."""
    kernel.access.grant("alice", "shell(git status*)", scope="always")
    proc, out = await run_calls(kernel, [call("shell", command="git status --short")])
    assert "permission denied" not in out[0] and "not a git repository" in out[0], out  # git ran (and said so)
    assert audit(kernel, proc.pid) == [("shell", "allow", "grant:always", {"command": "git status --short"})]


@pytest.mark.parametrize("command", list(CHAINED.values()), ids=list(CHAINED))
async def test_metacharacters_after_an_allowed_prefix_are_denied(kernel: Kernel, command: str) -> None:
    kernel.access.grant("alice", "shell(git status*)", scope="always")
    await shell_denied(kernel, command)


@pytest.mark.parametrize("command", list(WRAPPED.values()), ids=list(WRAPPED))
async def test_wrappers_are_denied(kernel: Kernel, command: str) -> None:
    kernel.access.grant("alice", "shell(git status*)", scope="always")
    await shell_denied(kernel, command)


@pytest.mark.parametrize("command", list(GLOB_WRAPPED.values()), ids=list(GLOB_WRAPPED))
async def test_wrappers_a_loose_glob_would_match_are_denied(kernel: Kernel, command: str) -> None:
    kernel.access.grant("alice", "shell(*git status*)", scope="always")
    await shell_denied(kernel, command)


async def test_the_marker_check_can_see_a_smuggled_command_run(kernel: Kernel) -> None:
    """The control for the marker: with `shell(*)` (anything goes) the same wrapper does create it."""
    kernel.access.grant("alice", "shell(*)", scope="always")
    proc, out = await run_calls(kernel, [call("shell", command="bash -c 'touch marker' git status")])
    assert out[0].startswith("ok"), out
    assert smuggled_files(kernel.workspace(proc)) == ["marker"]


@pytest.mark.parametrize("command", ["echo hi; touch marker", "echo hi && touch marker", "echo hi > marker",
                                     "echo hi\ntouch marker", "echo hi $(touch marker)"])
async def test_yes_for_an_echo_prefix_is_not_stretched(home: Path, command: str) -> None:
    kernel = await boot(make_config(home, yes_for=("shell(echo hi*)",)), backend=SimulatedBackend())
    try:
        await shell_denied(kernel, command)
        proc, out = await run_calls(kernel, [call("shell", command="echo hi there")])
        assert out == ["ok hi there"]
        assert audit(kernel, proc.pid) == [("shell", "allow", "yes-for", {"command": "echo hi there"})]
    finally:
        await kernel.shutdown()


@pytest.mark.parametrize("command", ["git status && touch marker", "bash -c 'git status; touch marker'"])
async def test_with_a_person_attached_a_smuggled_command_is_asked_not_allowed(kernel: Kernel, command: str) -> None:
    kernel.access.grant("alice", "shell(git status*)", scope="always")
    asked = watch_requests(kernel)
    detach = kernel.permissions.attach()
    try:
        proc = start_calls(kernel, [call("shell", command=command)])
        request = await answer_next(kernel, "deny")
        await kernel.wait(proc.pid)
    finally:
        detach()
    assert [(r.tool, r.args) for r in asked] == [("shell", {"command": command})]
    assert request.pid == proc.pid and request.user == "alice"
    assert "".join(proc.output).startswith("ERR permission denied: shell(")
    assert audit(kernel, proc.pid) == [("shell", "deny", "user", {"command": command})]
    assert smuggled_files(kernel.workspace(proc)) == []


async def test_a_once_answer_to_an_exact_command_does_not_cover_a_longer_one(kernel: Kernel) -> None:
    """A person's `session` answer for `echo hi` is that literal command: `echo hi; touch marker` asks again."""
    asked = watch_requests(kernel)
    detach = kernel.permissions.attach()
    try:
        first = start_calls(kernel, [call("shell", command="echo hi")])
        await answer_next(kernel, "session")
        await kernel.wait(first.pid)
        second = start_calls(kernel, [call("shell", command="echo hi; touch marker")])
        await answer_next(kernel, "deny")
        await kernel.wait(second.pid)
    finally:
        detach()
    assert [r.args["command"] for r in asked] == ["echo hi", "echo hi; touch marker"]
    assert audit(kernel) == [("shell", "allow", "user:session", {"command": "echo hi"}),
                             ("shell", "deny", "user", {"command": "echo hi; touch marker"})]
    assert smuggled_files(kernel.workspace(second)) == []


@pytest.fixture
def open_workspace(open_parent: Path) -> Path:
    """A workspace (not made yet) whose parents the sandbox uid can traverse, so git runs."""
    return open_parent / "ws"


async def test_an_agent_cannot_plant_git_config_that_git_status_would_run(
        kernel: Kernel, open_workspace: Path) -> None:
    kernel.access.grant("alice", "shell(git status*)", scope="always")
    kernel.access.grant("alice", "fs.write(workspace/**)", scope="always")
    proc, out = await run_calls(kernel, [
        call("fs.write", path=".git/HEAD", content="ref: refs/heads/main\n"),
        call("fs.write", path=".git/config", content="[core]\n\tfsmonitor = touch marker; false\n"),
        call("fs.write", path="sub/.GIT/config", content="[core]\n\tfsmonitor = touch marker; false\n"),
        call("fs.write", path=".git", content="gitdir: evil\n"),
    ], workspace=open_workspace)
    assert all(line.startswith("ERR") and "writing git's own files is refused" in line for line in out), out
    assert [d for _, d, _, _ in audit(kernel, proc.pid)] == ["allow"] * 4  # the grant allowed; the tool refused
    assert smuggled_files(open_workspace) == [] and not (open_workspace / ".git").exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_git_status_in_a_repository_with_hostile_config_runs_no_command(
        kernel: Kernel, open_workspace: Path) -> None:
    """A repository that arrived with an fsmonitor/hook config (a clone): the tool's git ignores them."""
    open_workspace.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(open_workspace)], check=True)
    (open_workspace / ".git" / "config").write_text(
        "[core]\n\tfsmonitor = touch marker; false\n\thooksPath = hooks\n[safe]\n\tdirectory = *\n")
    os.chown(open_workspace, sandbox_uid("alice"), sandbox_uid("alice")) if os.geteuid() == 0 else None
    for path in open_workspace.rglob("*"):
        os.chown(path, sandbox_uid("alice"), sandbox_uid("alice")) if os.geteuid() == 0 else None
    kernel.access.grant("alice", "shell(git status*)", scope="always")
    proc, out = await run_calls(kernel, [call("shell", command="git status")], workspace=open_workspace)
    assert "On branch main" in "\n".join(out), out  # git ran
    assert [(t, d, b) for t, d, b, _ in audit(kernel, proc.pid)] == [("shell", "allow", "grant:always")]
    assert smuggled_files(open_workspace) == []
