"""files ls PID | files log PID PATH | files restore PID PATH@N — the kept versions of an agent's files."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from commands.kill import parse_pid
from commands.mem import when
from commands.registry import ArgParser, CommandError, UsageError, command
from commands.results import Table, Text

if TYPE_CHECKING:
    from aios_shell.shell import Shell

LS_SHAPE = [{"path": str, "versions": int, "size": int, "ts": float}]
LOG_SHAPE = [{"version": int, "size": int, "sha256": str, "ts": float}]
JSON_SHAPE = """\
files ls: [{"path": str, "versions": int, "size": int (of the latest), "ts": float (of the latest)}]
files log: [{"version": int, "size": int, "sha256": str, "ts": float}], oldest first
files restore: {"path": str, "restored": int (the version brought back), "version": int (the new one)}"""


def _args(p: ArgParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ls|log|restore", required=True, prog="files")
    ls = sub.add_parser("ls", help="the files of process PID that have versions")
    ls.add_argument("pid", help="process id (or %%N)")
    ls.add_argument("--json", action="store_true", help="print JSON (shape below)")
    log = sub.add_parser("log", help="the versions of one file")
    log.add_argument("pid", help="process id (or %%N)")
    log.add_argument("path", help="the file, relative to the process's workspace")
    log.add_argument("--json", action="store_true", help="print JSON (shape below)")
    restore = sub.add_parser("restore", help="write version N back into the workspace (kept as a new version)")
    restore.add_argument("pid", help="process id (or %%N)")
    restore.add_argument("spec", metavar="PATH@N", help="the file and the version to bring back")
    restore.add_argument("--json", action="store_true", help="print JSON (shape below)")
    p.epilog = "Only the owner of a process or an admin may read or restore its files."


def parse_spec(spec: str) -> tuple[str, int]:
    path, at, number = spec.rpartition("@")
    if not at or not path:
        raise UsageError(f"{spec}: expected PATH@N, e.g. notes.txt@2")
    try:
        version = int(number)
    except ValueError:
        raise UsageError(f"{spec}: the version after @ must be a number") from None
    if version < 1:
        raise UsageError(f"{spec}: versions start at 1")
    return path, version


@command("files", "the versions kept of each file an agent wrote: list, show history, restore",
         usage="files ls PID [--json] | files log PID PATH [--json] | files restore PID PATH@N [--json]",
         args=_args, json_shape=JSON_SHAPE,
         examples=("files ls 12", "files log 12 notes.txt", "files restore 12 notes.txt@1"))
async def files(sh: Shell, args: argparse.Namespace) -> Table | Text:
    api = sh.api  # a process's files are its owner's (and an admin's): the API says so
    pid = parse_pid(sh, args.pid)
    if args.action == "ls":
        rows = api.files(pid)
        if not rows:
            return Text(records=rows)
        return Table(["PATH", "VERSIONS", "SIZE", "MODIFIED"],
                     [[r["path"], r["versions"], r["size"], when(r["ts"])] for r in rows], right=("VERSIONS", "SIZE"),
                     records=rows)
    if args.action == "log":
        rows = api.file_log(pid, args.path)
        if not rows:
            raise CommandError(f"{args.path}: no versions kept for process {pid}")
        return Table(["VERSION", "SIZE", "SHA256", "WHEN"],
                     [[r["version"], r["size"], r["sha256"][:12], when(r["ts"])] for r in rows],
                     right=("VERSION", "SIZE"), records=rows)
    path, version = parse_spec(args.spec)
    new = api.restore_file(pid, path, version)
    return Text([f"{path}: restored version {version} as version {new}"],
                records={"path": path, "restored": version, "version": new})
