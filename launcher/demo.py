"""``dssl demo``: the 8-peer Fashion-MNIST swarm of ``make demo``, then its baselines.

The swarm of ``examples/demo.yaml`` (8 peers, 3 classes each, SimSiam on a small ViT, exponential
graph; ``--config examples/demo_swarm.yaml`` is the quicker 4-peer MAE ring) runs
through :func:`launcher.swarm.run_swarm`; afterwards the consensus model θ̄ and the baselines (each
peer alone, one centralised model) are evaluated and the last line is the RESULT line
(``RESULT peers=... min_rounds=... knn_acc_mean=... local_only_knn=... centralised_knn=...
gain_knn=... run_dir=...``). Ctrl-C stops the swarm cleanly, skips the follow-ups and exits 130.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from launcher.signal_watch import SignalWatch
from launcher.spec import SpecError, SwarmPlan, load_plan
from launcher.swarm import check_local_data, check_secret_file, command_parser, report_swarm, run_swarm
from peer.config import ConfigError

DEMO_SPEC = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"


def describe(plan: SwarmPlan) -> str:
    """One line saying what the demo is about to run."""
    c = plan.peers[0].config
    encoder = (
        f"ViT width {c.objective.embed_dim} depth {c.objective.depth}"
        if c.objective.name in ("mae", "mar") or c.objective.backbone == "vit"
        else c.objective.backbone
    )
    return (
        f"dssl demo: {len(plan.peers)} peers, {c.objective.name} on {encoder}, "
        f"{c.data.dataset} split {c.data.partition}, topology {c.gossip.topology}, "
        f"{c.train.steps} steps x batch {c.train.batch_size}, a gossip round every {c.train.period} steps"
    )


def demo_main(argv: list[str]) -> int:
    """``dssl demo``: the 8-peer Fashion-MNIST swarm of ``make demo``; last line is the RESULT line."""
    p = command_parser(
        "dssl demo",
        "8-peer SimSiam swarm on Fashion-MNIST (3 classes per peer): kNN before/after, consensus, and "
        "the same peers trained alone and centralised (--config examples/demo_swarm.yaml: 4-peer MAE ring).",
        DEMO_SPEC,
        baselines=True,
    )
    args = p.parse_args(argv)
    try:
        plan = load_plan(args.config, size=args.peers, overrides=args.overrides)
        check_secret_file(args.swarm_secret_file)
        check_local_data(plan)
    except (SpecError, ConfigError) as exc:
        print(f"dssl demo: error: {exc}", file=sys.stderr)
        return 2
    print(describe(plan), flush=True)
    started = time.monotonic()
    with SignalWatch() as watch:
        run, codes = run_swarm(
            plan,
            ["demo", *argv],
            run_root=args.run_root,
            duration_s=args.duration_s,
            insecure=args.insecure,
            secret_file=args.swarm_secret_file,
            progress_s=args.progress_s,
        )
    ended = "interrupted: stopped" if watch.interrupted else "finished"
    print(f"dssl demo: swarm {ended} after {time.monotonic() - started:.0f} s", flush=True)
    return report_swarm(run, codes, args, watch.interrupted)
