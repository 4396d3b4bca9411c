"""Helpers of the sweep tests: a grid file beside a two-peer spec, and a fake swarm runner."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from launcher.run_setup import create_run_dir
from launcher.sweep import manifest_path

FAULTS = {"seed": 1, "events": [{"at": 5, "action": "slow", "peer": "p2", "factor": 3, "duration_s": 5}]}


def write_grid(tmp_path: Path, grid: dict, spec: dict | None = None) -> Path:
    """spec.yaml (2 peers, 4 steps), faults.yaml and grid.yaml in tmp_path; sweep dir tmp_path/sweeps/s."""
    (tmp_path / "spec.yaml").write_text(
        yaml.safe_dump(spec or {"swarm": {"id": "t-sweep", "size": 2}, "base": {"train": {"steps": 4}}})
    )
    (tmp_path / "faults.yaml").write_text(yaml.safe_dump(FAULTS))
    grid = {
        "sweep": {
            "name": "s",
            "spec": "spec.yaml",
            "seeds": [0],
            "run_root": str(tmp_path / "sweeps"),
            **grid.pop("sweep", {}),
        },
        **grid,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


TWO_BY_TWO = {
    "grids": [
        {
            "axes": {
                "method": {"simsiam": {"objective.name": "simsiam"}, "mae": {"objective.name": "mae"}},
                "split": {"iid": {"data.partition": "iid"}, "dir0.1": {"data.partition": "dirichlet:0.1"}},
            }
        }
    ]
}


class FakeRunner:
    """Stands in for run_local: makes a swarm run dir with each peer's final.json; fails the runs
    whose name contains one of ``failing`` (peer p1 exits 1 and leaves nothing)."""

    def __init__(self, failing: tuple[str, ...] = ()):
        self.failing = failing
        self.calls: list[dict] = []

    def __call__(self, plan, argv, run_root, faults, insecure):
        name = Path(run_root).name
        self.calls.append(
            {
                "name": name,
                "peers": len(plan.peers),
                "faults": faults,
                "insecure": insecure,
                "argv": argv,
                "partition": plan.peers[0].config.data.partition,
                "seed": plan.peers[0].config.train.seed,
            }
        )
        run = create_run_dir(run_root, plan.settings.swarm_id)
        fail = any(part in name for part in self.failing)
        codes = {}
        for peer in plan.peers:
            peer_dir = run.peer_dir(peer.peer_id)
            peer_dir.mkdir(parents=True)
            crashed = fail and peer.peer_id == "p1"
            codes[peer.peer_id] = 1 if crashed else 0
            if not crashed:
                (peer_dir / "final.json").write_text(
                    json.dumps(
                        {
                            "peer_id": peer.peer_id,
                            "step": 4,
                            "round": 2 + peer.index,
                            "eval_final": {"knn": 0.5 + 0.1 * peer.index, "linear": 0.6 + 0.1 * peer.index},
                            "eval_init": {"knn": 0.1},
                        }
                    )
                )
        return run, codes


def read_manifest(grid, name: str) -> dict:
    """The run.json of run ``name`` of the sweep."""
    return json.loads(manifest_path(grid.sweep_dir, name).read_text())
