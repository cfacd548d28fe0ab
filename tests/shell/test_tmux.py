"""The README tour typed into `aios` in a real terminal (tmux, 80x24), read back from the screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

# the tour as README.md shows it (comments included: they are typed too)
TOUR = [
    'run chat "Write one sentence about cats."',
    "run workload 600 &    # a scripted agent: asks the model for 600 tokens (15 s or so here)",
    "ps",
    "kill -STOP %1      # hold it: it gives up the model at the next token",
    "jobs",
    "bg                 # CONT: it goes on where it stopped",
    "renice 10 %1       # be nicer to the others",
    'run chat "Name three fish." | run chat "Translate into French:"',
    'run parallel chat "A fish?" "A bird?"   # a child agent each, at once',
    'run chat "Write a haiku." > haiku.txt; cat haiku.txt',
    "ls /proc/$!",
    "cat /proc/$!/status",
    "wait; ps -a --forest   # -a: exited ones too; \\_ marks the children parallel started",
    "sched                  # the scheduler: policy, slots, ready queue",
    "help kill",
]
PROMPT = "you@aios $"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def screen(name: str, history: bool = False) -> str:
    return tmux("capture-pane", "-p", "-t", name, *(["-S", "-"] if history else []))


def wait_for_prompt(name: str, count: int, timeout: float = 60.0) -> str:
    """Wait until the prompt has been shown `count` times and the shell is idle at it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen(name, history=True)
        lines = [line.rstrip() for line in text.splitlines() if line.strip()]
        prompts = [line for line in lines if line.startswith(PROMPT)]
        if len(prompts) >= count and lines and any(line == PROMPT for line in lines[-3:]):
            return text
        time.sleep(0.1)
    raise AssertionError("the shell did not come back to its prompt:\n" + screen(name))


def wait_for_screen(name: str, ready: Callable[[str], bool], timeout: float = 30.0) -> str:
    """The visible screen once `ready` holds for it (what is drawn after the prompt, such as the toolbar)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = screen(name)
        if ready(shown):
            return shown
        time.sleep(0.05)
    raise AssertionError("the screen never got ready:\n" + screen(name))


TOOLBARS = {"simulated": "you │ simulated sim-1", "llamacpp": "you │ llamacpp gemma3-270m"}


def toolbar_drawn(shown: str, backend: str = "simulated") -> bool:
    lines = shown.splitlines()
    return bool(lines) and lines[-1].lstrip().startswith(TOOLBARS[backend])


def start_shell(cwd: Path, home: Path, width: int, height: int, backend: str = "simulated") -> str:
    """A tmux session running the aios shell (user `you`) in `cwd` on `backend`; returns its name.
    The caller kills the session."""
    name = f"aios-{uuid.uuid4().hex[:8]}"
    command = (f"cd {cwd} && AIOS_HOME={home} AIOS_USER=you NO_COLOR=1 "
               f"{sys.executable} -m aios_shell.cli --backend {backend}")
    tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), command)
    return name


EMBEDDED = pytest.param("llamacpp", marks=[pytest.mark.llamacpp, pytest.mark.timeout(600)])


@pytest.mark.parametrize("backend", ["simulated", EMBEDDED])
def test_the_readme_tour_in_80x24(tmp_path: Path, backend: str) -> None:
    """As README.md has it, on the simulated model and on the embedded one (the default `make run` starts)."""
    name = start_shell(tmp_path, tmp_path / "home", 80, 24, backend)
    try:
        tmux("set-option", "-t", name, "history-limit", "5000")
        wait_for_prompt(name, 1, timeout=120)  # the embedded model loads at its first call, not here
        screens = {}
        for i, line in enumerate(TOUR, start=2):
            tmux("send-keys", "-t", name, "-l", line)
            tmux("send-keys", "-t", name, "Enter")
            wait_for_prompt(name, i, timeout=300)  # `wait` waits for the 600 tokens
            # the prompt shows before the toolbar does
            screens[line] = wait_for_screen(name, lambda shown: toolbar_drawn(shown, backend))
        everything = screen(name, history=True)
        tmux("send-keys", "-t", name, "exit", "Enter")
    finally:
        tmux("kill-session", "-t", name)
    assert "Traceback" not in everything and "internal error" not in everything
    assert "command not found" not in everything and "(see: help" not in everything
    assert "[1] 2" in everything
    assert any(f"status: {state}" in everything for state in ("STOPPED", "RUNNING", "EXITED(0)"))
    assert "[1]+  Stopped" in screens["jobs"], everything
    assert "(process ID) old priority 0, new priority 10" in everything
    assert (tmp_path / "haiku.txt").read_text().strip()
    assert "EXITED(0)" in screens[TOUR[-3]]
    assert "\\_ chat A fish?" in screens[TOUR[-3]]  # parallel's children, under it
    assert "usage: kill" in screens["help kill"]
    for shown in screens.values():  # 80x24: nothing wider than the screen, the toolbar on the last line
        assert all(len(row) <= 80 for row in shown.splitlines())
        assert toolbar_drawn(shown, backend)


def test_a_job_that_ends_while_top_is_open_is_reported_once_and_leaves_the_table(tmp_path: Path) -> None:
    name = start_shell(tmp_path, tmp_path / "home", 100, 30)
    try:
        wait_for_prompt(name, 1)
        tmux("send-keys", "-t", name, "-l", "run chat long &")
        tmux("send-keys", "-t", name, "Enter")
        wait_for_prompt(name, 2)
        tmux("send-keys", "-t", name, "-l", "top")
        tmux("send-keys", "-t", name, "Enter")
        wait_for_screen(name, lambda shown: "RUNNING" in shown)
        wait_for_screen(name, lambda shown: "1 exited hidden" in shown)  # it ended while the monitor showed
        tmux("send-keys", "-t", name, "q")
        wait_for_prompt(name, 3)
        tmux("send-keys", "-t", name, "-l", "jobs; wait %1; echo waited $?")
        tmux("send-keys", "-t", name, "Enter")
        wait_for_prompt(name, 4)
        everything = screen(name, history=True)
    finally:
        tmux("kill-session", "-t", name)
    assert everything.count("[1]+  Done") == 1, everything  # said once, after the monitor
    assert "Running" not in everything and "waited 127" in everything  # no stale job: wait %1 finds none
