"""Metrics JSONL and the progress line."""

from __future__ import annotations

import json
import math

import torch

from peer.metrics import MetricsWriter, RunningMean, format_progress, read_metrics


def test_jsonl_lines_are_well_formed_and_flushed(tmp_path):
    # prepare
    path = tmp_path / "m" / "metrics.jsonl"
    writer = MetricsWriter(path, peer="peer-3")
    # execute: written lines are readable before close (flushed), odd values cleaned
    writer.write("train", step=1, loss=torch.tensor(0.5), lr=1e-3, bad=math.nan)
    lines_before_close = path.read_text().splitlines()
    writer.write("eval", step=2, knn=0.8, nested={"a": float("inf")})
    writer.close()
    # assert
    assert len(lines_before_close) == 1
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["train", "eval"]
    assert records[0]["peer"] == "peer-3" and records[0]["loss"] == 0.5 and records[0]["bad"] is None
    assert records[1]["nested"] == {"a": None} and isinstance(records[1]["time"], float)
    assert read_metrics(path, kind="eval")[0]["knn"] == 0.8


def test_progress_line_fixed_format():
    # prepare / execute
    standalone = format_progress("peer-0", 3, 120, 0.41234, 0.5, 310.25)
    swarm = format_progress("peer-1", 12, 240, 0.4, 0.44, 99.0, 2, 3, 0.0412, 0.0123)
    # assert
    assert standalone == "[peer-0] r    3 s    120 loss 0.4123/0.5000 img/s  310.2 nbr -/- mix      - dist -"
    assert swarm == (
        "[peer-1] r   12 s    240 loss 0.4000/0.4400 img/s   99.0 nbr 2/3 mix  0.041s dist 1.23e-02"
    )


def test_running_mean_window():
    # prepare
    mean = RunningMean(window=2)
    # execute
    for v in (1.0, 2.0, 4.0):
        mean.add(v)
    # assert
    assert mean.value == 3.0
    assert math.isnan(RunningMean().value)
