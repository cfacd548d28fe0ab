"""The kernel and agents never import user space (no UI libraries, no shell, no commands)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("textual", "rich", "prompt_toolkit", "typer", "aios_shell", "commands", "themes")
# httpx imports its optional command-line tool (which pulls in rich) whenever rich is installed;
# that is httpx's doing, and the import-linter contract below checks our own imports of rich
THIRD_PARTY_REASONS = {"rich": "httpx._main"}


@pytest.mark.parametrize("module", ["kernel", "kernel.kernel", "kernel.llm.llamacpp", "kernel.llm.ollama",
                                    "agents.chat"])
def test_module_imports_no_user_space(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    leaked = {m.split(".")[0] for m in loaded if m.split(".")[0] in FORBIDDEN}
    excused = {top for top, via in THIRD_PARTY_REASONS.items() if via in loaded}
    assert leaked - excused == set()


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stdout + out.stderr


# reached only through kernel.api in user space
INTERNALS = ("dispatcher", "storage", "access", "permissions", "memory", "files", "quotas")


def test_user_space_reaches_no_kernel_internals_but_through_the_api() -> None:
    """An import contract cannot see `sh.kernel.storage.…`; this reads the source for it."""
    import ast

    root = Path(__file__).parents[2]
    found = []
    for folder in ("aios_shell", "commands"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                name, of = (node.attr, node.value) if isinstance(node, ast.Attribute) else (None, None)
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1:
                    name, of = getattr(node.args[1], "value", None), node.args[0]  # getattr(kernel, "storage")
                on_kernel = getattr(of, "attr", None) == "kernel" or getattr(of, "id", None) == "kernel"
                if name in INTERNALS and on_kernel:  # kernel.storage, sh.kernel.access (api.files is the API's)
                    found.append(f"{path.relative_to(root)}:{node.lineno} .{name}")
    assert found == []
