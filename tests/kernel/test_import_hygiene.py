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


def test_commands_reach_the_kernel_only_through_the_api() -> None:
    """A command asks `sh.api`; `sh.kernel.<anything>` would be a second door (handing the monitor the kernel
    handle, as `top` does, is not a use of it)."""
    import ast

    root = Path(__file__).parents[2]
    found = []
    for path in [*sorted((root / "commands").rglob("*.py")), root / "aios_shell" / "completion.py"]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "kernel":
                found.append(f"{path.relative_to(root)}:{node.lineno} .kernel.{node.attr}")
    assert found == []


def test_the_user_space_contract_forbids_every_kernel_module_but_the_api() -> None:
    """A new kernel module is forbidden to user space from the day it is written: the contract lists them all."""
    import ast
    import tomllib

    root = Path(__file__).parents[2]
    contracts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["source_modules"] == ["aios_shell", "commands"]]
    modules = {f"kernel.{p.stem}" for p in (root / "kernel").iterdir()
               if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert set(contract["forbidden_modules"]) == modules - {"kernel.api"}
    # and `from kernel import X` (the package itself, which a contract on its modules cannot name) is not used
    found = [f"{path.relative_to(root)}:{node.lineno}"
             for folder in ("aios_shell", "commands") for path in sorted((root / folder).rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom) and node.module == "kernel"
             or isinstance(node, ast.Import) and any(a.name == "kernel" for a in node.names)]
    assert found == []


def test_every_name_the_api_exports_is_there() -> None:
    import kernel.api as api

    assert sorted(api.__all__) == sorted(["POLICY_NAMES", *api._WHERE])
    for name in api.__all__:
        assert getattr(api, name) is not None, name
