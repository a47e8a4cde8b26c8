"""The package's shape as DESIGN.md states it: small functions and classes, a torch-free core, imports downwards."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "effnet"
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 80, 200
CORE = "core"
ALLOWED = {  # place -> places it may import (DESIGN.md's table); the core and config are one level
    CORE: {CORE},
    "models": {CORE},
    "serving": {CORE, "models"},
    "training": {CORE, "models", "serving"},
    "search": {CORE, "models", "serving", "training"},
    "cli": {CORE, "models", "serving", "training", "search", "cli"},
}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _place(module: str) -> str:
    """``effnet.serving.runtimes`` -> ``serving``; top-level modules and ``config`` are the core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ALLOWED else CORE


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_no_long_functions_or_classes():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            limit = {
                ast.FunctionDef: MAX_FUNCTION_LINES,
                ast.AsyncFunctionDef: MAX_FUNCTION_LINES,
                ast.ClassDef: MAX_CLASS_LINES,
            }.get(type(node))
            if limit and node.end_lineno - node.lineno + 1 > limit:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} {node.end_lineno - node.lineno + 1}")
    assert not long, f"over {MAX_FUNCTION_LINES} lines (functions) / {MAX_CLASS_LINES} (classes): {long}"


def test_imports_go_downwards():
    upward = []
    for path in _modules():
        name = _module_name(path)
        mine = _place(name) if name != "effnet" else "cli"  # the package root re-exports the public API lazily
        for line, module in _imports(ast.parse(path.read_text())):
            if module == "effnet" or module.startswith("effnet."):
                theirs = _place(module) if module != "effnet" else CORE
                if theirs != mine and theirs not in ALLOWED[mine]:
                    upward.append(f"{path.relative_to(SRC)}:{line} ({mine}) imports {module} ({theirs})")
    assert not upward, upward


def test_core_modules_never_import_torch():
    heavy = []
    for path in _modules():
        name = _module_name(path)
        if _place(name) != CORE or name == "effnet":
            continue
        for line, module in _imports(ast.parse(path.read_text())):
            if module.split(".")[0] in ("torch", "torchvision", "timm"):
                heavy.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not heavy, heavy


@pytest.mark.parametrize(
    "argv",
    [
        ["table"],
        ["info", "efficientnet_b3"],
        ["--help"],
        ["train", "--help"],
        ["search", "--help"],
        ["scale", "--help"],
    ],
)
def test_torch_free_commands_do_not_import_torch(argv):
    code = (
        "import sys, contextlib, io\nfrom effnet.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main({argv!r})\n"
        "    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_public_cost_stays_the_function_after_its_module_is_imported():
    code = (
        "import effnet, effnet.cost, effnet.specs\n"
        "assert effnet.cost(effnet.specs.get_spec('efficientnet_b0')).params == 5288548\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
