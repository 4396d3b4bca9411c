"""A real tiny swarm run ends with its consensus model θ̄ evaluated: consensus.json, the launcher's
line before the RESULT line, the report's θ̄ row, and ``dssl consensus RUN`` recomputing it."""

from __future__ import annotations

import json

import pytest

from analysis.run_report import write_report
from launcher.cli import main as dssl
from launcher.swarm import _report
from peer.rundir import CONSENSUS_FILE
from tests.launcher.swarm_util import reaped_swarm, tiny_plan

pytestmark = [pytest.mark.swarm, pytest.mark.slow]


def test_a_swarm_run_writes_its_consensus_model_and_the_report_shows_it(tmp_path, reaper, capsys):
    # prepare: two real peers, 4 steps (2 rounds) on a few hundred Fashion-MNIST images
    swarm = reaped_swarm(tiny_plan(2, "t-consensus", steps=4), tmp_path, reaper)
    swarm.start()
    codes = swarm.wait(timeout=150)
    assert codes == {"p0": 0, "p1": 0}, [swarm.processes[p].log_path.read_text()[-2000:] for p in codes]
    capsys.readouterr()
    # execute: what `dssl swarm` does after the peers exit, then the report
    code = _report(swarm.run, codes, consensus=True)
    out = capsys.readouterr().out
    report = write_report(swarm.run.path).read_text()
    # assert: both live peers weighted by their share sizes; kNN, linear and fine-tune measured
    result = json.loads((swarm.run.path / CONSENSUS_FILE).read_text())
    assert code == 0, out
    assert [p["peer_id"] for p in result["peers"]] == ["p0", "p1"]
    assert [p["images"] for p in result["peers"]] == [192, 192]  # data.train_limit caps both shares
    assert sum(p["weight"] for p in result["peers"]) == pytest.approx(1.0)
    assert result["test_size"] == 100 and 0.0 <= result["knn"] <= 1.0 and 0.0 <= result["linear"] <= 1.0
    assert result["fine_tune"]["images"] == 200  # eval.finetune_images (1000) capped at the bank
    lines = out.strip().splitlines()
    assert lines[-1].startswith("RESULT ") and any(line.startswith("consensus model (") for line in lines)
    assert "## Consensus model θ̄" in report and "| θ̄ | 1 |" in report and "| p1 |" in report
    # execute / assert: `dssl consensus RUN` recomputes it, here without fine-tuning
    assert dssl(["consensus", str(swarm.run.path), "--set", "eval.finetune_images=0"]) == 0
    again = json.loads((swarm.run.path / CONSENSUS_FILE).read_text())
    assert again["fine_tune"] is None and again["knn"] == pytest.approx(result["knn"])
    assert dssl(["consensus", str(tmp_path / "missing")]) == 2
