"""Two terminals, one kernel: window 1 runs the shell with agents in the background, window 2 (bash) reaches them
with one-shot `aios` commands; window 1 leaves by handing the kernel over, and the agents live on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.shell.test_tmux import screen, start_shell, tmux, wait_for_prompt
from tests.shell.test_tmux_permissions import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def type_line(name: str, line: str) -> None:
    tmux("send-keys", "-t", name, "-l", line)
    tmux("send-keys", "-t", name, "Enter")


def bash_window(cwd: Path, home: Path) -> str:
    name = f"bash-{uuid.uuid4().hex[:8]}"
    command = (f"cd {cwd} && env AIOS_HOME={home} AIOS_USER=you NO_COLOR=1 PS1='$ ' PATH={Path(sys.executable).parent}"
               f":/usr/bin:/bin bash --norc --noprofile")
    tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "40", command)
    return name


def run_in(name: str, line: str, done: str, timeout: float = 60.0) -> str:
    """Type `line` and a marker echo after it; the screen once the marker shows (the command has ended)."""
    marker = f"done-{done}"
    type_line(name, f"{line}; echo {marker} $?")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen(name, history=True)
        if any(row.startswith(marker) for row in text.splitlines()):
            return text.split(f"echo {marker} $?", 1)[1]
        time.sleep(0.05)
    raise AssertionError(f"{line!r} did not end:\n{screen(name)}")


def test_a_second_terminal_reaches_the_shells_agents_and_they_outlive_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    one = start_shell(tmp_path, home, 100, 30)
    two = bash_window(tmp_path, home)
    try:
        tmux("set-option", "-t", two, "history-limit", "5000")
        wait_for_prompt(one, 1)
        type_line(one, "run workload 5:300 &")
        wait_for_prompt(one, 2)
        type_line(one, "run workload 5:300 &")
        wait_for_prompt(one, 3)
        type_line(one, "run workload 5:301 &")
        wait_for_prompt(one, 4)

        shown = run_in(two, "aios ps", "ps")
        assert "workload 5:300" in shown and "done-ps 0" in shown
        assert len([row for row in shown.splitlines() if "workload 5:30" in row]) == 3

        # the monitor, attached: live rows, and K kills the selected one (pid 1)
        type_line(two, "aios top; echo done-top $?")
        deadline = time.monotonic() + 60
        while "workload 5:301" not in screen(two) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "aios top" in screen(two) and "workload 5:301" in screen(two)
        tmux("send-keys", "-t", two, "K")
        deadline = time.monotonic() + 30
        while "workload 5:300" in screen(two).split("workload 5:301")[0].split("CMD", 1)[-1] \
                and screen(two).count("workload 5:300") > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        tmux("send-keys", "-t", two, "q")
        deadline = time.monotonic() + 30
        while "done-top 0" not in screen(two, history=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = run_in(two, "aios ps -a", "killed")
        assert any(row.lstrip().startswith("1 ") and "EXITED(SIGKILL)" in row for row in shown.splitlines()), shown

        shown = run_in(two, "aios kill -STOP 2", "stop")
        assert "done-stop 0" in shown
        type_line(one, "jobs")
        text = wait_for_prompt(one, 5)
        assert re.search(r"\[2\]\+  Stopped +run workload 5:300", text), text  # stopped: the current job, as in bash

        shown = run_in(two, "aios -c 'run chat \"a third one\" &'", "third")
        assert "done-third 0" in shown
        shown = run_in(two, "aios -c 'wait 4; logs 4'", "logs")
        answer = [row for row in shown.splitlines() if row.strip() and not row.startswith(("$", "done-"))]
        assert answer and "done-logs 0" in shown, shown

        tmux("send-keys", "-t", one, "C-d")
        deadline = time.monotonic() + 30
        while "h hand over" not in screen(one) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "2 agents are still running: h hand over" in screen(one)  # (pid 1 was killed)
        type_line(one, "h")
        deadline = time.monotonic() + 30
        while one in tmux("ls") and time.monotonic() < deadline:  # the terminal is given back: the window ends
            time.sleep(0.05)
        assert one not in tmux("ls")

        shown = run_in(two, "aios ps", "after")
        rows = [row for row in shown.splitlines() if "workload 5:30" in row]
        assert len(rows) == 2 and any("STOPPED" in row for row in rows), shown
        shown = run_in(two, "aios serve --stop", "halt")
        assert "stopped the kernel for" in shown and "done-halt 0" in shown
    finally:
        tmux("kill-session", "-t", one)
        tmux("kill-session", "-t", two)
        subprocess.run([sys.executable, "-m", "aios_shell.cli", "serve", "--stop"], env={"AIOS_HOME": str(home)},
                       capture_output=True, check=False, timeout=60)


def test_an_attached_shell_is_asked_for_its_agents_and_an_answer_elsewhere_closes_it(tmp_path: Path) -> None:
    """A headless kernel (`aios serve --detach`), a shell attached to it: its agent's permission request is asked
    there; a second request, answered from another client first, closes the question without an answer."""
    import asyncio

    from kernel.api.wire import Connection

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("hello\n")
    env = {"AIOS_HOME": str(home), "AIOS_USER": "you", "AIOS_BACKEND": "simulated", "PATH": "/usr/bin:/bin"}
    started = subprocess.run([sys.executable, "-m", "aios_shell.cli", "serve", "--detach"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, started.stderr
    one = start_shell(work, home, 100, 30)
    try:
        tmux("set-option", "-t", one, "history-limit", "5000")
        wait_for_prompt(one, 1)
        assert "attached to the kernel for" in screen(one)
        type_line(one, 'run -w . react "use shell: ls"')
        asked = wait_for(one, "s session")
        assert "react[1] (you) wants to call shell in" in asked and "  command: ls" in asked
        time.sleep(0.6)  # keys typed as the question appears do not answer it
        type_line(one, "s")
        shown = wait_for_prompt(one, 2)
        assert "→ allowed for this session" in shown and "shell said: notes.txt" in shown
        tmux("send-keys", "-t", one, "-l", "ren")  # Tab completes here as in the hosting shell
        tmux("send-keys", "-t", one, "Tab")
        wait_for(one, "you@aios $ renice")
        tmux("send-keys", "-t", one, "C-u")

        type_line(one, 'run -w . react "use shell: rm notes.txt" &')
        wait_for(one, "would save: shell(rm notes.txt)")

        async def answer_elsewhere() -> bool:
            conn = await Connection.open(home, "you")
            try:
                [request] = await conn.call("pending_permissions")
                return bool(await conn.call("answer_permission", request_id=request["request_id"],
                                            decision="deny"))
            finally:
                await conn.close()

        assert asyncio.run(answer_elsewhere())
        wait_for(one, "[1]+  Done")
        assert (work / "notes.txt").exists()  # denied elsewhere: the file is still there
    finally:
        tmux("kill-session", "-t", one)
        subprocess.run([sys.executable, "-m", "aios_shell.cli", "serve", "--stop"], env=env, capture_output=True,
                       check=False, timeout=60)
