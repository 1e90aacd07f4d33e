"""The layering rules of docs/design.md (Layers): imports point only down, checked by the
import-linter contracts in pyproject.toml, and a function-level import only where a comment says
why (an optional or heavy package, an import cycle)."""
from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rnngraph"


def _comment_lines(source: str) -> set:
    """Line numbers that hold a comment (tokenize tells a '#' in a string from a comment)."""
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT}


def _function_imports(tree: ast.AST):
    """Every import statement inside a function body (nested functions and classes included)."""
    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            yield from visit(child, in_function
                             or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from visit(tree, False)


def uncommented_function_imports(root: Path = PACKAGE) -> list:
    """'file:line: statement' for each function-level import with no comment on its line(s) or
    on the line just above."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        comments = _comment_lines(source)
        for imp in _function_imports(ast.parse(source, filename=str(path))):
            span = range(imp.lineno - 1, (imp.end_lineno or imp.lineno) + 1)
            if not comments.intersection(span):
                found.append(f"{path.relative_to(root.parent).as_posix()}:{imp.lineno}: "
                             f"{lines[imp.lineno - 1].strip()}")
    return found


def test_function_level_imports_say_why():
    missing = uncommented_function_imports()
    assert not missing, (
        "function-level imports without a comment saying why (move them to the top of the "
        "module, or say why they cannot move: an optional or heavy package, an import cycle):\n"
        + "\n".join(missing))


def test_the_check_finds_an_uncommented_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(
        "import os\n"
        "\n"
        "def ok():\n"
        "    import json   # optional: a reason\n"
        "\n"
        "def ok_above():\n"
        "    # cycle: a reason\n"
        "    from . import other\n"
        "\n"
        "def bad():\n"
        "    s = '# not a comment'\n"
        "    import zlib\n"
        "\n"
        "class C:\n"
        "    def method(self):\n"
        "        def inner():\n"
        "            import csv\n"
        "        return inner\n")
    assert uncommented_function_imports(pkg) == ["pkg/mod.py:12: import zlib",
                                                 "pkg/mod.py:17: import csv"]


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter")
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) \
        or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is installed but its lint-imports command is not found")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
