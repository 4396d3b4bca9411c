"""analysis.mixing_effect: drops paired with the same seed's IID run, and their rank correlation
with the realised mixing, on a hand-made sweep whose answer is known."""

from __future__ import annotations

import csv

import pytest

from analysis.mixing_effect import correlations, drop_points, plot_drop_vs_mixing
from analysis.results import result_columns
from analysis.sweep_dir import load_sweep

FIELDS = result_columns(["graph", "split"])


def _sweep(tmp_path, rows):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    with (sweep / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (sweep / "grid.yaml").write_text("seeds: [0, 1]\n")
    return load_sweep(sweep)


def _row(graph, split, seed, knn, gap, distance, status="complete"):
    partition = "iid" if split == "iid" else "dirichlet:0.1"
    return {
        "run": f"{graph}-{split}-{seed}",
        "status": status,
        "seed": seed,
        "graph": graph,
        "split": split,
        "partition": partition,
        "topology": graph,
        "knn_mean": knn,
        "spectral_gap_mean": gap,
        "consensus_distance": distance,
    }


def _rows():
    """Five graphs, two seeds: the weaker the mixing (smaller gap, larger distance), the larger the drop."""
    rows = []
    for i, graph in enumerate(["g1", "g2", "g3", "g4", "g5"]):
        for seed in (0, 1):
            rows.append(_row(graph, "iid", seed, 0.80, 0.1 * (i + 1), 0.01))
            drop = 0.10 - 0.02 * i + 0.001 * seed
            rows.append(_row(graph, "dir", seed, 0.80 - drop, 0.1 * (i + 1), 1.0 - 0.2 * i - 0.01 * seed))
    return rows


def test_each_non_iid_run_is_paired_with_its_own_seeds_iid_run(tmp_path):
    # prepare: one non-IID run without an IID run of its seed, and one failed run
    rows = _rows() + [_row("g6", "dir", 0, 0.5, 0.9, 0.1), _row("g1", "dir", 2, 0.1, 0.1, 2.0, "failed")]
    # execute
    points = drop_points(_sweep(tmp_path, rows))
    # assert
    assert len(points) == 10
    g1 = next(p for p in points if p["run"] == "g1-dir-0")
    assert g1["drop"] == pytest.approx(0.10) and g1["spectral_gap_mean"] == pytest.approx(0.1)


def test_weaker_mixing_with_larger_drops_gives_the_expected_signs(tmp_path):
    found = correlations(drop_points(_sweep(tmp_path, _rows())))
    gap, distance = found["spectral_gap_mean"], found["consensus_distance"]
    assert gap.rho < -0.9 and gap.ci_high < 0  # bigger gap, smaller drop
    assert distance.rho > 0.9 and distance.ci_low > 0  # further apart, bigger drop
    assert gap.n == distance.n == 10


def test_the_plot_is_drawn_or_skipped_with_a_reason(tmp_path):
    sweep = _sweep(tmp_path, _rows())
    png, caption = plot_drop_vs_mixing(sweep, tmp_path / "drop_vs_mixing.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG" and "Spearman" in caption
    (tmp_path / "few").mkdir()
    png, reason = plot_drop_vs_mixing(_sweep(tmp_path / "few", _rows()[:4]), tmp_path / "x.png")
    assert png is None and "fewer than 3" in reason
