"""Another OS user on the kernel's socket: who they are comes from the OS (SO_PEERCRED), and the kernel holds them to
it. The test makes the OS user `aios-test-bob`, shares a home with bob's group, hosts the kernel as root acting as
alice (`aios serve`), and speaks the protocol from a child process that has become bob (setuid, no exec)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.api.wire import PROTOCOL, encode, short_path, socket_path

BOB = "aios-test-bob"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                                reason="needs root to make a second OS user")


def bob() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(BOB)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        BOB], check=True, capture_output=True)
        return pwd.getpwnam(BOB)


@pytest.fixture
def shared() -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A home shared with bob's group (mode 2770), its kernel served by root acting as alice, running one agent."""
    who = bob()
    home = Path(tempfile.mkdtemp(prefix="aios-shared-"))
    os.chown(home, 0, who.pw_gid)
    home.chmod(0o2770)
    env = {**os.environ, "AIOS_HOME": str(home), "AIOS_USER": "alice", "AIOS_BACKEND": "simulated"}
    server = subprocess.Popen([sys.executable, "-m", "aios_shell.cli", "serve"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (home / "kernel.sock").exists():
            assert server.poll() is None and time.monotonic() < deadline, server.communicate()
            time.sleep(0.05)
        subprocess.run([sys.executable, "-m", "aios_shell.cli", "-c", "run workload 5:300 & run workload 5:300 &"],
                       env=env, capture_output=True, text=True, timeout=60, check=True)
        yield home, server
    finally:
        server.terminate()
        server.communicate(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def as_bob(home: Path, hello: dict[str, Any], requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replies to `requests` (after `hello`), from a child process that is OS user bob."""
    who = bob()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # bob: no exec, so nothing under root's home need be readable
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(who.pw_gid)
            os.setuid(who.pw_uid)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(short_path(socket_path(home)))
            sock.sendall(encode(hello))
            replies = [_frame(sock)]
            for message in requests if "error" not in replies[0] else []:
                sock.sendall(encode(message))
                while "id" not in (frame := _frame(sock)):  # a command line's output comes before its reply
                    replies.append(frame)
                replies.append(frame)
            os.write(write, json.dumps(replies).encode())
        except BaseException as exc:  # noqa: BLE001 - the parent reads what went wrong
            os.write(write, json.dumps([{"child_failed": repr(exc)}]).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(child, 0)
    return json.loads(data)


def _frame(sock: socket.socket) -> dict[str, Any]:
    def exactly(n: int) -> bytes:
        got = b""
        while len(got) < n:
            part = sock.recv(n - len(got))
            if not part:
                raise EOFError("closed")
            got += part
        return got

    (length,) = struct.unpack(">I", exactly(4))
    return json.loads(exactly(length))


def test_the_socket_of_a_shared_home_is_the_groups(shared: tuple[Path, subprocess.Popen[str]]) -> None:
    home, _ = shared
    st = os.stat(home / "kernel.sock")
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam(BOB).gr_gid
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o2770  # shared on purpose: left as its owner made it
    assert stat.S_IMODE(os.stat(home / "aios.db").st_mode) == 0o600  # the group sees only what the kernel shows


def test_bob_is_bob_and_may_not_act_as_alice(shared: tuple[Path, subprocess.Popen[str]]) -> None:
    home, _ = shared
    [hello, me] = as_bob(home, {"aios": PROTOCOL}, [{"op": "call", "method": "whoami", "id": 1}])
    assert hello["user"] == BOB and not hello["admin"]
    assert me["result"] == {"user": BOB, "admin": False}
    [refused] = as_bob(home, {"aios": PROTOCOL, "user": "alice"}, [])
    assert refused["kind"] == "PermissionDenied"
    assert refused["error"] == f"{BOB} (uid {bob().pw_uid}) may not act as alice: only root and admins may"


def test_bob_cannot_touch_alices_agents(shared: tuple[Path, subprocess.Popen[str]]) -> None:
    home, _ = shared
    calls = [("signal", {"pid": 1, "sig": "KILL"}), ("renice", {"pid": 1, "nice": 10}),
             ("transcript", {"pid": 1}), ("answer_permission", {"request_id": 1, "decision": "always"}),
             ("set_sched", {"policy": "fifo"}), ("kmsg", {})]
    requests = [{"op": "call", "method": m, "args": a, "id": i} for i, (m, a) in enumerate(calls, start=1)]
    requests.append({"op": "call", "method": "ps", "args": {}, "id": 100})
    replies = as_bob(home, {"aios": PROTOCOL}, [*requests, {"op": "stop", "id": 101}])
    by_id = {r.get("id"): r for r in replies[1:]}
    for i, (method, _) in enumerate(calls, start=1):
        reply = by_id[i]
        assert "error" in reply or reply.get("result") is False, (method, reply)
        if "error" in reply:
            assert reply["kind"] == "PermissionDenied", (method, reply)
    listed = by_id[100]["result"]
    assert [p["user"] for p in listed] == ["alice", "alice"]
    assert all("5:300" not in p["cmd"] and p["argv"] == [] for p in listed)  # their arguments are hidden
    assert by_id[101]["kind"] == "PermissionDenied"


def test_bobs_shell_line_is_refused_alices_logs(shared: tuple[Path, subprocess.Popen[str]]) -> None:
    """A command line bob runs over the socket runs as bob: `logs 1` and /proc/1/context are alice's."""
    home, _ = shared
    replies = as_bob(home, {"aios": PROTOCOL}, [{"op": "run", "text": "logs 1; cat /proc/1/context; whoami",
                                                 "id": 1}])
    said = "".join(f.get("err", "") for f in replies[1:])
    out = "".join(f.get("out", "") for f in replies[1:])
    assert said.count("\n") == 2 and "logs: " in said and "cat: " in said, said
    assert out == f"{BOB}\n" and replies[-1]["status"] == 0


def test_bobs_shell_opens_no_file_with_the_kernels_rights(shared: tuple[Path, subprocess.Popen[str]],
                                                          tmp_path: Path) -> None:
    """The kernel's process runs as root here: a line bob runs there must not read or write files as root."""
    home, _ = shared
    target = Path(tempfile.mkdtemp(prefix="aios-bob-")) / "written"
    lines = [f"echo owned > {target}", "cat /etc/shadow", "source /etc/shadow", "ls /root", "perm trust /"]
    replies = as_bob(home, {"aios": PROTOCOL}, [{"op": "run", "text": line, "id": i} for i, line in
                                                enumerate(lines, start=1)])
    said = "".join(f.get("err", "") for f in replies[1:])
    out = "".join(f.get("out", "") for f in replies[1:])
    assert said.count("files are not reachable over another OS user's kernel") == len(lines), said
    assert not target.exists() and "root:" not in out
    assert [r["status"] for r in replies[1:] if "status" in r] == [1, 1, 1, 1, 1]


def test_a_shared_home_runs_no_tool_of_another_user_as_the_kernels_uid(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that is not root has one uid for every sandbox: in a shared home, only its own user's tools run."""
    import asyncio

    from kernel.tools import sandbox as sb

    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o2770)
    monkeypatch.setattr(sb, "_as_root", lambda: False)
    box = sb.Sandbox(home, mode="rlimit")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(sb.SandboxUnavailable, match="run the kernel as root"):
        asyncio.run(box.run(["true"], work, user="somebody-else"))
