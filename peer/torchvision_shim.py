"""Make ``import torchvision`` (and therefore ``import timm``) work next to the CPU build of torch.

PyPI's torchvision is a CUDA build: beside CPU torch its compiled ``_C`` library fails to load, and
then importing torchvision raises ``RuntimeError: operator torchvision::nms does not exist``
(torchvision registers fake kernels for ``nms``/``qnms`` at import). timm imports torchvision
unconditionally, so without this nothing of ours would import. The fix (docs/design.md §5): try to load
the native library; if that fails, declare the two operator schemas ourselves. Transforms, timm and
all its models then work; only torchvision's C++ detection ops stay unavailable, which dssl never
uses. A no-op when the native library loads (e.g. a matching CUDA torch).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fragment: torch.library.Library | None = None  # kept alive: dropping it would undo the definitions
_done = False


def ensure_torchvision_importable() -> None:
    """Load torchvision's native ops, or declare the schemas it needs; idempotent."""
    global _fragment, _done
    if _done:
        return
    _done = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    libs = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    if libs:
        try:
            torch.ops.load_library(str(libs[0]))
            return
        except (OSError, RuntimeError) as exc:
            log.debug("torchvision native ops unavailable (%s); declaring nms/qnms schemas", exc)
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _fragment.define(schema)
