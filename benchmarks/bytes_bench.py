"""Bytes to accuracy: how few gossip bytes keep the swarm's gain over its peers training alone.

Runs the sweep ``--grid`` (default ``examples/bench/bytes.yaml``: the same swarm, seeds and steps with
fp32 gossip every 10 steps and with compressed / less frequent gossip, θ̄ evaluated for every run),
then trains the fp32 run's baselines (each peer alone: the local-only result; one centralised
model), and compares every arm with the fp32 one: bytes served over the whole run
(``bytes_out_total``), per-peer mean kNN and θ̄'s kNN. Both are resumable (a finished run or
baseline is kept). Ends with::

    RESULT baseline_bytes=<n> best_bytes=<n> bytes_ratio=<x> knn_delta=<pts> local_only_gap=<pts>
           gain_kept=<x> best_arm=<name> target_met=<bool>

``local_only_gap`` = fp32 swarm − local-only (kNN points: the collaboration gain); ``gain_kept`` =
(arm − local-only) / that gap; ``knn_delta`` = arm − fp32 swarm. The best arm is the one with the
largest bytes ratio among those within 1 kNN point of fp32 that keep ≥ 90 % of the gain (if none
does, the one that keeps the most gain, and ``target_met=false``). A plot of kNN against bytes, local-only
and centralised as lines, goes to ``--out``.

Usage: ``.venv/bin/python benchmarks/bytes_bench.py [--grid G] [--out docs/results/bytes]``
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.baselines import summarize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DSSL = (sys.executable, "-m", "launcher.cli")
BASELINE_ARM = "fp32_p10"
MAX_KNN_DROP = 0.01  # the target: at most 1 kNN point below the fp32 swarm ...
MIN_GAIN_KEPT = 0.90  # ... keeping at least 90 % of its gain over local-only
TARGET_RATIO = 100.0  # ... with at least 100x fewer bytes


def _run(*argv: str) -> None:
    print("bytes_bench:", " ".join(argv), flush=True)
    subprocess.run([*DSSL, *argv], cwd=REPO, check=True)


def _rows(sweep_dir: Path) -> dict[str, dict]:
    """results.csv by the arm axis (one seed per arm)."""
    with (sweep_dir / "results.csv").open() as fh:
        return {row["arm"]: row for row in csv.DictReader(fh)}


def _baselines(run_dir: Path) -> tuple[float, float]:
    """(local-only mean kNN, centralised kNN) of a run whose baselines were trained."""
    summary = summarize(run_dir)
    return summary.mean("alone", "knn"), summary.centralised["knn"]


def compare(rows: dict[str, dict], local: float) -> list[dict]:
    """Every arm against the fp32 one: bytes ratio, kNN delta, share of the gain kept."""
    base = rows[BASELINE_ARM]
    base_bytes, base_knn = int(base["bytes_out_total"]), float(base["knn_mean"])
    gap = base_knn - local
    out = []
    for arm, row in rows.items():
        knn, nbytes = float(row["knn_mean"]), int(row["bytes_out_total"])
        out.append(
            {
                "arm": arm,
                "bytes": nbytes,
                "knn": knn,
                "consensus_knn": float(row["consensus_knn"]) if row.get("consensus_knn") else None,
                "ratio": base_bytes / max(nbytes, 1),
                "knn_delta": knn - base_knn,
                "gain_kept": (knn - local) / gap if gap > 0 else float("nan"),
            }
        )
    return out


def best_arm(arms: list[dict]) -> tuple[dict, bool]:
    """The arm with the largest bytes ratio that keeps the quality targets; else the one keeping
    the most gain. Returns (arm, whether every target, the ratio included, is met)."""
    compressed = [a for a in arms if a["arm"] != BASELINE_ARM]
    good = [a for a in compressed if a["knn_delta"] >= -MAX_KNN_DROP and a["gain_kept"] >= MIN_GAIN_KEPT]
    if good:
        best = max(good, key=lambda a: a["ratio"])
        return best, best["ratio"] >= TARGET_RATIO
    return max(compressed, key=lambda a: a["gain_kept"]), False


def plot(arms: list[dict], local: float, central: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for a in arms:
        ax.scatter(a["bytes"], a["knn"], color="C0")
        if a["consensus_knn"] is not None:
            ax.scatter(a["bytes"], a["consensus_knn"], color="C1", marker="x")
        ax.annotate(a["arm"], (a["bytes"], a["knn"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(local, color="grey", linestyle="--", label="local-only (no gossip)")
    ax.axhline(central, color="black", linestyle=":", label="centralised")
    ax.scatter([], [], color="C0", label="swarm, per-peer mean")
    ax.scatter([], [], color="C1", marker="x", label="consensus model θ̄")
    ax.set_xscale("log")
    ax.set_xlabel("bytes served by all peers over the run")
    ax.set_ylabel("kNN accuracy (10,000 test images)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", type=Path, default=REPO / "examples" / "bench" / "bytes.yaml")
    p.add_argument("--sweep-dir", type=Path, default=REPO / "runs" / "sweeps" / "bytes")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "bytes")
    args = p.parse_args(argv)
    _run("sweep", str(args.grid))
    rows = _rows(args.sweep_dir)
    fp32_run = args.sweep_dir / rows[BASELINE_ARM]["run_dir"]
    _run("baselines", str(fp32_run))
    local, central = _baselines(fp32_run)
    arms = compare(rows, local)
    for a in sorted(arms, key=lambda a: -a["bytes"]):
        print(
            f"bytes_bench: {a['arm']:>12}: {a['bytes']:>12,d} bytes ({a['ratio']:6.1f}x fewer), kNN "
            f"{a['knn']:.4f} (θ̄ {a['consensus_knn']}), {100 * a['knn_delta']:+.2f} pts vs fp32, "
            f"gain kept {a['gain_kept']:.2f}",
            flush=True,
        )
    best, met = best_arm(arms)
    plot(arms, local, central, args.out / "bytes_to_accuracy.png")
    base = next(a for a in arms if a["arm"] == BASELINE_ARM)
    print(
        f"RESULT baseline_bytes={base['bytes']} best_bytes={best['bytes']} bytes_ratio={best['ratio']:.1f} "
        f"knn_delta={100 * best['knn_delta']:+.2f} local_only_gap={100 * (base['knn'] - local):+.2f} "
        f"gain_kept={best['gain_kept']:.3f} best_arm={best['arm']} target_met={str(met).lower()}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
