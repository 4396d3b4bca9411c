"""A gossip-only peer process for survival tests: a real GossipNode with KNOWN parameter values.

    python -m tests.launcher._gossip_node --peer-id p0 --dir D --value 1.0 --numel N [--average]
        [--random SEED] [--compression int8|topk] [--gamma G] [--topk-fraction F] [--rounds R]

Binds port 0, writes ``D/<id>.addr``, waits for ``D/peers.json`` ({id: address}, re-read every
round so a restarted neighbour's new address is picked up), then runs sync rounds until ``D/stop``
exists: publish the vector, mix with ``--graph`` (full | ring) neighbours using Metropolis-Hastings
weights, log one JSON line per round to ``D/<id>.jsonl``. ``--average`` keeps the mixed result
(pure gossip averaging); otherwise the published vector stays constant, so every valid full mix is a
known constant and a partially mixed buffer shows as two different values. ``--random SEED`` starts
from ``value`` + Gaussian noise drawn from SEED instead; ``--compression`` gossips CHOCO steps;
``--rounds R`` stops after R rounds, writes the final vector to ``D/<id>.pt`` and keeps serving
until ``D/stop`` exists (so slower neighbours can finish their last round).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import torch

from gossip.node import GossipNode, NodeConfig
from peer.atomic_file import write_json
from peer.rundir import FAULT_CONTROL_FILE


def _neighbours(me: str, ids: list[str], graph: str) -> list[str]:
    if graph == "full":
        return [p for p in ids if p != me]
    i = ids.index(me)
    return sorted({ids[(i - 1) % len(ids)], ids[(i + 1) % len(ids)]} - {me})


def _weights(me: str, ids: list[str], graph: str) -> dict[str, float]:
    """Metropolis-Hastings weights of ``me``'s neighbours."""
    degrees = {p: len(_neighbours(p, ids, graph)) for p in ids}
    return {j: 1.0 / (1 + max(degrees[me], degrees[j])) for j in _neighbours(me, ids, graph)}


def _round_record(args: argparse.Namespace, round_: int, result, weights: dict[str, float]) -> dict:
    """One ``round`` line of the node's log: what it mixed, from whom, and whether the weights sum to 1."""
    total = result.self_weight + sum(n.weight for n in result.neighbours)
    return {
        "event": "round",
        "round": round_,
        "t": time.time(),
        "seconds": result.pull_seconds + result.mix_seconds,
        "value": args.value,
        "self_weight": result.self_weight,
        "min": float(result.params.min()),
        "max": float(result.params.max()),
        "planned": weights,
        "neighbours": {
            n.peer_id: {"answered": n.answered, "weight": n.weight, "error": n.error, "bytes_in": n.bytes_in}
            for n in result.neighbours
        },
        "numel": args.numel,
        "mixing_ok": abs(total - 1) < 1e-6,
    }


async def _start(args: argparse.Namespace, root: Path) -> GossipNode:
    control = root / args.peer_id / FAULT_CONTROL_FILE
    control.parent.mkdir(parents=True, exist_ok=True)
    node = await GossipNode.create(
        NodeConfig(
            swarm_id="survival",
            peer_id=args.peer_id,
            layout_fingerprint="fp",
            chunk_bytes=256 * 1024,
            pull_deadline_s=args.deadline,
            fault_control=str(control),
            compression=args.compression,
            choco_gamma=args.gamma,
            topk_fraction=args.topk_fraction,
        )
    )
    write_json(root / f"{args.peer_id}.addr", {"address": node.address, "pid": os.getpid()})
    return node


async def run(args: argparse.Namespace) -> None:
    root = Path(args.dir)
    node = await _start(args, root)
    peers_file = root / "peers.json"
    while not peers_file.is_file():
        await asyncio.sleep(0.05)
    params = torch.full((args.numel,), args.value, dtype=torch.float32)
    if args.random is not None:
        params += torch.randn(args.numel, generator=torch.Generator().manual_seed(args.random))
    log = (root / f"{args.peer_id}.jsonl").open("a")
    round_ = args.start_round
    while not (root / "stop").exists() and (args.rounds is None or round_ < args.start_round + args.rounds):
        peers = json.loads(peers_file.read_text())
        weights = _weights(args.peer_id, sorted(peers), args.graph)
        node.publish(params, round_)
        log.write(json.dumps({"event": "start", "round": round_, "t": time.time()}) + "\n")
        log.flush()
        result = await node.mix(round_, {j: peers[j] for j in weights}, 1.0 - sum(weights.values()), weights)
        log.write(json.dumps(_round_record(args, round_, result, weights)) + "\n")
        log.flush()
        if args.average:
            params = result.params.clone()
            args.value = float(params[0])
        round_ += 1
        await asyncio.sleep(args.round_s)
    if args.rounds is not None:
        torch.save(params, root / f"{args.peer_id}.pt")
        while not (root / "stop").exists():
            await asyncio.sleep(0.05)
    await node.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--peer-id", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--value", type=float, required=True)
    p.add_argument("--numel", type=int, default=250_000)
    p.add_argument("--deadline", type=float, default=3.0)
    p.add_argument("--round-s", type=float, default=0.2, help="simulated compute between rounds")
    p.add_argument("--graph", default="full", choices=["full", "ring"])
    p.add_argument("--start-round", type=int, default=0)
    p.add_argument("--average", action="store_true")
    p.add_argument("--random", type=int, default=None, help="add Gaussian noise drawn from this seed")
    p.add_argument("--compression", default="none", choices=["none", "int8", "topk"])
    p.add_argument("--gamma", type=float, default=0.5, help="CHOCO's consensus step size")
    p.add_argument("--topk-fraction", type=float, default=0.01, help="the share of elements top-k keeps")
    p.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    torch.set_num_threads(1)
    asyncio.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
