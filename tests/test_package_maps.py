"""Each package's docstring is a map of its files: every module is listed there, so a reader who
opens ``<package>/__init__.py`` sees the whole package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["protocol", "gossip", "peer", "peer/objectives", "analysis", "launcher"]


def unlisted_modules(package: Path) -> list[str]:
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    modules = [p.name for p in sorted(package.glob("*.py")) if p.name != "__init__.py"]
    listed = {word.strip("`,.:()") for word in doc.split()}
    return [m for m in modules if m not in listed and not m.endswith(("_pb2.py", "_pb2_grpc.py"))]


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_docstring_lists_every_module(package):
    # execute
    missing = unlisted_modules(ROOT / package)
    # assert
    assert not missing, f"{package}/__init__.py does not list: {', '.join(missing)}"


def test_the_check_finds_an_unlisted_module(tmp_path):
    # prepare
    (tmp_path / "__init__.py").write_text('"""pkg\n\nlisted.py  a listed module\n"""\n')
    (tmp_path / "listed.py").write_text("")
    (tmp_path / "forgotten.py").write_text("")
    # execute / assert
    assert unlisted_modules(tmp_path) == ["forgotten.py"]
