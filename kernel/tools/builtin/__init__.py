"""The built-in tools: fs.read/fs.write/fs.list, shell, calc, memory.search/memory.add."""

from kernel.tools.builtin.calc import calc
from kernel.tools.builtin.fs import fs_list, fs_read, fs_write, workspace_target
from kernel.tools.builtin.memory import memory_add, memory_search
from kernel.tools.builtin.shell import shell

BUILTINS = [fs_read, fs_write, fs_list, shell, calc, memory_search, memory_add]

for _fs_tool in (fs_read, fs_write, fs_list):
    _fs_tool.to_target = workspace_target
