"""peer.partition: the partitioners' guarantees (disjoint, complete, seeded, skew growing as alpha
falls, exact shard and size rules) and the partition report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peer.partition import PartitionSpec, parse_partition, partition, partition_report, write_partition_report

LABELS = np.repeat(np.arange(10), 300)  # 3000 samples, 10 balanced classes
ALL_SPECS = [
    "iid",
    "feature_skew",
    "dirichlet:0.5",
    "dirichlet:0.01",
    "dirichlet_balanced:0.5",
    "dirichlet_balanced:0.001",
    "shards:2",
    "quantity:0.5",
    "quantity:0.05",
]


def _heterogeneity(spec: str, seeds=range(3), num_peers: int = 20) -> float:
    return float(
        np.mean(
            [
                partition_report(LABELS, partition(LABELS, num_peers, parse_partition(spec), seed), 10)[
                    "heterogeneity"
                ]
                for seed in seeds
            ]
        )
    )


@pytest.mark.parametrize("text", ALL_SPECS)
def test_partition_is_disjoint_complete_seeded_and_non_empty(text: str):
    # prepare
    spec = parse_partition(text)
    # execute
    parts = partition(LABELS, 13, spec, seed=5)
    again = partition(LABELS, 13, spec, seed=5)
    other = partition(LABELS, 13, spec, seed=6)
    # assert
    joined = np.concatenate(parts)
    assert len(parts) == 13 and all(p.dtype == np.int64 for p in parts)
    assert np.array_equal(np.sort(joined), np.arange(LABELS.size))  # disjoint and complete
    assert all(p.size >= 1 for p in parts)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


@pytest.mark.parametrize("kind", ["dirichlet", "dirichlet_balanced"])
def test_skew_grows_as_alpha_falls(kind: str):
    # execute
    scores = [_heterogeneity(f"{kind}:{alpha}") for alpha in (1e5, 1.0, 0.1, 0.01)]
    # assert
    assert scores == sorted(scores) and len(set(scores)) == 4, scores
    assert scores[0] < 0.02, "alpha = 1e5 should be IID in effect"
    assert scores[-1] > 0.7


def test_iid_is_nearly_unskewed():
    # execute / assert
    assert _heterogeneity("iid") < 0.1 < _heterogeneity("dirichlet:1")


@pytest.mark.parametrize("alpha", [1e5, 1.0, 0.1, 0.001])
def test_balanced_dirichlet_gives_equal_sizes(alpha: float):
    # execute
    sizes = [p.size for p in partition(LABELS, 7, PartitionSpec("dirichlet_balanced", alpha=alpha), seed=1)]
    # assert: 3000 = 7 * 428 + 4
    assert sorted(sizes) == [428] * 3 + [429] * 4


@pytest.mark.parametrize("k, peers", [(1, 10), (2, 10), (3, 7), (2, 25)])
def test_shards_give_exactly_k_classes_per_peer(k: int, peers: int):
    # execute
    parts = partition(LABELS, peers, PartitionSpec("shards", classes_per_peer=k), seed=2)
    # assert
    assert all(np.unique(LABELS[p]).size == k for p in parts)


def test_shards_reject_impossible_requests():
    # execute / assert
    with pytest.raises(ValueError, match="covers 4 of 10 classes"):
        partition(LABELS, 2, PartitionSpec("shards", classes_per_peer=2), seed=0)
    with pytest.raises(ValueError, match="at least 11 classes"):
        partition(LABELS, 20, PartitionSpec("shards", classes_per_peer=11), seed=0)


def test_quantity_skew_varies_sizes_not_labels():
    # execute
    parts = partition(LABELS, 10, parse_partition("quantity:0.5"), seed=0)
    report = partition_report(LABELS, parts, 10)
    # assert
    assert report["size_max"] > 3 * report["size_min"]
    big = [p for p in report["peers"] if p["size"] >= 100]
    assert big and all(p["tv_to_global"] < 0.2 for p in big)


def test_feature_skew_is_the_iid_split():
    # execute
    skew = partition(LABELS, 6, parse_partition("feature_skew"), seed=3)
    iid = partition(LABELS, 6, parse_partition("iid"), seed=3)
    # assert
    assert all(np.array_equal(a, b) for a, b in zip(skew, iid))


def test_min_size_is_enforced():
    # execute
    parts = partition(LABELS, 20, PartitionSpec("dirichlet", alpha=0.01, min_size=50), seed=0)
    # assert
    assert min(p.size for p in parts) >= 50 and sum(p.size for p in parts) == LABELS.size
    with pytest.raises(ValueError, match="at least 200 of 3000"):
        partition(LABELS, 20, PartitionSpec("iid", min_size=200), seed=0)


def test_parse_partition_round_trips_and_rejects():
    # execute / assert
    texts = ("iid", "feature_skew", "dirichlet:0.1", "dirichlet_balanced:0.001", "shards:3", "quantity:0.5")
    for text in texts:
        assert str(parse_partition(text)) == text
    assert parse_partition("dirichlet:1e5") == PartitionSpec("dirichlet", alpha=1e5)
    assert parse_partition(" Shards:2 ").classes_per_peer == 2
    for bad in ("dirichlet", "dirichlet:-1", "shards:x", "iid:3", "zipf:2", "shards:0"):
        with pytest.raises(ValueError):
            parse_partition(bad)


# ------------------------------------------------------------------------------------- reports


def test_report_math_on_a_hand_computed_case():
    # prepare: peer 0 = {0, 0, 1, 1}, peer 1 = {2, 2}; global = uniform over 3 classes
    labels = np.array([0, 0, 1, 1, 2, 2])
    parts = [np.array([0, 1, 2, 3]), np.array([4, 5])]
    # execute
    report = partition_report(labels, parts, 3, ["a", "b", "c"], spec=PartitionSpec("shards"), seed=4)
    # assert: effective classes exp(ln 2) = 2 and 1; TV = 1/2(1/6+1/6+1/3) = 1/3 and 1/2(1/3+1/3+2/3) = 2/3
    peers = report["peers"]
    assert peers[0]["histogram"] == [2, 2, 0] and peers[1]["histogram"] == [0, 0, 2]
    assert [p["effective_classes"] for p in peers] == pytest.approx([2.0, 1.0])
    assert [p["tv_to_global"] for p in peers] == pytest.approx([1 / 3, 2 / 3])
    assert report["heterogeneity"] == pytest.approx(0.5)
    assert report["effective_classes_mean"] == pytest.approx(1.5)
    assert report["global_histogram"] == [2, 2, 2]
    assert report["spec"]["text"] == "shards:2" and report["seed"] == 4


def test_report_files_are_written(tmp_path: Path):
    # prepare
    parts = partition(LABELS, 4, parse_partition("dirichlet:0.3"), seed=0)
    names = [f"cls{i}" for i in range(10)]
    report = partition_report(LABELS, parts, 10, names, spec=parse_partition("dirichlet:0.3"))
    wide_labels = np.arange(300) % 30
    wide = partition_report(wide_labels, partition(wide_labels, 3, PartitionSpec(), 0), 30)
    # execute
    json_path, text_path = write_partition_report(report, tmp_path / "run")
    _, wide_text = write_partition_report(wide, tmp_path / "wide")
    # assert
    assert json.loads(json_path.read_text()) == report
    table = text_path.read_text().splitlines()
    assert table[0].startswith("partition dirichlet:0.3") and f"{report['heterogeneity']:.4f}" in table[1]
    assert "cls9" in table[3] and len(table) == 4 + 4
    assert "top classes" in wide_text.read_text()
