"""The house rules of the tree, checked on every module of the product (tests and bench aside):
the shared package imports no side, no import cycle anywhere (imports inside functions
included), modules under 500 lines, functions under 80."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = "fanops"
SIDES = ("realtime", "scoring", "review", "screens")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {"app": ROOT / "app.py"}
    for pkg in (SHARED, *SIDES):
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


@cache
def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))


def _imports(name: str) -> set[str]:
    """The product modules ``name`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(_tree(name)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name and MODULES[t].name != "__init__.py":
                found.add(t)
    return found


def test_the_shared_package_imports_no_side() -> None:
    bad = [f"{m} imports {i}" for m in MODULES if m.split(".")[0] == SHARED
           for i in sorted(_imports(m)) if i.split(".")[0] != SHARED]
    assert not bad, "the shared package must not import a side:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    graph = {m: _imports(m) for m in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n):], n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines < MAX_MODULE_LINES, f"{MODULES[name]}: {lines} lines; split it by concept"
    long = [f"{n.name} (line {n.lineno}): {n.end_lineno - n.lineno + 1} lines"
            for n in ast.walk(_tree(name)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.end_lineno is not None and n.end_lineno - n.lineno + 1 >= MAX_FUNCTION_LINES]
    assert not long, f"{MODULES[name]}: functions of {MAX_FUNCTION_LINES} lines or more: {long}"


def test_the_checks_see_the_whole_product() -> None:
    assert {"app", "fanops.keys", "realtime.consumer", "scoring.worker", "review.analysis"} <= set(MODULES)
    assert "fanops.config" in _imports("realtime.consumer")  # "from fanops.config import Config"
    assert "fanops.keys" in _imports("fanops.ingest")  # "from fanops import keys"
