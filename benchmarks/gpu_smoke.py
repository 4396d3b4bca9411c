"""GPU smoke check for the paper-scale configs: the CUDA + AMP training path on the paper's ViT-tiny.

For each swarm spec in examples/paper_scale/ (MAE and SimSiam on the paper code's ViT-tiny: patch 14,
width 320, 16 heads, depth 9, at 224 px) it builds the objective exactly as a peer of that spec
would (the spec's objective section and train.amp / train.channels_last), moves it to CUDA and runs
``--warmup`` untimed, then ``--steps`` timed training steps on synthetic images — fp16 autocast and
a GradScaler, as :meth:`peer.trainer.Trainer._train_step` does. It checks that every loss is finite
and that the parameters moved, and prints images/s and the peak CUDA memory per objective. The
last line is exactly::

    RESULT mae_img_s=<x> simsiam_img_s=<x> mae_peak_mb=<x> simsiam_peak_mb=<x> ok=<true|false>

Exit status: 0 when every check passed, 1 when one failed (a non-finite loss, frozen parameters),
2 when this machine has no CUDA device (nothing is built then). No data set is needed. Usage::

    .venv/bin/python benchmarks/gpu_smoke.py [--steps 20] [--warmup 3] [--batch 64] [--device cuda:0]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repository's packages first
    sys.path.insert(0, str(ROOT))
SPECS = {
    "mae": ROOT / "examples" / "paper_scale" / "mae.yaml",
    "simsiam": ROOT / "examples" / "paper_scale" / "simsiam.yaml",
}


def paper_config(method: str):
    """The peer config of peer 0 of the method's paper-scale spec, with the objective sized to the
    spec's images (224 px RGB, as the trainer sets it from the loaded data)."""
    from launcher.spec import load_plan

    cfg = load_plan(SPECS[method], size=1).peers[0].config
    size = cfg.data.image_size or 224
    return dataclasses.replace(cfg, objective=dataclasses.replace(cfg.objective, img_size=size, in_chans=3))


def run_steps(objective, optimizer, images, steps: int, amp: bool) -> list[float]:
    """``steps`` training steps on ``images`` (fp16 autocast + GradScaler when ``amp``); the losses."""
    import torch

    device_type = images.device.type
    scaler = torch.amp.GradScaler(device_type) if amp else None
    losses = []
    for _ in range(steps):
        with torch.autocast(device_type=device_type, dtype=torch.float16, enabled=amp):
            loss = objective.training_step(images).loss
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _flat(objective):
    import torch

    return torch.cat([p.detach().float().flatten() for p in objective.parameters() if p.requires_grad])


def measure(cfg, device: str, steps: int, warmup: int, batch: int) -> dict:
    """Build ``cfg``'s objective on ``device`` and time ``steps`` steps after ``warmup`` untimed ones."""
    import torch

    from peer import objectives
    from peer.build import build_optimizer, seed_everything

    seed_everything(0)
    on_cuda = torch.device(device).type == "cuda"
    objective = objectives.build(cfg.objective).to(device).train()
    images = torch.rand(batch, 3, cfg.objective.img_size, cfg.objective.img_size, device=device)
    if on_cuda and cfg.train.channels_last:
        objective = objective.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = build_optimizer(objective)
    amp = on_cuda and cfg.train.amp
    before = _flat(objective)
    losses = run_steps(objective, optimizer, images, warmup, amp)
    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    losses += run_steps(objective, optimizer, images, steps, amp)
    if on_cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started
    moved = float((_flat(objective) - before).abs().max())
    return {
        "img_s": batch * steps / elapsed,
        "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if on_cuda else 0.0,
        "params": sum(p.numel() for p in objective.parameters() if p.requires_grad),
        "finite": all(math.isfinite(x) for x in losses),
        "moved": moved,
        "loss_first": losses[0] if losses else float("nan"),
        "loss_last": losses[-1] if losses else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per objective")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (autotune, allocator)")
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:<i>")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device on this machine; this check needs a GPU host (nothing was run)")
        return 2
    print(f"device: {torch.cuda.get_device_name(torch.device(args.device))}, torch {torch.__version__}")
    results = {}
    for method in SPECS:
        cfg = paper_config(method)
        r = measure(cfg, args.device, args.steps, args.warmup, args.batch)
        results[method] = r
        print(
            f"{method}: {r['params']:,} trainable params, {r['img_s']:.1f} img/s at batch {args.batch} "
            f"(AMP {cfg.train.amp}), peak {r['peak_mb']:.0f} MiB, loss {r['loss_first']:.4f} -> "
            f"{r['loss_last']:.4f}, finite {r['finite']}, max |param change| {r['moved']:.3g}"
        )
    ok = all(r["finite"] and r["moved"] > 0 for r in results.values())
    print(
        f"RESULT mae_img_s={results['mae']['img_s']:.1f} simsiam_img_s={results['simsiam']['img_s']:.1f} "
        f"mae_peak_mb={results['mae']['peak_mb']:.0f} simsiam_peak_mb={results['simsiam']['peak_mb']:.0f} "
        f"ok={str(ok).lower()}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
