"""Training throughput with gossip on vs off, and what overlapping the rounds (gossip.overlap) buys.

Runs the swarm of ``--config`` (default ``examples/bench/overlap.yaml``: 2 peers, one core each,
SimSiam on test_resnet, a round every 20 steps) three times with the same seeds and steps:

* ``off``: no gossip round within the run (``train.period`` past the last step);
* ``sync``: every round blocks training until its pulls and mix are done (the default);
* ``overlap``: training goes on while the round is in flight (``gossip.overlap: true``);
* ``sync_slow`` and ``overlap_slow``: the same two on a slow link, every peer serving at 2 MB/s
  (``examples/bench/overlap_slow_link.yaml``, applied as a ``dssl swarm --faults`` schedule), where a
  pull takes about a third of a round's training time.

Throughput = Σ over peers of steps × batch / the peer's training wall time (``train_seconds`` of its
``final`` record: the loop's time, gossip rounds included, evaluation excluded). Ends with::

    RESULT off_img_s=<x> sync_img_s=<x> overlap_img_s=<x> sync_ratio=<x> overlap_ratio=<x>
           sync_slow_ratio=<x> overlap_slow_ratio=<x>

(ratios against ``off``; the target for overlap is ≥ 0.90). Usage::

    .venv/bin/python benchmarks/overlap_bench.py [--steps 400] [--period 20] [--run-root DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer.metrics import read_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DSSL = (sys.executable, "-m", "launcher.cli")
ARMS = ("off", "sync", "overlap", "sync_slow", "overlap_slow")
SLOW_LINK = REPO / "examples" / "bench" / "overlap_slow_link.yaml"


def arm_overrides(arm: str, steps: int, period: int) -> list[str]:
    """The ``--set`` overrides of one arm."""
    common = [f"train.steps={steps}"]
    if arm == "off":
        return [*common, f"train.period={steps + 1}"]
    if arm in ("sync", "sync_slow"):
        return [*common, f"train.period={period}", "gossip.overlap=false"]
    if arm in ("overlap", "overlap_slow"):
        return [*common, f"train.period={period}", "gossip.overlap=true"]
    raise ValueError(f"unknown arm {arm!r}; known: {', '.join(ARMS)}")


def throughput(finals: list[dict]) -> float:
    """Σ over peers of steps × batch / training seconds (images per second of the whole swarm)."""
    if not finals:
        raise ValueError("no peer finished: no final records")
    return sum(f["step"] * f["batch_size"] / f["train_seconds"] for f in finals if f["train_seconds"] > 0)


def _finals(run_root: Path) -> list[dict]:
    """The ``final`` record of every peer of the one run under ``run_root``, with its batch size."""
    runs = sorted(p for p in run_root.iterdir() if p.is_dir())
    if len(runs) != 1:
        raise RuntimeError(f"expected one run directory under {run_root}, found {len(runs)}")
    finals = []
    for metrics in sorted((runs[0] / "peers").glob("*/metrics.jsonl")):
        records = read_metrics(metrics, kind="final")
        if not records:
            raise RuntimeError(f"{metrics}: the peer did not finish (no final record)")
        config = yaml.safe_load((metrics.parent / "config.yaml").read_text())
        finals.append({**records[-1], "batch_size": config["train"]["batch_size"]})
    return finals


def run_arm(arm: str, args: argparse.Namespace, root: Path) -> float:
    run_root = root / arm
    run_root.mkdir(parents=True)
    sets = [item for kv in arm_overrides(arm, args.steps, args.period) for item in ("--set", kv)]
    cmd = [*DSSL, "swarm", "--config", str(args.config), *sets, "--run-root", str(run_root)]
    cmd += ["--no-consensus", "--no-baselines", "--insecure", "--progress-s", "0"]
    if arm.endswith("_slow"):
        cmd += ["--faults", str(SLOW_LINK)]
    print("overlap_bench:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    img_s = throughput(_finals(run_root))
    print(f"overlap_bench: {arm:8s} {img_s:9.1f} img/s", flush=True)
    return img_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "examples" / "bench" / "overlap.yaml")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--period", type=int, default=20)
    p.add_argument("--run-root", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="overlap-bench-") as tmp:
        root = args.run_root or Path(tmp)
        img_s = {arm: run_arm(arm, args, root) for arm in ARMS}
    off = img_s["off"]
    print(
        f"RESULT off_img_s={off:.1f} sync_img_s={img_s['sync']:.1f} overlap_img_s={img_s['overlap']:.1f} "
        f"sync_ratio={img_s['sync'] / off:.3f} overlap_ratio={img_s['overlap'] / off:.3f} "
        f"sync_slow_ratio={img_s['sync_slow'] / off:.3f} overlap_slow_ratio={img_s['overlap_slow'] / off:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
