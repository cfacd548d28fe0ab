"""Start bubblewrap with its options in a memfd, for a spawner that passes no descriptor (the MCP SDK's).

    AIOS_BWRAP_OPTIONS=<options, a JSON list> python …/kernel/tools/sandbox/launch.py BWRAP ARGS…

The options (which name the paths the sandbox hides) leave the environment before bubblewrap starts, and reach it
as `--args FD`: the program inside can read them neither in /proc/1/cmdline nor in /proc/1/environ.
"""

from __future__ import annotations

import json
import os
import sys

VARIABLE = "AIOS_BWRAP_OPTIONS"


def main() -> None:
    options = json.loads(os.environ.pop(VARIABLE, "[]"))  # out of the environment bubblewrap and its child get
    bwrap, *rest = sys.argv[1:]
    fd = os.memfd_create("aios-bwrap-args", 0)  # not close-on-exec: bubblewrap reads it
    os.write(fd, b"".join(os.fsencode(a) + b"\0" for a in options))
    os.lseek(fd, 0, os.SEEK_SET)
    os.execv(bwrap, [bwrap, "--args", str(fd), *rest])


if __name__ == "__main__":
    main()
