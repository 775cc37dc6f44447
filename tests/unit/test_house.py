"""The house plan holds (README, Architecture): the package is its layers and nothing loose, and
no function is longer than a reader can hold (50 lines, its docstring and decorators included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "webhook"
LAYERS = {"core", "admission", "audit", "cluster", "kube", "cli"}
MAX_LINES = 50


def test_the_package_holds_only_its_layers() -> None:
    loose = sorted(
        p.name
        for p in PACKAGE.iterdir()
        if p.name not in {"__init__.py", "__main__.py", "py.typed", "__pycache__"} and p.name not in LAYERS
    )
    assert not loose, f"{loose}: every module lives in a layer package (pyproject.toml's import-linter layers)"


def _functions() -> list[tuple[str, int]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno is not None
                out.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - start + 1))
    return out


def test_no_function_is_over_fifty_lines() -> None:
    functions = _functions()
    assert len(functions) > 100, "the walk found the package's functions"
    long = [f"{where} ({n} lines)" for where, n in functions if n > MAX_LINES]
    assert not long, "split these: " + "; ".join(long)
