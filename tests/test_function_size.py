"""No function over 60 lines (the guide's rule), in the package and the root's entry points:
measured on the source itself, a function from its `def` line to its last line, decorators aside."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

LIMIT = 60


def long_functions(root: Path, paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > LIMIT:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} is {length} lines")
    return found


def test_no_function_is_over_60_lines():
    paths = sorted([*ROOT.glob("*.py"), *(ROOT / "media_service").rglob("*.py")])
    assert long_functions(ROOT, paths) == []


def test_the_measure_names_a_long_function(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("def short():\n    pass\n\n\nclass Box:\n    def long(self):\n" + "        x = 1\n" * 60)
    assert long_functions(tmp_path, [long]) == ["long.py:6 long is 61 lines"]
