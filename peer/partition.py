"""Non-IID partitioners and partition reports: how a training set is split across peers.

All partitioners are seeded and deterministic; they return sorted index arrays, disjoint and
complete: IID, Dirichlet label skew in the usual unbalanced form (Hsu et al. 2019) and in the
balanced, Sinkhorn-scaled form of the D-SSL paper's code (equal peer sizes), k-classes-per-peer
shards, quantity skew, and feature skew (an IID split; the peer-specific augmentation is applied by
the trainer). Reports give per-peer histograms, the effective number of classes and a heterogeneity
score, as JSON and as a readable table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# Partitioners
# ---------------------------------------------------------------------------------------------

PARTITION_KINDS = ("iid", "dirichlet", "dirichlet_balanced", "shards", "quantity", "feature_skew")


@dataclass(frozen=True)
class PartitionSpec:
    """How the training set is split across peers.

    kind: "iid"; "dirichlet" (per-class peer shares ~ Dir(alpha), unbalanced sizes);
    "dirichlet_balanced" (equal peer sizes, Sinkhorn-balanced as in the D-SSL paper's code);
    "shards" (exactly `classes_per_peer` classes per peer); "quantity" (IID labels, peer sizes
    ~ Dir(alpha) shares of the data); "feature_skew" (an IID split; the trainer applies a
    peer-specific augmentation). alpha >= 1e5 makes the Dirichlet kinds IID in effect.
    """

    kind: str = "iid"
    alpha: float = 0.1  # Dirichlet concentration (dirichlet, dirichlet_balanced, quantity)
    classes_per_peer: int = 2  # shards only
    min_size: int = 1  # every peer gets at least this many samples

    def __post_init__(self) -> None:
        if self.kind not in PARTITION_KINDS:
            raise ValueError(f"partition kind {self.kind!r}: expected one of {PARTITION_KINDS}")
        if not self.alpha > 0:
            raise ValueError(f"partition alpha must be > 0, got {self.alpha}")
        if self.classes_per_peer < 1 or self.min_size < 0:
            raise ValueError("partition classes_per_peer must be >= 1 and min_size >= 0")

    def __str__(self) -> str:
        """The text form parse_partition reads back."""
        if self.kind in ("dirichlet", "dirichlet_balanced", "quantity"):
            return f"{self.kind}:{self.alpha:g}"
        if self.kind == "shards":
            return f"shards:{self.classes_per_peer}"
        return self.kind


def parse_partition(text: str) -> PartitionSpec:
    """ "iid" | "feature_skew" | "dirichlet:A" | "dirichlet_balanced:A" | "quantity:A" | "shards:K"."""
    kind, _, argument = text.strip().lower().partition(":")
    try:
        if kind in ("iid", "feature_skew") and not argument:
            return PartitionSpec(kind=kind)
        if kind in ("dirichlet", "dirichlet_balanced", "quantity") and argument:
            return PartitionSpec(kind=kind, alpha=float(argument))
        if kind == "shards" and argument:
            return PartitionSpec(kind=kind, classes_per_peer=int(argument))
    except ValueError as exc:
        raise ValueError(f"partition {text!r}: {exc}") from exc
    raise ValueError(
        f"partition {text!r}: expected iid, feature_skew, dirichlet:<alpha>, "
        "dirichlet_balanced:<alpha>, quantity:<alpha> or shards:<k>"
    )


def _dirichlet_log(rng: np.random.Generator, alpha: float, size: tuple[int, ...]) -> np.ndarray:
    """log of i.i.d. Gamma(alpha, 1) draws, exact even for tiny alpha where Gamma underflows to 0:
    Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia & Tsang 2000). Normalising a row of these gives a
    Dirichlet(alpha) sample."""
    return np.log(rng.standard_gamma(alpha + 1.0, size)) + np.log1p(-rng.random(size)) / alpha


def _dirichlet(rng: np.random.Generator, alpha: float, size: int) -> np.ndarray:
    """One Dirichlet(alpha * 1_size) sample (a softmax of log-Gamma draws)."""
    log_gamma = _dirichlet_log(rng, alpha, (size,))
    weights = np.exp(log_gamma - log_gamma.max())
    return weights / weights.sum()


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to `shares` that sum exactly to `total` (Hamilton's method)."""
    ideal = shares / shares.sum() * total
    counts = np.floor(ideal).astype(np.int64)
    order = np.argsort(-(ideal - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def _split_by_counts(indices: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    return np.split(indices, np.cumsum(counts)[:-1])


def _ensure_min_size(parts: list[np.ndarray], min_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Deterministic fix-up instead of resampling: a peer below `min_size` takes random samples
    from the currently largest peer until every peer has `min_size` (needs N * min_size <= n)."""
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    while True:
        sizes = np.array([p.size for p in parts])
        needy = int(np.argmin(sizes))
        if sizes[needy] >= min_size:
            return parts
        donor = int(np.argmax(sizes))
        amount = min(min_size - sizes[needy], sizes[donor] - min_size)
        taken = rng.choice(sizes[donor], size=amount, replace=False)
        keep = np.ones(sizes[donor], dtype=bool)
        keep[taken] = False
        parts[needy] = np.concatenate([parts[needy], parts[donor][taken]])
        parts[donor] = parts[donor][keep]


def _iid(labels: np.ndarray, num_peers: int, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(labels.size), num_peers)


def _dirichlet_unbalanced(
    labels: np.ndarray, num_peers: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Hsu, Qi & Brown 2019: each class is shared out over the peers by a Dir(alpha) draw."""
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_peers)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        counts = _largest_remainder(_dirichlet(rng, alpha, num_peers), members.size)
        for peer, piece in enumerate(_split_by_counts(members, counts)):
            pieces[peer].append(piece)
    return [np.concatenate(p) for p in pieces]


def _equal_quotas(total: int, num_peers: int, rng: np.random.Generator) -> np.ndarray:
    quotas = np.full(num_peers, total // num_peers, dtype=np.int64)
    quotas[rng.permutation(num_peers)[: total % num_peers]] += 1
    return quotas


def _sinkhorn_counts(
    log_weights: np.ndarray,
    row_totals: np.ndarray,
    col_totals: np.ndarray,
    iterations: int = 5000,
    tol: float = 0.25,
) -> np.ndarray:
    """Integer matrix close to diag(u) W diag(v) with exactly the given row and column sums.

    Sinkhorn-Knopp scaling on the vectors u, v (two mat-vecs per iteration) until every row sum
    is within `tol` samples of its total. Weights below e^-300 of their row's largest are raised
    to that floor: the matrix keeps full support (so the scaling converges) and u, v stay far from
    float overflow; such entries are "never" in any alpha's draw and stay so after the floor.
    Convergence is slow for alpha <= 0.001; the cap bounds the time and the repair below makes the
    sums exact anyway: each column is rounded by largest remainder, then rows above their total
    hand samples to rows below it in the column that keeps the matrix closest to the scaled one.
    """
    if row_totals.sum() != col_totals.sum():
        raise ValueError(f"row totals sum to {row_totals.sum()}, column totals to {col_totals.sum()}")
    shifted = log_weights - log_weights.max(axis=1, keepdims=True)
    kernel = np.exp(np.maximum(shifted, -300.0))
    rows, cols = row_totals.astype(float), col_totals.astype(float)
    v = np.ones(kernel.shape[1])
    for _ in range(iterations):
        u = rows / (kernel @ v)
        v = cols / (kernel.T @ u)
        if np.max(np.abs(u * (kernel @ v) - rows)) < tol:
            break
    target = u[:, None] * kernel * v[None, :]
    counts = np.stack(
        [_largest_remainder(target[:, c], int(col_totals[c])) for c in range(target.shape[1])], axis=1
    )
    excess = counts.sum(axis=1) - row_totals
    while np.any(excess):
        giver, taker = int(np.argmax(excess)), int(np.argmin(excess))
        gain = (target[taker] - counts[taker]) - (target[giver] - counts[giver])
        column = int(np.argmax(np.where(counts[giver] > 0, gain, -np.inf)))
        moved = int(
            min(excess[giver], -excess[taker], counts[giver, column], max(1, np.ceil(gain[column] / 2)))
        )
        counts[giver, column] -= moved
        counts[taker, column] += moved
        excess[giver] -= moved
        excess[taker] += moved
    return counts


def _dirichlet_balanced(
    labels: np.ndarray, num_peers: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Equal-size label skew as in the D-SSL paper's code (prepare_dataset.py, sampling "dir"):
    a peers x classes matrix of i.i.d. Gamma(alpha) weights (each column is a Dir(alpha) share of a
    class over peers) is Sinkhorn-scaled so that rows hold equal quotas (n // N, +1 for n % N
    peers) and columns hold each class's count, then rounded to integers with those exact sums.
    Small alpha keeps the scaled matrix close to the sparse draw, so skew grows as alpha falls."""
    classes, class_counts = np.unique(labels, return_counts=True)
    quotas = _equal_quotas(labels.size, num_peers, rng)
    counts = _sinkhorn_counts(_dirichlet_log(rng, alpha, (num_peers, classes.size)), quotas, class_counts)
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_peers)]
    for column, cls in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == cls))
        for peer, piece in enumerate(_split_by_counts(members, counts[:, column])):
            pieces[peer].append(piece)
    return [np.concatenate(p) for p in pieces]


def _shards(labels: np.ndarray, num_peers: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Exactly k distinct classes per peer: a random class order is dealt out cyclically (peer i,
    in random peer order, holds order[(i*k + j) mod K] for j < k), so every class is held by
    floor or ceil(N*k/K) peers; each class's samples are split equally among its holders."""
    classes = np.unique(labels)
    if k > classes.size:
        raise ValueError(f"shards:{k} needs at least {k} classes, the labels have {classes.size}")
    if num_peers * k < classes.size:
        raise ValueError(
            f"shards:{k} with {num_peers} peers covers {num_peers * k} of {classes.size} "
            "classes; every class must be held by some peer"
        )
    order, peer_order = rng.permutation(classes), rng.permutation(num_peers)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for slot, peer in enumerate(peer_order):
        for j in range(k):
            holders[int(order[(slot * k + j) % classes.size])].append(int(peer))
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_peers)]
    for cls, peers in holders.items():
        members = rng.permutation(np.flatnonzero(labels == cls))
        if members.size < len(peers):
            raise ValueError(f"shards:{k}: class {cls} has {members.size} samples for {len(peers)} peers")
        for peer, piece in zip(peers, np.array_split(members, len(peers))):
            pieces[peer].append(piece)
    return [np.concatenate(p) for p in pieces]


def _quantity(labels: np.ndarray, num_peers: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Quantity skew (Li et al., NIID-Bench 2022): peer sizes are Dir(alpha) shares of the data,
    labels IID within each peer."""
    counts = _largest_remainder(_dirichlet(rng, alpha, num_peers), labels.size)
    return _split_by_counts(rng.permutation(labels.size), counts)


def partition(labels: np.ndarray, num_peers: int, spec: PartitionSpec, seed: int) -> list[np.ndarray]:
    """Splits sample indices over `num_peers` peers: sorted int64 arrays, disjoint, whose union is
    every index, identical for identical (labels, num_peers, spec, seed). Every peer gets at least
    spec.min_size samples (kinds with random sizes are fixed up deterministically)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError("labels must be a 1-D array of non-negative integers")
    if num_peers < 1 or labels.size < num_peers * max(spec.min_size, 1):
        raise ValueError(
            f"cannot give {num_peers} peers at least {max(spec.min_size, 1)} of {labels.size} samples"
        )
    rng = np.random.default_rng(seed)
    if spec.kind in ("iid", "feature_skew"):
        parts = _iid(labels, num_peers, rng)
    elif spec.kind == "dirichlet":
        parts = _dirichlet_unbalanced(labels, num_peers, spec.alpha, rng)
    elif spec.kind == "dirichlet_balanced":
        parts = _dirichlet_balanced(labels, num_peers, spec.alpha, rng)
    elif spec.kind == "shards":
        parts = _shards(labels, num_peers, spec.classes_per_peer, rng)
    else:
        parts = _quantity(labels, num_peers, spec.alpha, rng)
    parts = _ensure_min_size(parts, spec.min_size, rng)
    return [np.sort(p).astype(np.int64) for p in parts]


# ---------------------------------------------------------------------------------------------
# Partition reports
# ---------------------------------------------------------------------------------------------


def effective_classes(histogram: np.ndarray) -> float:
    """exp of the label entropy (natural log): 1 for one class, K for K equally common classes."""
    total = histogram.sum()
    if total == 0:
        return 0.0
    shares = histogram[histogram > 0] / total
    return float(np.exp(-(shares * np.log(shares)).sum()))


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance 0.5 * sum |p - q| between two distributions."""
    return float(0.5 * np.abs(p - q).sum())


def _peer_entry(peer: int, hist: np.ndarray, global_dist: np.ndarray) -> dict:
    """One peer's row of the partition report."""
    size = int(hist.sum())
    return {
        "peer": peer,
        "size": size,
        "histogram": hist.tolist(),
        "classes_present": int((hist > 0).sum()),
        "effective_classes": effective_classes(hist),
        "tv_to_global": total_variation(hist / size, global_dist) if size else None,
    }


def partition_report(
    labels: np.ndarray,
    parts: list[np.ndarray],
    num_classes: int,
    class_names: list[str] | None = None,
    spec: PartitionSpec | None = None,
    seed: int | None = None,
) -> dict:
    """Per-peer sizes and class histograms, effective classes, TV distance to the global label
    distribution (that of all partitioned samples) and their means. The heterogeneity score is the
    mean TV over non-empty peers: 0 for IID, approaching 1 - 1/K under extreme label skew."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    histograms = np.stack([np.bincount(labels[p], minlength=num_classes)[:num_classes] for p in parts])
    global_hist = histograms.sum(axis=0)
    global_dist = global_hist / max(global_hist.sum(), 1)
    peers = [_peer_entry(peer, hist, global_dist) for peer, hist in enumerate(histograms)]
    filled = [p for p in peers if p["size"]]
    sizes = np.array([p["size"] for p in peers])
    return {
        "spec": None if spec is None else {**asdict(spec), "text": str(spec)},
        "seed": seed,
        "num_peers": len(parts),
        "num_samples": int(sizes.sum()),
        "num_classes": num_classes,
        "class_names": list(class_names) if class_names is not None else [str(c) for c in range(num_classes)],
        "global_histogram": global_hist.tolist(),
        "size_min": int(sizes.min()),
        "size_max": int(sizes.max()),
        "size_mean": float(sizes.mean()),
        "effective_classes_mean": float(np.mean([p["effective_classes"] for p in filled])) if filled else 0.0,
        "heterogeneity": float(np.mean([p["tv_to_global"] for p in filled])) if filled else 0.0,
        "peers": peers,
    }


def format_partition_report(report: dict) -> str:
    """A fixed-width table: one row per peer (size, effective classes, TV, per-class counts when
    there are at most 20 classes, else the three largest classes with their shares)."""
    names = report["class_names"]
    spec = report["spec"]["text"] if report["spec"] else "unspecified"
    lines = [
        f"partition {spec}  seed={report['seed']}  peers={report['num_peers']}  "
        f"samples={report['num_samples']}  classes={report['num_classes']}",
        f"heterogeneity (mean TV to global) = {report['heterogeneity']:.4f}   "
        f"effective classes (mean) = {report['effective_classes_mean']:.2f}   "
        f"sizes min/mean/max = {report['size_min']}/{report['size_mean']:.1f}/{report['size_max']}",
        "",
    ]
    wide = len(names) <= 20
    header = f"{'peer':>5} {'size':>7} {'eff.cls':>7} {'TV':>6}  "
    header += " ".join(f"{n[:7]:>7}" for n in names) if wide else "top classes (share)"
    lines.append(header)
    for peer in report["peers"]:
        tv = "-" if peer["tv_to_global"] is None else f"{peer['tv_to_global']:.3f}"
        row = f"{peer['peer']:>5} {peer['size']:>7} {peer['effective_classes']:>7.2f} {tv:>6}  "
        hist = np.asarray(peer["histogram"])
        if wide:
            row += " ".join(f"{int(c):>7}" for c in hist)
        else:
            top = np.argsort(-hist, kind="stable")[:3]
            row += ", ".join(f"{names[c]} ({hist[c] / max(peer['size'], 1):.0%})" for c in top if hist[c])
        lines.append(row)
    return "\n".join(lines) + "\n"


def write_partition_report(report: dict, directory: str | Path) -> tuple[Path, Path]:
    """Writes partition.json (the report) and partition.txt (the table) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, text_path = directory / "partition.json", directory / "partition.txt"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    text_path.write_text(format_partition_report(report))
    return json_path, text_path
