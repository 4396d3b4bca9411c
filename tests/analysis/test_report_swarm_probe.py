"""A real 2-peer swarm (processes, gRPC on 127.0.0.1, real Fashion-MNIST) with a probe, a parameter
snapshot every round and two learning-curve points: diagnostics.json carries the exact per-round
consensus, the probe values and the curve, and the report draws them."""

from __future__ import annotations

import json

import pytest

from analysis.collect import collect
from analysis.run_report import write_report
from launcher.spec import plan_from_dict
from tests.launcher.swarm_util import TINY, reaped_swarm

pytestmark = [pytest.mark.swarm, pytest.mark.slow]


def test_two_peer_swarm_logs_probes_and_snapshots_every_round(tmp_path, reaper):
    # prepare: the shared tiny real-data config, 12 steps = 6 rounds, probe + snapshot every round
    base = json.loads(json.dumps(TINY))
    base["train"].update({"steps": 12, "eval_every": 6})  # learning-curve points at steps 6 and 12
    base["eval"].update({"probe_every": 1, "snapshot_every": 1, "curve_test_images": 40})
    swarm_settings = {"id": "t-probe", "ready_timeout_s": 120, "stop_deadline_s": 30}
    plan = plan_from_dict({"swarm": swarm_settings, "base": base, "defaults": {"threads": 1}}, size=2)
    swarm = reaped_swarm(plan, tmp_path, reaper)
    run = swarm.run
    # execute
    swarm.start()
    codes = swarm.wait(timeout=150)
    collect(run.path)
    report = write_report(run.path)
    # assert
    assert codes == {"p0": 0, "p1": 0}, [swarm.processes[p].log_path.read_text()[-2000:] for p in codes]
    diag = json.loads((run.path / "diagnostics.json").read_text())
    exact = diag["consensus_exact_rounds"]
    assert [e["round"] for e in exact] == [1, 2, 3, 4, 5, 6] and all(e["peers"] == 2 for e in exact)
    assert all(e["consensus_distance"] > 0 for e in exact)  # pre-mix: the local steps moved them apart
    # the encoder's share: positive, below the total (heads and BN statistics travel too)
    assert all(0 < e["encoder_consensus_distance"] < e["consensus_distance"] for e in exact)
    assert all(r["encoder_consensus_distance_exact"] is not None for r in diag["rounds"])
    # two peers, Metropolis weights 1/2: each one's neighbour distance is 4x the exact consensus distance
    for r in diag["rounds"]:
        assert r["neighbour_distance_mean"] == pytest.approx(4 * r["consensus_distance_exact"], rel=1e-3)
    for peer in ("p0", "p1"):
        probes = diag["per_peer"][peer]["probes"]
        assert [p["round"] for p in probes] == [1, 2, 3, 4, 5, 6]
        assert all(p["collapse_std"] > 0 and p["a_mmd"] is not None for p in probes)
    assert diag["collapse_std_mean"] > 0 and diag["a_mmd_mean"] is not None
    assert [(p["step"], p["peers"]) for p in diag["knn_curve"]] == [(6, 2), (12, 2)]
    assert diag["knn_last_quarter_gain"] is not None
    text = report.read_text()
    assert "](report_representation.png)" in text and "6 snapshot rounds" in text
