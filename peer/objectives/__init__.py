"""SSL objectives behind one name registry (timm-style: ``get(name)``, ``names()``, ``build(cfg)``).

base.py     ObjectiveConfig, StepOutput, Objective (the contract the trainer codes against)
simsiam.py  SimSiam (Chen & He 2021) on a timm CNN
mae.py      MAE (He et al. 2022) on a small-image timm VisionTransformer
mar.py      MAR = MAE + gamma_t * A-MMD to the neighbourhood's embeddings (docs/paper.md §3, Eq. 5-7)
"""

from __future__ import annotations

from peer.objectives.base import Objective, ObjectiveConfig, StepOutput
from peer.objectives.mae import MAE
from peer.objectives.mar import MAR
from peer.objectives.simsiam import SimSiam

__all__ = ["Objective", "ObjectiveConfig", "StepOutput", "get", "names", "build"]

_REGISTRY: dict[str, type[Objective]] = {"simsiam": SimSiam, "mae": MAE, "mar": MAR}


def names() -> list[str]:
    """Registered objective names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Objective]:
    """The objective class registered as ``name`` (case-insensitive)."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; available: {', '.join(names())}") from None


def build(cfg: ObjectiveConfig) -> Objective:
    """Instantiate the objective named by ``cfg.name`` with ``cfg``."""
    return get(cfg.name)(cfg)
