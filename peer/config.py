"""Typed run configuration: YAML file -> dataclass defaults -> command-line overrides -> resolved YAML.

One ``Config`` holds everything a peer needs: ``data`` (what to train on and which share of it),
``objective`` (the SSL method; :class:`peer.objectives.base.ObjectiveConfig`, reused as is),
``train`` (the loop: budget, batch, gossip period, device), ``eval`` (frozen-feature evaluation),
``gossip`` (read by the peer process; unused by standalone training) and ``outer`` (DiLoCo's outer
optimizer over gossip rounds, off by default).

Loading order::

    cfg = load_config("examples/train_fmnist.yaml", overrides=["train.batch_size=64"])

1. the YAML file (optional) gives values for any subset of keys;
2. every key it does not give keeps its dataclass default;
3. each override ``section.key=value`` (``--set`` on the command line; the value is parsed as YAML,
   so ``64``, ``0.5``, ``true``, ``null``, ``[a, b]`` all work) replaces one value;
4. the result is validated and can be written back with :func:`dump_config` (the run dir keeps it).

Unknown keys and values of the wrong type raise :class:`ConfigError` naming the dotted key and the
expected type, before anything runs.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from peer.objectives.base import ObjectiveConfig

log = logging.getLogger(__name__)

# Spellings of gossip words that configs used before they took gossip's own (gossip.mixing.RULES,
# protocol.frames.WIRE_DTYPES); still accepted at load and mapped to the current word.
OLD_SPELLINGS = {
    "mixing": {"metropolis": "metropolis_hastings"},
    "wire_dtype": {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"},
}


class ConfigError(ValueError):
    """A configuration problem, phrased for the user (names the key and what was expected)."""


@dataclass
class DataConfig:
    """Which data this peer trains on."""

    dataset: str = "fashion-mnist"  # a name peer.data.load_dataset knows (fashion-mnist, mnist, cifar10, ...)
    root: str | None = None  # data directory; None = the known default location for the dataset
    image_size: int | None = None  # resize to this side length; None = native size
    num_peers: int = 1  # how many peers the training split is partitioned across
    peer_index: int = 0  # which share this peer takes (0 .. num_peers-1)
    partition: str = (
        "iid"  # peer.partition.parse_partition spec: iid, dirichlet:0.1, shards:2, feature_skew, ...
    )
    seed: int = 0  # partition seed: every peer must use the same one to get disjoint shares
    train_limit: int | None = None  # cap on this peer's images (seeded subsample) for short CPU runs
    union: bool = False  # train on the union of all num_peers shares (each capped as its peer caps it):
    #                      the centralised baseline of a swarm, on exactly its peers' images
    test_limit: int | None = None  # cap on the global test set used for evaluation (seeded subsample)


@dataclass
class EvalConfig:
    """Frozen-feature evaluation (kNN monitor + linear probe) on the global and own-distribution tests."""

    bank_limit: int = 10000  # labelled training images whose features form the kNN bank / probe train set
    batch_size: int = 512  # feature-extraction batch
    knn_k: int = 20  # neighbours in the weighted vote (20 suits banks of a few thousand)
    knn_temperature: float = 0.1  # similarity temperature of the vote weights exp(s / T) (InstDisc)
    linear_epochs: int = 30  # logistic-regression epochs on cached, standardised features
    linear_lr: float = 0.01  # Adam learning rate of the probe
    own_distribution: bool = True  # also score on test samples re-drawn to this peer's label histogram
    at_start: bool = True  # evaluate the random-init encoder before training (the baseline)
    # Periodic evaluations (train.eval_every) are learning-curve points: kNN only, on this many test
    # images (a seeded subset, the same at every point); 0 = full evaluations like the final one
    curve_test_images: int = 2000
    # Representation diagnostics (peer.probe): collapse std and A-MMD on a fixed test-image batch
    probe_every: int = 5  # gossip rounds between probes (0 = off)
    probe_size: int = 256  # probe images, drawn seeded by data.seed from the test set (same on every peer)
    snapshot_every: int = 0  # rounds between snapshots of the published params (exact consensus; 0 = off)
    # End-to-end fine-tuning of the consensus model θ̄ after a swarm run (peer.fine_tune, peer.consensus):
    # encoder + linear head, AdamW, no augmentation, on a seeded labelled subset of the kNN bank
    finetune_images: int = 2000  # labelled training images (capped at the bank; 0 = no fine-tuning)
    finetune_epochs: int = 3  # passes over those images
    finetune_lr: float = 1e-3  # AdamW learning rate (constant; weight decay 0.05)
    finetune_batch_size: int = 64  # images per fine-tuning step

    def __post_init__(self) -> None:
        for key in ("probe_every", "snapshot_every", "finetune_images", "curve_test_images"):
            if getattr(self, key) < 0:
                raise ConfigError(f"eval.{key}: expected >= 0 (0 = off), got {getattr(self, key)}")
        if self.probe_size < 2:
            raise ConfigError(f"eval.probe_size: expected >= 2, got {self.probe_size}")
        for key in ("finetune_epochs", "finetune_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"eval.{key}: expected >= 1, got {getattr(self, key)}")
        if not self.finetune_lr > 0:
            raise ConfigError(f"eval.finetune_lr: expected > 0, got {self.finetune_lr}")


@dataclass
class GossipConfig:
    """How this peer talks to the swarm (consumed by the peer process; standalone training ignores it)."""

    mode: Literal["sync", "async"] = "sync"  # sync = D-PSGD rounds; async = newest snapshot + staleness
    # gossip.topology spec: ring, torus, full, random_regular:k=4, erdos_renyi:p=0.3, exponential,
    # exponential_one_peer (needs mixing: uniform); append ",time_varying=true" to re-draw every round
    topology: str = "ring"
    # gossip.mixing.RULES: Metropolis-Hastings weights or uniform 1/|A_i|
    mixing: Literal["metropolis_hastings", "uniform"] = "metropolis_hastings"
    # per-pull deadline (s); a neighbour slower than this is dropped for the round. "auto": each
    # neighbour's deadline follows its measured pull times (gossip.adaptive_deadline): the
    # deadline_percentile of its recent pulls x deadline_margin, within [deadline_min_s, deadline_max_s]
    deadline_s: float | Literal["auto"] = 10.0
    deadline_max_s: float = 10.0  # auto: the ceiling (bounds every pull, hence the round's pull phase)
    deadline_min_s: float = 0.5  # auto: the floor
    deadline_percentile: float = 95.0  # auto: which percentile of a neighbour's recent pull times
    deadline_margin: float = 2.0  # auto: headroom on it (and the widening factor after a missed deadline)
    wire_dtype: Literal["fp32", "fp16", "bf16"] = "fp32"  # dtype of the flat buffer on the wire
    listen: str = "127.0.0.1:0"  # gRPC listen address (port 0 = any free port)
    peers: list[str] = field(default_factory=list)  # static peer list host:port (no DHT needed)
    bootstrap: list[str] = field(default_factory=list)  # hivemind multiaddrs of peers already in the swarm
    swarm_id: str = "dssl"  # DHT key prefix: peers with different ids never see each other
    peer_id: str | None = None  # None = derived from the peer index / host
    aggregation: Literal["weighted", "trimmed_mean"] = (
        "weighted"  # W-weighted average, or robust trimmed mean
    )
    trim_fraction: float = 0.2  # trimmed_mean: fraction cut from each side per coordinate
    max_norm_ratio: float | None = 10.0  # reject a snapshot whose norm is > ratio x ours (or < ours / ratio)
    max_distance_ratio: float | None = None  # reject a snapshot farther than ratio x ||ours|| from ours
    # honour transport faults from <run dir>/faults.json (the launcher sets it when a fault schedule
    # runs); off, pulls do not pass through the fault interceptor at all
    fault_injection: bool = False
    # compressed gossip (CHOCO-Gossip, gossip/choco_round.py): each round sends the compressed step
    # of a public copy instead of the parameters; "int8" (~4x fewer bytes) or "topk" (6 bytes per
    # kept element: topk_fraction 0.01 is ~67x fewer); choco_gamma is the consensus step size
    compression: Literal["none", "int8", "topk"] = "none"
    topk_fraction: float = 0.01
    choco_gamma: float = 0.5
    # keep training while a round's pulls and mix run; the mix lands with the local progress made
    # meanwhile added (peer/overlap.py); off = training waits for each round
    overlap: bool = False

    @property
    def pull_deadline_s(self) -> float:
        """The longest any pull may take: ``deadline_s``, or ``deadline_max_s`` under auto."""
        return self.deadline_max_s if self.deadline_s == "auto" else self.deadline_s


@dataclass
class TrainConfig:
    """The training loop."""

    steps: int | None = None  # stop after this many optimizer steps (None = no step limit)
    epochs: float | None = None  # stop after this many passes over the local data (None = no limit)
    time_budget_s: float | None = None  # stop after this much wall-clock training time (None = no limit)
    batch_size: int = 128  # images per step (docs/design.md §6: 256 is never faster per image on CPU)
    period: int = 20  # optimizer steps between gossip rounds (= local steps per round)
    warmup_steps: int = 0  # linear learning-rate warm-up from 0
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine decays to 0 at `steps` (needs steps)
    bn_policy: Literal["average", "local"] = "average"  # gossip BN running stats too, or keep them (FedBN)
    device: str = "auto"  # auto (cuda when present, else cpu), cpu, cuda, cuda:<i>
    threads: int = 0  # CPU threads for torch (0 = all cores)
    amp: bool = True  # mixed precision + GradScaler on CUDA (ignored on CPU)
    channels_last: bool = True  # NHWC memory format on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the objective (measured: 0-17 % gain for a 30-50 s compile)
    seed: int = 0  # model init, data order and augmentation seed
    log_every: int = 20  # steps between metrics lines / console progress lines
    eval_every: int = 0  # steps between evaluations (0 = only before and after training)
    checkpoint_every: int = 0  # steps between checkpoints (0 = only at the end)
    run_dir: str | None = None  # where outputs go; None = runs/<timestamp>-<name>
    slowdown: float = 1.0  # heterogeneous compute: sleep (k-1) x step time after each step


@dataclass
class OuterConfig:
    """DiLoCo's outer loop over gossip rounds (peer.outer_optimizer; Douillard et al. 2023, OpenDiLoCo).

    Off: a round loads the mix, as plain gossip. On: the mix defines the pseudo-gradient
    θ_start − θ_mixed of the `period`-step interval and SGD (Nesterov) steps on it."""

    enabled: bool = False  # off = plain gossip (lr 1, momentum 0 is the same thing, bit for bit)
    lr: float = 0.7  # outer learning rate (DiLoCo's 0.7)
    momentum: float = 0.9  # outer momentum (DiLoCo's 0.9), in [0, 1)
    nesterov: bool = True  # Nesterov momentum (DiLoCo, OpenDiLoCo); false = heavy-ball

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"outer.lr: expected > 0, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"outer.momentum: expected 0 <= momentum < 1, got {self.momentum}")


@dataclass
class Config:
    """Everything one peer needs."""

    name: str = "run"  # run name (used in the run directory)
    data: DataConfig = field(default_factory=DataConfig)
    # objective.img_size / in_chans are set from the loaded data by the trainer (resolved config shows them)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)


# --------------------------------------------------------------------------------------------------
# building and validating


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked against the annotation ``tp`` (ints are accepted where floats are)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (section {tp.__name__}), got {value!r}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        items = [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against a plain type (null, bool, int, float, str ...); bools are not ints."""
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (possibly partial) dict, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{dotted}: unknown key; known keys here: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def config_from_dict(values: dict | None) -> Config:
    """Build a validated :class:`Config` from a nested dict (missing keys keep their defaults)."""
    return _build(Config, _current_spellings(values or {}))


def _current_spellings(values: dict) -> dict:
    """``values`` with the old spellings of gossip words (:data:`OLD_SPELLINGS`) replaced, each logged."""
    gossip = values.get("gossip")
    if not isinstance(gossip, dict):
        return values
    gossip = dict(gossip)
    for key, renames in OLD_SPELLINGS.items():
        old = gossip.get(key)
        if isinstance(old, str) and old in renames:
            gossip[key] = renames[old]
            log.warning(
                "gossip.%s: %r is the old spelling of %r; read as %r", key, old, gossip[key], gossip[key]
            )
    return {**values, "gossip": gossip}


def config_to_dict(cfg: Any) -> dict:
    """The nested plain-dict form of a config (what :func:`dump_config` writes; tuples as lists)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into the key path and its YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected the form section.key=value, e.g. train.batch_size=64")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return path, value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Write each ``section.key=value`` override into the nested dict ``values`` (in place)."""
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is a value, not a section")
            node = child
        node[path[-1]] = value
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (optional) -> defaults -> overrides, validated. Raises ConfigError with the key."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        values = loaded or {}
    apply_overrides(values, list(overrides or []))
    cfg = config_from_dict(values)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks the types alone cannot express."""
    d, t = cfg.data, cfg.train
    if d.num_peers < 1:
        raise ConfigError(f"data.num_peers: expected >= 1, got {d.num_peers}")
    if not 0 <= d.peer_index < d.num_peers:
        raise ConfigError(
            f"data.peer_index: expected 0 <= peer_index < num_peers={d.num_peers}, got {d.peer_index}"
        )
    for key in ("batch_size", "period", "log_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}: expected >= 1, got {getattr(t, key)}")
    if t.slowdown < 1.0:
        raise ConfigError(f"train.slowdown: expected >= 1.0 (a slow-down factor), got {t.slowdown}")
    if t.lr_schedule == "cosine" and t.steps is None:
        raise ConfigError("train.lr_schedule: cosine needs train.steps (the decay length)")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:<i>, got {t.device!r}")
    from peer.data import DataError  # late: keeps `import peer.config` light
    from peer.partition import parse_partition

    try:
        parse_partition(d.partition)
    except (DataError, ValueError) as exc:
        raise ConfigError(f"data.partition: {exc}") from None
    _validate_gossip(cfg.gossip)


def _validate_gossip(g: GossipConfig) -> None:
    from gossip import topology  # late, as above

    try:
        spec = topology.parse(g.topology)
    except ValueError as exc:
        raise ConfigError(f"gossip.topology: {exc}") from None
    if spec.directed and g.mixing == "metropolis_hastings":
        raise ConfigError(
            f"gossip.mixing: {g.topology} is directed; Metropolis-Hastings needs an undirected "
            f"graph, use mixing: uniform"
        )
    _validate_deadlines(g)
    if not 0.0 <= g.trim_fraction < 0.5:
        raise ConfigError(f"gossip.trim_fraction: expected 0 <= trim_fraction < 0.5, got {g.trim_fraction}")
    for key in ("max_norm_ratio", "max_distance_ratio"):
        value = getattr(g, key)
        if value is not None and value <= 1.0:
            raise ConfigError(f"gossip.{key}: expected > 1 or null, got {value}")
    for key in ("topk_fraction", "choco_gamma"):
        if not 0.0 < getattr(g, key) <= 1.0:
            raise ConfigError(f"gossip.{key}: expected 0 < {key} <= 1, got {getattr(g, key)}")


def _validate_deadlines(g: GossipConfig) -> None:
    if g.deadline_s != "auto" and not g.deadline_s > 0:
        raise ConfigError(f"gossip.deadline_s: expected > 0 or auto, got {g.deadline_s}")
    for key in ("deadline_max_s", "deadline_min_s"):
        if not getattr(g, key) > 0:
            raise ConfigError(f"gossip.{key}: expected > 0, got {getattr(g, key)}")
    if g.deadline_min_s > g.deadline_max_s:
        raise ConfigError(
            f"gossip.deadline_min_s: expected <= deadline_max_s={g.deadline_max_s}, got {g.deadline_min_s}"
        )
    if not 0 < g.deadline_percentile <= 100:
        raise ConfigError(f"gossip.deadline_percentile: expected 0 < q <= 100, got {g.deadline_percentile}")
    if not g.deadline_margin >= 1:
        raise ConfigError(f"gossip.deadline_margin: expected >= 1, got {g.deadline_margin}")


def dump_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (what actually ran); returns the path."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
