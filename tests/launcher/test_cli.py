"""The dssl dispatcher: launcher commands, and `status --run-dir` reading the run's ready files."""

from __future__ import annotations

import json

from launcher.cli import _status_args, main


def test_status_run_dir_becomes_bootstrap_and_swarm_id(tmp_path):
    # prepare
    peer_dir = tmp_path / "peers" / "p0"
    peer_dir.mkdir(parents=True)
    (peer_dir / "ready.json").write_text(
        json.dumps({"swarm_id": "s", "maddrs": ["/ip4/127.0.0.1/tcp/1/p2p/Q"]})
    )
    # execute
    args = _status_args(["--run-dir", str(tmp_path), "--json"])
    # assert
    assert args == ["--json", "--swarm-id", "s", "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/Q"]
    assert _status_args(["--run-dir", str(tmp_path / "nothing")]) is None


def test_swarm_rejects_a_bad_spec_before_spawning_anything(tmp_path, capsys):
    # prepare
    spec = tmp_path / "bad.yaml"
    spec.write_text("swarm: {size: 2}\npeers: {0: {slowdwn: 3}}\n")
    # execute
    code = main(["swarm", "--config", str(spec), "--run-root", str(tmp_path / "runs")])
    # assert
    assert code == 2
    assert "slowdwn" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
