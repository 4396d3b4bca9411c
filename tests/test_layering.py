"""Imports never point upward: protocol <- gossip <- peer; launcher -> peer's config/CLI only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"protocol", "gossip", "peer", "launcher"}

# package -> the packages of ours it may import
ALLOWED = {
    "protocol": set(),
    "gossip": {"protocol"},
    "peer": {"gossip", "protocol"},
    "launcher": {"peer"},
}
# launcher may reach into peer only through these modules (never gossip internals)
LAUNCHER_PEER_MODULES = {"peer.config", "peer.cli"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _violations() -> list[str]:
    bad = []
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            for name in _imports(path):
                top = name.split(".")[0]
                if top not in OURS or top == package:
                    continue
                if top not in ALLOWED[package]:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
                elif package == "launcher" and not any(
                    name == m or name.startswith(m + ".") or m.startswith(name + ".") or name == "peer"
                    for m in LAUNCHER_PEER_MODULES
                ):
                    bad.append(f"{path.relative_to(ROOT)} imports {name} (launcher: peer config/CLI only)")
    return bad


def test_no_upward_imports():
    # prepare / execute
    bad = _violations()
    # assert
    assert not bad, "upward or forbidden imports:\n" + "\n".join(bad)


def test_checker_catches_an_upward_edge(tmp_path, monkeypatch):
    # prepare: a fake tree where protocol imports gossip
    for package in OURS:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "protocol" / "bad.py").write_text("from gossip.node import GossipNode\n")
    (tmp_path / "launcher" / "bad.py").write_text("import gossip.client\nfrom peer.trainer import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path, raising=False)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    # execute
    bad = _violations()
    # assert
    assert any("protocol/bad.py imports gossip.node" in b for b in bad)
    assert any("launcher/bad.py imports gossip.client" in b for b in bad)
    assert any("launcher/bad.py imports peer.trainer" in b for b in bad)
