"""Images/s of one training step (forward + backward + optimizer) and peak RSS, SimSiam vs MAE.

Each objective is measured in a fresh subprocess so its peak RSS is its own. The models are the
ones `dssl train` uses with examples/train_fmnist.yaml (SimSiam) and examples/train_fmnist_mae.yaml
(MAE) on 28x28 grey images, batch 128, fp32, on CPU (and on CUDA too when one is present, with AMP).
The last line is exactly::

    RESULT simsiam_img_s=<x> mae_img_s=<x> simsiam_rss_mb=<x> mae_rss_mb=<x>

(CPU numbers; CUDA numbers get their own line above it.) Usage::

    .venv/bin/python benchmarks/train_bench.py [--steps 10] [--warmup 2] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "simsiam": ROOT / "examples" / "train_fmnist.yaml",
    "mae": ROOT / "examples" / "train_fmnist_mae.yaml",
}


def _step_and_sync(model, optimizer, images, device: str):
    """One training step on ``images`` (fp16 autocast + grad scaling on CUDA), and a device sync."""
    import torch

    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    def step() -> None:
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.float16, enabled=use_amp):
            loss = model.training_step(images).loss
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def sync() -> None:
        if use_amp:
            torch.cuda.synchronize()

    return step, sync


def measure(objective: str, device: str, steps: int, warmup: int, threads: int, batch: int) -> dict:
    """Run in the child: build the objective from its example config, time `steps` training steps."""
    sys.path.insert(0, str(ROOT))
    import torch

    from peer import objectives
    from peer.build import build_optimizer
    from peer.config import load_config

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(CONFIGS[objective]).objective
    torch.manual_seed(0)
    model = objectives.build(cfg).to(device).train()
    optimizer = build_optimizer(model)
    images = torch.rand(batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=device)
    step, sync = _step_and_sync(model, optimizer, images, device)
    for _ in range(warmup):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {
        "objective": objective,
        "device": device,
        "img_s": batch * steps / seconds,
        "rss_mb": rss_mb,
        "threads": torch.get_num_threads(),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def run_child(objective: str, device: str, args: argparse.Namespace) -> dict:
    """Measure one objective on one device in a fresh interpreter (own peak RSS)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        objective,
        "--device",
        device,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.device, args.steps, args.warmup, args.threads, args.batch)))
        return 0
    import torch

    devices = ["cuda"] if torch.cuda.is_available() else []
    results: dict[tuple[str, str], dict] = {}
    for device in devices + ["cpu"]:
        for objective in ("simsiam", "mae"):
            r = run_child(objective, device, args)
            results[(objective, device)] = r
            print(
                f"{objective:8s} {device:5s} {r['params_m']:.2f} M params, {r['threads']} threads: "
                f"{r['img_s']:8.1f} img/s, peak RSS {r['rss_mb']:.0f} MB",
                flush=True,
            )
    for device in devices:
        s, m = results[("simsiam", device)], results[("mae", device)]
        print(f"RESULT_{device.upper()} simsiam_img_s={s['img_s']:.1f} mae_img_s={m['img_s']:.1f}")
    s, m = results[("simsiam", "cpu")], results[("mae", "cpu")]
    print(
        f"RESULT simsiam_img_s={s['img_s']:.1f} mae_img_s={m['img_s']:.1f} "
        f"simsiam_rss_mb={s['rss_mb']:.0f} mae_rss_mb={m['rss_mb']:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
