"""Regenerate the checked-in protobuf / gRPC Python code from ``gossip.proto``.

    python -m protocol.compile            # rewrites protocol/gossip_pb2.py, .pyi, _pb2_grpc.py
    python -m protocol.compile --out DIR  # writes them into DIR instead (the freshness test uses this)

protoc runs with the repository root as include path and ``protocol/gossip.proto`` as the file, so
the generated gRPC module imports ``from protocol import gossip_pb2`` and works as part of the
``protocol`` package (not only with ``protocol/`` on sys.path).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
PROTOS = ("gossip.proto",)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generated_names(proto: str) -> list[str]:
    """The file names protoc produces for ``proto`` (e.g. gossip_pb2.py, gossip_pb2.pyi, ...)."""
    stem = Path(proto).stem
    return [stem + suffix for suffix in GENERATED_SUFFIXES]


def compile_protos(out_dir: Path) -> list[Path]:
    """Run protoc for every proto and place the generated files in ``out_dir``; returns their paths."""
    from grpc_tools import protoc  # a build-time tool: imported only when regenerating

    include = Path(protoc.__file__).resolve().parent / "_proto"  # google/protobuf/*.proto
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        for proto in PROTOS:
            args = [
                "grpc_tools.protoc",
                f"-I{ROOT}",
                f"-I{include}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                f"{PACKAGE_DIR.name}/{proto}",
            ]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {proto} (command: {' '.join(args)})")
            for name in generated_names(proto):
                target = out_dir / name
                shutil.copyfile(Path(tmp) / PACKAGE_DIR.name / name, target)
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protocol.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output directory (default: protocol/)")
    args = parser.parse_args(argv)
    for path in compile_protos(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
