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


MAX_MODULE_LINES = 400


def _known_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in _modules()}


def _targets(tree: ast.AST, name: str, known: dict[str, Path]) -> set[str]:
    """effnet modules ``name`` imports anywhere (top level, inside functions, or by a literal module name string).

    ``from effnet.models import weights`` is an edge to ``effnet.models.weights``; a string constant that is exactly
    a module's name (``importlib.import_module("effnet.cli.train")``, the package root's lazy table) is an edge too.
    Importing a module implicitly runs its parent packages' ``__init__``; those implicit edges are not counted.
    """
    package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value and node.value in known
        ):
            found.add(node.value)
    return {module for module in found if module in known and module != name}


def _import_graph() -> dict[str, set[str]]:
    known = _known_modules()
    return {name: _targets(ast.parse(path.read_text()), name, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_counting_function_local_imports():
    cycles = _cycles(_import_graph())
    assert not cycles, f"import cycles (function-local imports count): {cycles}"


def test_cycle_finder_finds_a_hidden_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    known = {"effnet.x": Path("x.py"), "effnet.y": Path("y.py")}
    tree = ast.parse(
        "def f():\n    from effnet import y\n    import importlib\n    importlib.import_module('effnet.x')\n"
    )
    assert _targets(tree, "effnet.x", known) == {"effnet.y"}


def test_no_long_modules():
    long = [
        f"{path.relative_to(SRC)} {n}"
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


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
        "import effnet, effnet.cost, effnet.architectures\n"
        "assert effnet.cost(effnet.architectures.get_spec('efficientnet_b0')).params == 5288548\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
