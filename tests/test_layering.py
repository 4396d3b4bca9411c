"""The real dependency graph: protocol <- gossip <- peer <- analysis <- launcher, and no module cycle.

Each package may import only the packages below it (``ALLOWED``), and the graph of our modules
(module -> the modules of ours it imports) has no cycle, so every file can be read after the files
it uses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("protocol", "gossip", "peer", "analysis", "launcher")
# package -> the packages of ours it may import: everything below it, nothing above
ALLOWED = {package: set(LAYERS[:index]) for index, package in enumerate(LAYERS)}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def module_graph(root: Path) -> nx.DiGraph:
    """Our modules and the modules of ours each one imports (``from a import b`` counts a.b if it
    is a module, else a)."""
    paths = {}
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            if not path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                paths[_module_name(path, root)] = path
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for module, path in paths.items():
        for name in _imports(path, module):
            target = name if name in paths else name.rpartition(".")[0]
            if target in paths and target != module:
                graph.add_edge(module, target)
    return graph


def layer_violations(graph: nx.DiGraph) -> list[str]:
    bad = []
    for source, target in graph.edges:
        low, high = target.split(".")[0], source.split(".")[0]
        if low != high and low not in ALLOWED[high]:
            bad.append(f"{source} imports {target} ({high} may import only {sorted(ALLOWED[high])})")
    return bad


def module_cycles(graph: nx.DiGraph) -> list[list[str]]:
    # a package's __init__ importing its own submodules is not a cycle of meaning
    graph = graph.copy()
    nested = [(s, t) for s, t in graph.edges if t.startswith(s + ".") or s.startswith(t + ".")]
    graph.remove_edges_from(nested)
    return [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]


def test_no_upward_imports():
    # prepare / execute
    bad = layer_violations(module_graph(ROOT))
    # assert
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_module_cycle():
    # prepare / execute
    cycles = module_cycles(module_graph(ROOT))
    # assert
    assert not cycles, "module cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_catches_an_upward_edge_and_a_cycle(tmp_path):
    # prepare: protocol imports gossip (upward); launcher.a <-> launcher.b (a cycle)
    for package in LAYERS:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "gossip" / "node.py").write_text("")
    (tmp_path / "protocol" / "bad.py").write_text("from gossip.node import GossipNode\n")
    (tmp_path / "launcher" / "a.py").write_text("from launcher import b\n")
    (tmp_path / "launcher" / "b.py").write_text("from .a import something\n")
    # execute
    graph = module_graph(tmp_path)
    bad = layer_violations(graph)
    cycles = module_cycles(graph)
    # assert
    assert bad == ["protocol.bad imports gossip.node (protocol may import only [])"]
    assert cycles == [["launcher.a", "launcher.b"]]
