"""The dssl dispatcher: launcher commands, `status --run-dir` reading the run's ready files, and
the exit status of `dssl swarm` stopped by Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launcher.cli import _status_args, main
from tests.launcher.swarm_util import REPO, TINY, rounds, wait_for


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


@pytest.mark.swarm
@pytest.mark.slow
def test_ctrl_c_stops_a_running_swarm_prints_its_table_and_exits_130(tmp_path, reaper):
    # prepare: `dssl swarm` of two real peers that train until stopped
    spec = tmp_path / "spec.yaml"
    base = {**TINY, "train": {**TINY["train"], "time_budget_s": 600.0}}
    swarm = {"id": "t-ctrl-c", "ready_timeout_s": 240, "stop_deadline_s": 30}
    spec.write_text(yaml.safe_dump({"swarm": swarm, "base": base, "defaults": {"threads": 1}}))
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "launcher.cli", "swarm", "--config", str(spec), "--peers", "2"]
    options = ["--run-root", str(runs), "--progress-s", "0", "--no-consensus", "--insecure"]
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out, err_path.open("w") as err:
        launcher = subprocess.Popen(
            [*command, *options], cwd=REPO, stdout=out, stderr=err, start_new_session=True
        )
    reaper.append(launcher)
    try:
        wait_for(lambda: _ready_peers(runs, 2), 300, "both peers ready")
        peer_dirs = [p.parent for p in runs.glob("*/peers/p*/ready.json")]
        wait_for(lambda: all(rounds(d) for d in peer_dirs), 120, "a gossip round on each peer")
        # execute: Ctrl-C to the launcher, as a terminal sends it
        os.kill(launcher.pid, signal.SIGINT)
        launcher.wait(timeout=90)
        out, err = out_path.read_text(), err_path.read_text()
        # assert: a clean stop (no traceback), the table and RESULT line of what the peers reached,
        # exit status 130, and no peer left running
        assert launcher.returncode == 130, err[-2000:]
        assert "Traceback" not in err
        assert "RESULT peers=2" in out
        assert not [pid for pid in _spawned(runs) if _running(pid)]
    finally:
        for pid in _spawned(runs):  # each peer leads its own process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _spawned(runs: Path) -> list[int]:
    """The pids of the peers the launcher spawned (its timeline's "spawned" events)."""
    events = [json.loads(line) for t in runs.glob("*/timeline.jsonl") for line in t.read_text().splitlines()]
    return [e["pid"] for e in events if e.get("event") == "spawned" and e.get("pid")]


def _ready_peers(runs, count: int) -> list[dict] | None:
    found = [json.loads(p.read_text()) for p in sorted(runs.glob("*/peers/p*/ready.json"))]
    return found if len(found) == count else None


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
