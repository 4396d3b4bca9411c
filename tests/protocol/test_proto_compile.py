"""The checked-in generated code must be exactly what `python -m protocol.compile` produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol import compile as proto_compile

pytest.importorskip("grpc_tools")


def test_generated_code_is_fresh(tmp_path):
    # prepare
    out = tmp_path / "gen"
    # execute
    written = proto_compile.compile_protos(out)
    # assert
    names = sorted(p.name for p in written)
    assert names == sorted(proto_compile.generated_names("gossip.proto"))
    for path in written:
        checked_in = Path(proto_compile.PACKAGE_DIR, path.name).read_bytes()
        assert path.read_bytes() == checked_in, f"{path.name} is stale: run `python -m protocol.compile`"


def test_generated_grpc_module_imports_as_package():
    # execute
    text = Path(proto_compile.PACKAGE_DIR, "gossip_pb2_grpc.py").read_text()
    from protocol import gossip_pb2_grpc

    # assert
    assert "from protocol import gossip_pb2" in text
    assert hasattr(gossip_pb2_grpc, "GossipStub")


def test_every_proto_element_is_commented():
    # prepare
    lines = Path(proto_compile.PACKAGE_DIR, "gossip.proto").read_text().splitlines()
    # execute: every field / enum value / message / rpc line must follow a comment line
    bare = []
    for k, line in enumerate(lines):
        text = line.strip()
        is_element = not text.startswith(("syntax ", "package ")) and (
            text.startswith(("message ", "enum ", "rpc ", "service ", "oneof "))
            or (text.endswith(";") and "=" in text)
        )
        if is_element and not lines[k - 1].strip().startswith("//"):
            bare.append(text)
    # assert
    assert not bare, f"uncommented proto elements: {bare}"
