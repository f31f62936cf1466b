"""The domain package stays free of the web framework: its rules are callable from workers and tests."""

from __future__ import annotations

import ast
from pathlib import Path

import api.domain

FRAMEWORKS = ("fastapi", "starlette", "sse_starlette")


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_of_the_domain_imports_fastapi_or_starlette() -> None:
    root = Path(api.domain.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 5
    offenders = {
        str(path.relative_to(root)): sorted(
            n for n in _imported(ast.parse(path.read_text())) if n.split(".")[0] in FRAMEWORKS
        )
        for path in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}
