"""The code stays readable: no function over 40 lines, no file over 500 without a stated reason.

A function's length runs from its ``def`` to its last line, not counting its docstring. A file may
exceed 500 lines only when one of its first five lines is a comment ``# long-file: <why>``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 40
MAX_FILE_LINES = 500
LONG_FILE_MARK = "# long-file:"
SKIP_DIRS = {".venv", ".git", "build", "runs", "data", "node_modules"}


def python_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & SKIP_DIRS or path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        files.append(path)
    return files


def _docstring_lines(node: ast.AST) -> int:
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str):
            return body[0].end_lineno - body[0].lineno + 1
    return 0


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            if length > limit:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def long_file(path: Path, limit: int = MAX_FILE_LINES) -> str | None:
    lines = path.read_text().splitlines()
    if len(lines) <= limit or any(line.startswith(LONG_FILE_MARK) for line in lines[:5]):
        return None
    return f"{path.relative_to(ROOT)} ({len(lines)} lines, no '{LONG_FILE_MARK}' reason)"


def test_no_function_is_longer_than_40_lines():
    # prepare / execute
    found = [item for path in python_files(ROOT) for item in long_functions(path)]
    # assert
    assert not found, "functions over 40 lines:\n" + "\n".join(found)


def test_no_file_is_longer_than_500_lines_without_a_reason():
    # prepare / execute
    found = [item for path in python_files(ROOT) if (item := long_file(path))]
    # assert
    assert not found, "files over 500 lines:\n" + "\n".join(found)


def test_the_checks_catch_a_long_function_and_a_long_file(tmp_path, monkeypatch):
    # prepare
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    body = "\n".join(f"    x{i} = {i}" for i in range(45))
    long_py = tmp_path / "long.py"
    long_py.write_text(f'def f():\n    """Doc."""\n{body}\n' + "\n" * 500)
    marked = tmp_path / "marked.py"
    marked.write_text("# long-file: one table of constants\n" + "x = 1\n" * 600)
    # execute
    functions = long_functions(long_py)
    files = [long_file(long_py), long_file(marked)]
    # assert
    assert functions == ["long.py:1 f (46 lines)"]
    assert files[0] is not None and files[1] is None
