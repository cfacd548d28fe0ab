"""One kernel per home, as separate `aios` processes meet it: the first hosts, the later ones attach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def env_for(home: Path, user: str = "alice") -> dict[str, str]:
    return {**os.environ, "AIOS_HOME": str(home), "AIOS_USER": user, "AIOS_BACKEND": "simulated", "NO_COLOR": "1"}


def aios(home: Path, *args: str, user: str = "alice", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aios_shell.cli", *args], env=env_for(home, user),
                          capture_output=True, text=True, timeout=timeout, check=False)


def eventually(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in time: {what}")
        time.sleep(0.05)


def listed(home: Path, *flags: str) -> dict[int, dict]:
    done = aios(home, "ps", "--json", *flags)
    assert done.returncode == 0, done.stderr
    return {p["pid"]: p for p in json.loads(done.stdout)}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A script hosting the home's kernel with two long agents in the background (pids 1 and 2)."""
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aios_shell.cli", "-c", "run workload 5:600 & run workload 5:600 &; wait"],
        env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: (home / "kernel.sock").exists() and len(listed(home)) == 2, what="the host's agents")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_a_second_aios_sees_signals_and_waits_for_the_first_ones_agents(host: subprocess.Popen[str],
                                                                         tmp_path: Path) -> None:
    home = tmp_path / "home"
    procs = listed(home)
    assert sorted(procs) == [1, 2] and {p["user"] for p in procs.values()} == {"alice"}

    stopped = aios(home, "kill", "-STOP", "1")
    assert stopped.returncode == 0, stopped.stderr
    eventually(lambda: listed(home)[1]["state"] == "STOPPED", what="pid 1 stopped")

    wrong = aios(home, "kill", "99")
    assert wrong.returncode == 1 and wrong.stderr.strip() == "kill: (99) - No such process"

    started = aios(home, "-c", "run chat 'hello from a script' &")
    assert started.returncode == 0, started.stderr
    assert "goes on" not in started.stderr and "hung up" not in started.stderr
    waited = aios(home, "-c", "wait 3; echo status $?; logs 3")
    assert waited.returncode == 0, waited.stderr
    lines = waited.stdout.splitlines()
    assert lines[0] == "status 0" and lines[1].strip()  # the chat's answer, from another process's shell

    bad = aios(home, "-c", "no-such-command")
    assert bad.returncode == 127 and "no-such-command: command not found" in bad.stderr
    assert host.poll() is None  # the host is unharmed


def test_another_user_is_held_to_their_own_rights(host: subprocess.Popen[str], tmp_path: Path) -> None:
    """bob (acted as by root here: root may) cannot kill, renice or read alice's agents over the socket."""
    home = tmp_path / "home"
    for args in (("kill", "1"), ("renice", "5", "1"), ("logs", "1"), ("cat", "/proc/1/context")):
        done = aios(home, *args, user="bob")
        assert done.returncode != 0, args
        assert "not permitted" in done.stderr or "may not" in done.stderr or "denied" in done.stderr, done.stderr
    assert listed(home)[1]["state"] != "EXITED"


def test_when_the_kernel_dies_clients_say_so_and_the_next_aios_hosts(host: subprocess.Popen[str],
                                                                     tmp_path: Path) -> None:
    home = tmp_path / "home"
    waiter = subprocess.Popen([sys.executable, "-m", "aios_shell.cli", "-c", "echo attached; wait 1"],
                              env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiter.stdout is not None
    assert waiter.stdout.readline() == "attached\n"  # printed by its shell in the host, so it is attached
    host.send_signal(signal.SIGKILL)
    try:
        _, err = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 1
    assert err.strip() == f"aios: the aios kernel for {home} has gone"
    assert (home / "kernel.sock").exists()  # left behind: the next aios replaces it
    after = listed(home, "-a")
    assert {after[1]["status"], after[2]["status"]} == {"EXITED(lost)"}


def test_two_aios_starting_at_once_end_with_one_kernel(tmp_path: Path) -> None:
    home = tmp_path / "home"
    both = [subprocess.Popen([sys.executable, "-m", "aios_shell.cli", "-c", "run chat hi; sleep 3"],
                             env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], [o[1] for o in outs]
    everything = listed(home, "-a")
    assert sorted(everything) == [1, 2]  # one kernel gave out both pids
    assert {p["status"] for p in everything.values()} == {"EXITED(0)"}


def test_local_keeps_a_private_kernel(host: subprocess.Popen[str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    private = aios(home, "--local", "ps", "--json")
    assert private.returncode == 0 and json.loads(private.stdout) == []
    noted = aios(home, "--backend", "simulated", "ps")
    assert "attached to the kernel for" in noted.stderr and "1" in noted.stdout


def test_a_client_killed_mid_command_hangs_up_its_foreground_job_only(host: subprocess.Popen[str],
                                                                      tmp_path: Path) -> None:
    """As a terminal that closes: its foreground agent gets SIGHUP; the kernel and the other agents go on."""
    home = tmp_path / "home"
    client = subprocess.Popen([sys.executable, "-m", "aios_shell.cli", "-c", "echo started; run workload 5:600"],
                              env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert client.stdout is not None and client.stdout.readline() == "started\n"
    eventually(lambda: 3 in listed(home), what="the client's agent")
    client.kill()
    client.communicate(timeout=30)
    eventually(lambda: listed(home, "-a")[3]["status"] == "EXITED(SIGHUP)", what="its agent hung up")
    after = listed(home)
    assert sorted(after) == [1, 2] and host.poll() is None
