"""The launcher's progress line: the peers' metrics plus which processes live and which crashed."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from launcher.progress_printer import ProgressPrinter


def _process(code: int | None, expected_exit: bool = False) -> SimpleNamespace:
    """A stand-in peer process (the real supervision is tested in test_local_swarm.py)."""
    return SimpleNamespace(popen=SimpleNamespace(poll=lambda: code), expected_exit=expected_exit)


def test_the_line_counts_live_and_crashed_peers_and_prints_once_per_interval(tmp_path):
    # prepare: p0 running, p1 crashed (exit 1), p2 stopped on purpose (SIGTERM, expected)
    metrics = tmp_path / "peers" / "p0" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"kind": "train", "step": 40, "round": 4, "loss_avg": 0.25}) + "\n")
    processes = {"p0": _process(None), "p1": _process(1), "p2": _process(-15, expected_exit=True)}
    swarm = SimpleNamespace(run=SimpleNamespace(path=tmp_path), processes=processes, alive=lambda: ["p0"])
    out = io.StringIO()
    printer = ProgressPrinter(swarm, interval_s=0.0, out=out)  # 0: never prints on its own
    # execute
    printer()
    line = printer.line(5.0)
    # assert
    assert out.getvalue() == ""
    assert "rounds 4-4" in line and "loss 0.2500" in line and "peers live 1/3 crashed 1" in line
