"""In a real terminal: a react agent asking to run `ls` gets the inline prompt; `s` allows it for the session
(a second call does not ask), `n` denies and the agent receives the denial as a tool error."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.shell.test_tmux import screen, start_shell, tmux, wait_for_prompt

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def wait_for(name: str, text: str, count: int = 1, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = screen(name, history=True)
        if shown.count(text) >= count:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"{text!r} did not show:\n" + screen(name, history=True))


def type_line(name: str, line: str) -> None:
    tmux("send-keys", "-t", name, "-l", line)
    tmux("send-keys", "-t", name, "Enter")


def test_the_inline_permission_prompt_in_tmux(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("hello\n")
    name = start_shell(tmp_path / "work", home, 100, 30)
    try:
        tmux("set-option", "-t", name, "history-limit", "5000")
        wait_for_prompt(name, 1)
        type_line(name, 'run -w . react "use shell: ls"')
        asked = wait_for(name, "s session")
        time.sleep(0.6)  # keys typed as the question appears do not answer it
        type_line(name, "ls")  # a command typed at the question is no answer ...
        wait_for(name, "— not an answer: ls")
        type_line(name, "s")  # ... a letter and Enter is
        wait_for_prompt(name, 2)
        type_line(name, 'run -w . react "use shell: ls"')  # the same call again: no question
        wait_for_prompt(name, 3)
        type_line(name, 'run -w . react "use shell: rm notes.txt"')
        wait_for(name, "would save: shell(rm notes.txt)")
        time.sleep(0.6)
        type_line(name, "n")
        wait_for_prompt(name, 4)
        type_line(name, "audit")
        everything = wait_for_prompt(name, 5)
        tmux("send-keys", "-t", name, "exit", "Enter")
    finally:
        tmux("kill-session", "-t", name)
    assert "react[1] (you) wants to call shell in" in asked and "  command: ls" in asked
    assert "Traceback" not in everything
    assert everything.count("wants to call") == 2  # the second `ls` did not ask
    assert "→ allowed for this session" in everything
    assert everything.count("shell said: notes.txt") == 2
    assert "→ denied" in everything
    assert "← error: permission denied: shell(rm notes.txt)" in everything
    assert (tmp_path / "work" / "notes.txt").exists()
    with sqlite3.connect(home / "aios.db") as db:
        rows = db.execute("SELECT pid, tool, decision, by FROM audit ORDER BY id").fetchall()
    assert rows == [(1, "shell", "allow", "user:session"), (2, "shell", "allow", "grant:session"),
                    (3, "shell", "deny", "user")]
