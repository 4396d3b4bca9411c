"""Swarm-level run-time diagnostics assembled from a finished (or running) run directory.

Every peer logs one ``round`` record per gossip round in ``peers/<id>/metrics.jsonl`` carrying its
*realised* mixing row: ``self_weight`` and, per neighbour, whether it answered and with which weight
(:meth:`peer.trainer.Trainer._write_round`). This module stacks those rows into the realised mixing
matrix W of each round and reports the quantities of docs/paper.md §4 on it:

* spectral gap 1 − |λ₂(W)| (:func:`gossip.mixing.spectral_gap`) — the consensus rate of D-PSGD
  (Lian et al. 2017); the paper itself does not use it, we log it because faults move it;
* average connectivity |Ā| = (1/N) Σ|A_i| and the harmonic mean of the closed-neighbourhood sizes
  |A_i| of the *realised* graph (edge i→j when W_ij > 0) — the paper's theory quantity (§3.1, A.6.2);
* the mean per-round neighbour distance ‖θ_i − mean of answering neighbours‖² (the cheap consensus
  proxy every peer already computes while mixing);

and the exact consensus distance (1/N) Σ‖θ_i − θ̄‖², from the peers' ``final_params.pt`` at the
end and, per round, from the parameter snapshots the peers save every ``eval.snapshot_every`` rounds
(``peers/<id>/snapshots/round_<r>.pt``: the params each published for round r, before mixing;
:func:`snapshot_consensus`), and the encoder's own consensus distance at the end (its parameters
only, from the final checkpoints: :mod:`analysis.consensus_distance`). In sync mode round r is
one logical moment of the swarm; in async mode the peers' round counters are not aligned and the
per-round figure is approximate.

Representation diagnostics (:mod:`peer.probe`): each peer's ``probe`` records (collapse std of
its embeddings of a shared probe batch, A-MMD to its neighbourhood's) are averaged over peers per
round, and the summary keys ``collapse_std_mean`` / ``a_mmd_mean`` average each peer's last value.

Rows of W: a peer with a round-r record contributes its logged row; a peer that some row gives
weight to but that logged no round-r record (dead, not yet joined, or its mix timed out) keeps its
own parameters that round, so its row is the unit row e_i. Weights are taken as logged (already
renormalised by the peer), so each row sums to 1 up to rounding.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch

from analysis.consensus_distance import (
    consensus_distance,
    encoder_consensus_distance,
    encoder_part,
    encoder_slices,
)
from analysis.learning_curve import knn_curve, last_quarter_gain
from gossip.mixing import spectral_gap
from gossip.topology import average_connectivity, harmonic_connectivity
from peer.metrics import read_metrics
from peer.rundir import (
    DIAGNOSTICS_FILE,
    METRICS_FILE,
    PARAMS_FILE,
    PEERS_DIR,
    ROUNDS_CSV,
    SNAPSHOT_DIR,
    snapshot_round,
)

log = logging.getLogger(__name__)

ROUNDS_CSV_FIELDS = (
    "round",
    "peers_logged",
    "nodes",
    "spectral_gap",
    "average_connectivity",
    "harmonic_connectivity",
    "neighbour_distance_mean",
    "answered",
    "expected",
    "bytes_in",
    "bytes_out",
    "compute_seconds_mean",
    "pull_seconds_mean",
    "wait_seconds_mean",
    "staleness_max",
    "time_first",
    "time_last",
    "consensus_distance_exact",
    "encoder_consensus_distance_exact",
    "collapse_std_mean",
    "a_mmd_mean",
)


@dataclass(frozen=True)
class RoundDiagnostics:
    """Swarm-level quantities of one gossip round (None where no peer logged the input)."""

    round: int
    peers_logged: int  # peers with a round record for this round
    nodes: int  # size of the realised W (logged peers + peers they gave weight to)
    spectral_gap: float | None  # None when fewer than 2 peers took part (one peer alone does not mix)
    average_connectivity: float
    harmonic_connectivity: float
    neighbour_distance_mean: float | None
    answered: int  # neighbour snapshots that counted, summed over peers
    expected: int
    bytes_in: int
    bytes_out: int
    compute_seconds_mean: float | None
    pull_seconds_mean: float | None
    wait_seconds_mean: float | None
    staleness_max: int | None
    time_first: float  # unix time of the first / last peer's record of this round
    time_last: float
    consensus_distance_exact: float | None = None  # from the peers' snapshots of this round (if any)
    encoder_consensus_distance_exact: float | None = None  # the same over the encoder's parameters only
    collapse_std_mean: float | None = None  # mean over the peers' probe records of this round
    a_mmd_mean: float | None = None


def peer_records(run_dir: Path) -> dict[str, list[dict]]:
    """peer id -> that peer's metrics records, for every peer directory of the run."""
    peers_dir = Path(run_dir) / PEERS_DIR
    if not peers_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no peers/ directory (not a dssl run directory)")
    return {d.name: read_metrics(d / METRICS_FILE) for d in sorted(peers_dir.iterdir()) if d.is_dir()}


def realised_row(record: dict) -> dict[str, float]:
    """The round record's realised W row as {peer: weight}; the self entry is under its own id."""
    row = {record["peer"]: float(record.get("self_weight") if record.get("self_weight") is not None else 1.0)}
    for n in record.get("neighbours") or []:
        if n.get("answered") and n.get("weight"):
            row[n["peer"]] = row.get(n["peer"], 0.0) + float(n["weight"])
    return row


def realised_matrix(rows: dict[str, dict[str, float]]) -> tuple[list[str], np.ndarray]:
    """Stack per-peer rows into W over the sorted node set; nodes without a row get e_i."""
    nodes = sorted(set(rows) | {j for row in rows.values() for j in row})
    index = {p: i for i, p in enumerate(nodes)}
    w = np.eye(len(nodes))
    for peer, row in rows.items():
        w[index[peer]] = 0.0
        for j, weight in row.items():
            w[index[peer], index[j]] = weight
    return nodes, w


def realised_graph(nodes: list[str], w: np.ndarray) -> nx.DiGraph:
    """Directed graph with i→j when peer i averaged in j's snapshot (W_ij > 0, i ≠ j)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    for i, j in zip(*np.nonzero(w)):
        if i != j:
            graph.add_edge(nodes[i], nodes[j])
    return graph


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def round_diagnostics(round: int, records: list[dict]) -> RoundDiagnostics:
    """Diagnostics of one round from the round records the peers logged for it."""
    ok = [r for r in records if not r.get("error")]
    rows = {r["peer"]: realised_row(r) for r in ok}
    nodes, w = realised_matrix(rows)
    graph = realised_graph(nodes, w)
    distances = [
        r["neighbour_distance_sq"]
        for r in ok
        if r.get("answered") and r.get("neighbour_distance_sq") is not None
    ]
    stalenesses = [r["staleness_max"] for r in ok if r.get("staleness_max") is not None]
    times = [r["time"] for r in records]
    return RoundDiagnostics(
        round=round,
        peers_logged=len(records),
        nodes=len(nodes),
        spectral_gap=spectral_gap(w) if len(nodes) >= 2 else None,
        average_connectivity=average_connectivity(graph),
        harmonic_connectivity=harmonic_connectivity(graph),
        neighbour_distance_mean=_mean(distances),
        answered=sum(int(r.get("answered") or 0) for r in ok),
        expected=sum(int(r.get("expected") or 0) for r in ok),
        bytes_in=sum(int(r.get("bytes_in") or 0) for r in ok),
        bytes_out=sum(int(r.get("bytes_out") or 0) for r in ok),
        compute_seconds_mean=_mean(
            [r["compute_seconds"] for r in records if r.get("compute_seconds") is not None]
        ),
        pull_seconds_mean=_mean([r["pull_seconds"] for r in ok if r.get("pull_seconds") is not None]),
        wait_seconds_mean=_mean([r["wait_seconds"] for r in ok if r.get("wait_seconds") is not None]),
        staleness_max=max(stalenesses) if stalenesses else None,
        time_first=min(times),
        time_last=max(times),
    )


def _load_params(path: Path) -> dict | None:
    """A saved {"params", "fingerprint", ...} dict, or None when unreadable (torn, foreign, replaced)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any unreadable file is skipped, never fatal
        log.warning("skipping unreadable snapshot %s: %s", path, exc)
        return None
    if not isinstance(saved, dict) or not torch.is_tensor(saved.get("params")):
        log.warning("skipping snapshot %s: no params tensor", path)
        return None
    return saved


def exact_consensus_distance(run_dir: Path) -> float | None:
    """consensus_distance over the peers' final_params.pt (None without matching layouts)."""
    buffers, fingerprints = [], set()
    for path in sorted(Path(run_dir).glob(f"{PEERS_DIR}/*/{PARAMS_FILE}")):
        saved = _load_params(path)
        if saved is None:
            continue
        buffers.append(saved["params"])
        fingerprints.add(saved.get("fingerprint"))
    if not buffers or len(fingerprints) != 1 or len({b.numel() for b in buffers}) != 1:
        return None
    return consensus_distance(buffers)


def snapshot_consensus(run_dir: str | Path) -> list[dict]:
    """Exact consensus distance per snapshot round: ``[{round, peers, peer_ids, consensus_distance,
    encoder_consensus_distance}]``.

    Reads ``peers/<id>/snapshots/round_<r>.pt`` (the params peer <id> published for round r). A round
    counts when at least two peers saved a readable snapshot with the same layout fingerprint and
    size; if layouts differ, the largest agreeing group is used. The encoder's distance is over its
    slices of the buffer (None when the peers' configs do not rebuild that layout). Rounds in
    ascending order."""
    paths: dict[int, dict[str, Path]] = {}
    for path in sorted(Path(run_dir).glob(f"{PEERS_DIR}/*/{SNAPSHOT_DIR}/*.pt")):
        rnd = snapshot_round(path)
        if rnd is not None:
            paths.setdefault(rnd, {})[path.parent.parent.name] = path
    result = []
    encoder = encoder_slices(run_dir) if paths else None
    for rnd in sorted(paths):
        groups: dict[tuple[Any, int], dict[str, torch.Tensor]] = {}
        for peer, path in sorted(paths[rnd].items()):
            saved = _load_params(path)
            if saved is not None:
                key = (saved.get("fingerprint"), saved["params"].numel())
                groups.setdefault(key, {})[peer] = saved["params"]
        key, best = max(groups.items(), key=lambda item: len(item[1]), default=(None, {}))
        if len(best) >= 2:
            buffers = list(best.values())
            on_encoder = encoder is not None and key[0] == encoder[0]
            result.append(
                {
                    "round": rnd,
                    "peers": len(best),
                    "peer_ids": sorted(best),
                    "consensus_distance": consensus_distance(buffers),
                    "encoder_consensus_distance": (
                        consensus_distance([encoder_part(b, encoder[1]) for b in buffers])
                        if on_encoder
                        else None
                    ),
                }
            )
    return result


def _last_probe_mean(per_peer: dict[str, list[dict]], key: str) -> float | None:
    """Mean over peers of each peer's last non-null ``key`` among its probe records (None if none)."""
    last = []
    for records in per_peer.values():
        values = [r[key] for r in records if r.get("kind") == "probe" and r.get(key) is not None]
        if values:
            last.append(float(values[-1]))
    return _mean(last)


def _peer_series(records: list[dict]) -> dict[str, Any]:
    """Per-peer series the report plots: kNN per evaluation, bytes out per round, probe diagnostics."""
    evals = [
        {"round": r.get("round"), "step": r.get("step"), "tag": r.get("tag"), "knn": r.get("knn")}
        for r in records
        if r.get("kind") == "eval"
    ]
    rounds = [
        {
            "round": r["round"],
            "bytes_out": r.get("bytes_out"),
            "bytes_in": r.get("bytes_in"),
            "neighbour_distance_sq": r.get("neighbour_distance_sq"),
            "answered": r.get("answered"),
            "expected": r.get("expected"),
        }
        for r in records
        if r.get("kind") == "round"
    ]
    probes = [
        {
            "round": r["round"],
            "step": r.get("step"),
            "collapse_std": r.get("collapse_std"),
            "collapse_std_mixed": r.get("collapse_std_mixed"),
            "a_mmd": r.get("a_mmd"),
            "seconds": r.get("seconds"),
        }
        for r in records
        if r.get("kind") == "probe" and r.get("round") is not None
    ]
    return {"evals": evals, "rounds": rounds, "probes": probes}


def _probe_means(per_peer: dict[str, list[dict]]) -> dict[int, dict[str, float | None]]:
    """round -> mean collapse std / A-MMD over the peers' probe records of that round."""
    by_round: dict[int, list[dict]] = {}
    for records in per_peer.values():
        for r in records:
            if r.get("kind") == "probe" and r.get("round") is not None:
                by_round.setdefault(int(r["round"]), []).append(r)
    return {
        rnd: {
            key: _mean([r[key] for r in recs if r.get(key) is not None]) for key in ("collapse_std", "a_mmd")
        }
        for rnd, recs in by_round.items()
    }


def _round_diagnostics(per_peer: dict[str, list[dict]], exact: list[dict]) -> list[RoundDiagnostics]:
    """Every logged round's diagnostics, with its snapshot consensus distances and probe means."""
    by_round: dict[int, list[dict]] = {}
    for records in per_peer.values():
        for r in records:
            if r.get("kind") == "round" and r.get("round") is not None:
                by_round.setdefault(int(r["round"]), []).append(r)
    exact_by_round = {e["round"]: e for e in exact}
    probes = _probe_means(per_peer)
    return [
        replace(
            round_diagnostics(k, by_round[k]),
            consensus_distance_exact=exact_by_round.get(k, {}).get("consensus_distance"),
            encoder_consensus_distance_exact=exact_by_round.get(k, {}).get("encoder_consensus_distance"),
            collapse_std_mean=probes.get(k, {}).get("collapse_std"),
            a_mmd_mean=probes.get(k, {}).get("a_mmd"),
        )
        for k in sorted(by_round)
    ]


def collect_diagnostics(run_dir: str | Path) -> dict[str, Any]:
    """Every round's swarm diagnostics + per-peer series + the exact consensus distances (final and
    per snapshot round) + the probe diagnostics + the learning curve."""
    run_dir = Path(run_dir)
    per_peer = peer_records(run_dir)
    exact = snapshot_consensus(run_dir)
    rounds = _round_diagnostics(per_peer, exact)
    gaps = [r.spectral_gap for r in rounds if r.spectral_gap is not None]
    curve = knn_curve(per_peer)
    return {
        "run_dir": str(run_dir),
        "peers": sorted(per_peer),
        "rounds": [asdict(r) for r in rounds],
        "consensus_distance_exact": exact_consensus_distance(run_dir),
        "encoder_consensus_distance": encoder_consensus_distance(run_dir),
        "consensus_exact_rounds": exact,
        "spectral_gap_mean": _mean(gaps),
        "spectral_gap_min": min(gaps) if gaps else None,
        "average_connectivity_mean": _mean([r.average_connectivity for r in rounds]),
        "harmonic_connectivity_mean": _mean([r.harmonic_connectivity for r in rounds]),
        "bytes_out_total": sum(r.bytes_out for r in rounds),
        "collapse_std_mean": _last_probe_mean(per_peer, "collapse_std"),  # both read by the sweep runner
        "a_mmd_mean": _last_probe_mean(per_peer, "a_mmd"),
        "knn_curve": curve,  # mean kNN over peers at each periodic evaluation (analysis.learning_curve)
        "knn_last_quarter_gain": last_quarter_gain(curve),
        "per_peer": {peer: _peer_series(records) for peer, records in per_peer.items()},
    }


def write_diagnostics(run_dir: str | Path) -> dict[str, Any]:
    """Collect and write ``diagnostics.json`` and ``rounds.csv`` (one row per round; empty cells where a
    round has no snapshot / probe value) into the run dir."""
    run_dir = Path(run_dir)
    result = collect_diagnostics(run_dir)
    (run_dir / DIAGNOSTICS_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with (run_dir / ROUNDS_CSV).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=ROUNDS_CSV_FIELDS)
        writer.writeheader()
        for row in result["rounds"]:
            writer.writerow({k: row[k] for k in ROUNDS_CSV_FIELDS})
    return result
