"""The training loop of one peer: standalone, or with a gossip hook every ``period`` steps.

Read :meth:`Trainer.run` top to bottom::

    batch of the local share (seeded order per epoch) -> feature skew (if configured)
    -> objective.training_step -> backward -> optimizer step (AMP + GradScaler on CUDA)
    -> every `period` steps: flat params (+ MAR payload) -> hook.publish -> hook.mix().result()
       -> mixed params back into the model (+ z_global) -> log the round
       (on their round schedules: a parameter snapshot, and the probe-batch diagnostics before and
       after the mix, timed apart from the round and from the training-time budget)
    -> progress / metrics line, evaluation and checkpoint on their schedules
    -> stop on the step / epoch / wall-clock budget or when request_stop() is called

Build with :meth:`Trainer.create` (loads data, builds the objective and optimizer); the constructor
only stores. What the peer process uses: :meth:`run`, :meth:`request_stop` (safe from a signal
handler), :attr:`step` / :attr:`round`, :attr:`layout` (its ``fingerprint`` is announced),
:meth:`flat_params`, :meth:`load_flat_params` / :meth:`load_model_state` (state pulled from
neighbours before training), :meth:`set_round`, :meth:`resume`, :meth:`evaluate`, :meth:`save_checkpoint`.

Data order is a pure function of (seed, peer index, epoch) and the step counter, so with the RNG
states in the checkpoint a resumed run continues exactly like an uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from gossip.hook import GossipHook, MixResult
from peer import checkpoint as ckpt
from peer import objectives
from peer.config import Config, config_to_dict, dump_config
from peer.data import load_dataset
from peer.partition import parse_partition, partition, partition_report, write_partition_report
from peer.evaluate import EvalSettings, evaluate, own_distribution_indices
from peer.flat import FlatLayout
from peer.metrics import MetricsWriter, RunningMean, format_progress, progress_logger
from peer.probe import ProbeBatch, collapse_std, embedding_a_mmd, probe_batch, probe_embeddings

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when present, else cpu; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but no CUDA device is available")
    return device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class LocalData:
    """The peer's training share plus the evaluation sets."""

    train: Any  # ImageDataset: this peer's share (after partition and train_limit)
    bank: Any | None  # labelled global training subset for kNN / probe (None: no evaluation)
    test: Any | None  # global test subset
    own_test_idx: np.ndarray | None  # indices into test matching this peer's label histogram
    num_classes: int
    report: dict | None = None  # partition report (when the data was partitioned here)


def _limit(dataset: Any, limit: int | None, seed: int) -> Any:
    """A seeded random subset of at most ``limit`` samples (the dataset itself when it fits)."""
    if limit is None or len(dataset.labels) <= limit:
        return dataset
    idx = np.sort(np.random.default_rng(seed).choice(len(dataset.labels), size=limit, replace=False))
    return dataset.subset(idx)


def load_local_data(cfg: Config, with_eval: bool = True) -> LocalData:
    """Load the dataset, take this peer's partition share and build the evaluation sets."""
    d = cfg.data
    full = load_dataset(d.dataset, root=d.root, split="train", image_size=d.image_size)
    labels = np.asarray(full.labels)
    spec = parse_partition(d.partition)
    parts = partition(labels, d.num_peers, spec, d.seed)
    report = partition_report(labels, parts, full.num_classes, getattr(full, "classes", None), spec=spec,
                              seed=d.seed)
    train = _limit(full.subset(parts[d.peer_index]), d.train_limit, d.seed + 1 + d.peer_index)
    if not with_eval:
        return LocalData(train, None, None, None, full.num_classes, report)
    bank = _limit(full, cfg.eval.bank_limit, d.seed + 7919)
    test = _limit(load_dataset(d.dataset, root=d.root, split="test", image_size=d.image_size),
                  d.test_limit, d.seed + 104729)
    own = None
    if cfg.eval.own_distribution:
        own = own_distribution_indices(np.asarray(test.labels), np.asarray(train.labels),
                                       full.num_classes, seed=d.seed + d.peer_index)
    return LocalData(train, bank, test, own, full.num_classes, report)


def build_optimizer(objective: objectives.Objective) -> torch.optim.Optimizer:
    """AdamW (MAE recipe) or SGD with momentum (SimSiam recipe), as the objective resolves them.

    Parameter groups come from the objective (weight decay on rank >= 2 weights only, frozen
    parameters left out); the learning rate is set every step by the trainer's schedule.
    """
    groups, name, cfg = objective.param_groups(), objective.optimizer_name, objective.cfg
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=objective.lr, betas=tuple(cfg.betas))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=objective.lr, momentum=cfg.momentum)
    raise ValueError(f"objective.optimizer: expected 'adamw' or 'sgd', got {name!r}")


class Trainer:
    """One peer's training loop. Build with :meth:`create`; the constructor only stores."""

    def __init__(
        self,
        cfg: Config,
        objective: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: Any | None,
        data: LocalData,
        layout: FlatLayout,
        device: torch.device,
        hook: GossipHook | None = None,
        run_dir: Path | None = None,
        feature_skew: Callable[[torch.Tensor], torch.Tensor] | None = None,
        peer_id: str = "peer-0",
        training_step: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.objective = objective
        self.optimizer = optimizer
        self.scaler = scaler
        self.data = data
        self.layout = layout
        self.device = device
        self.hook = hook
        self.run_dir = run_dir
        self.feature_skew = feature_skew
        self.peer_id = peer_id
        self.training_step = training_step or objective.training_step  # torch.compile'd when asked
        self.step = 0  # optimizer steps done
        self.round = 0  # gossip rounds done (rounds are numbered from 1)
        self.last_mix: MixResult | None = None
        self.last_eval: dict | None = None
        self._stop = threading.Event()
        self._metrics = MetricsWriter(run_dir / "metrics.jsonl", peer_id) if run_dir else None
        self._flat_buf: torch.Tensor | None = None
        self._compute_since_round = 0.0  # wall seconds of training steps since the last gossip round
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None
        self._train_seconds = 0.0
        self._diagnostics_seconds = 0.0  # probes + snapshots: kept out of the round timings and budget
        self._probe: ProbeBatch | None = None
        if cfg.eval.probe_every and data.test is not None and len(data.test.labels) >= 2:
            self._probe = probe_batch(data.test, cfg.eval.probe_size, cfg.data.seed)

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        cfg: Config,
        hook: GossipHook | None = None,
        run_dir: str | Path | None = None,
        data: LocalData | None = None,
        peer_id: str | None = None,
    ) -> "Trainer":
        """Resolve the device, load data (unless given), build objective + optimizer + layout.

        ``run_dir`` (or ``cfg.train.run_dir``) receives metrics.jsonl, checkpoints, the resolved
        config and the partition report; None writes nothing (tests).
        """
        t = cfg.train
        device = resolve_device(t.device)
        if device.type == "cpu":
            torch.set_num_threads(t.threads or os.cpu_count() or 1)
        data = data or load_local_data(cfg)
        if len(data.train.labels) == 0:
            raise ValueError(f"peer {cfg.data.peer_index} got an empty share of {cfg.data.dataset}")
        channels, height, _ = tuple(data.train.images.shape[1:])
        ocfg = dataclasses.replace(cfg.objective, img_size=int(height), in_chans=int(channels))
        cfg = dataclasses.replace(cfg, objective=ocfg)
        _seed_everything(t.seed)  # identical initial weights on every peer (D-PSGD starts at consensus)
        objective = objectives.build(ocfg).to(device)
        use_cuda = device.type == "cuda"
        if use_cuda and t.channels_last:
            objective = objective.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(objective)
        scaler = torch.amp.GradScaler("cuda") if use_cuda and t.amp else None
        layout = FlatLayout.from_module(objective, t.bn_policy)
        skew = None
        if parse_partition(cfg.data.partition).kind == "feature_skew":
            from peer.augment import FeatureSkew

            skew = FeatureSkew.for_peer(cfg.data.peer_index, cfg.data.seed)
        # Per-peer stream for augmentations and masks (peers must not draw identical views).
        _seed_everything(t.seed * 1_000_003 + cfg.data.peer_index + 1)
        run_dir = Path(run_dir or t.run_dir) if (run_dir or t.run_dir) else None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, run_dir / "config.yaml")
            if data.report is not None:
                write_partition_report(data.report, run_dir)
        peer_id = peer_id or cfg.gossip.peer_id or f"peer-{cfg.data.peer_index}"
        log.info("%s: %s on %s, %d local images, %d params in the flat buffer (%s)", peer_id, ocfg.name,
                 device, len(data.train.labels), layout.numel, layout.fingerprint[:12])
        # Off by default: measured 0-17 % faster for a 30-50 s compile (DESIGN.md §6).
        step_fn = torch.compile(objective.training_step) if t.compile else None
        return cls(cfg, objective, optimizer, scaler, data, layout, device, hook, run_dir, skew, peer_id,
                   step_fn)

    # ------------------------------------------------------------------ control surface

    def request_stop(self) -> None:
        """Ask the loop to finish after the current step (safe to call from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def flat_params(self) -> torch.Tensor:
        """A new 1-D float32 CPU tensor with the travelling tensors (see :class:`FlatLayout`)."""
        return self.layout.flatten(self.objective)

    def load_flat_params(self, flat: torch.Tensor) -> None:
        """Overwrite the model with a flat buffer of this layout (e.g. pulled from neighbours)."""
        self.layout.load_(self.objective, flat)

    def load_model_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Overwrite the model with a full state dict (e.g. a donor's checkpoint)."""
        self.objective.load_state_dict(state_dict)

    def set_round(self, round: int) -> None:
        """Join the swarm at round ``round`` (a late joiner continues from the swarm's round)."""
        self.round = int(round)

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoint` (exact, RNG included)."""
        state = ckpt.load_checkpoint(path, map_location=self.device)
        self.step, self.round = ckpt.restore_checkpoint(
            state, model=self.objective, optimizer=self.optimizer, scaler=self.scaler)
        log.info("%s: resumed from %s at step %d round %d", self.peer_id, path, self.step, self.round)

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Atomic checkpoint (default: <run dir>/checkpoints/last.pt)."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("no run_dir and no path: nowhere to write the checkpoint")
            path = self.run_dir / "checkpoints" / "last.pt"
        return ckpt.save_checkpoint(path, model=self.objective, optimizer=self.optimizer, scaler=self.scaler,
                                    step=self.step, round=self.round, config=config_to_dict(self.cfg),
                                    extra={"fingerprint": self.layout.fingerprint})

    # ------------------------------------------------------------------ the loop

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.data.train.labels) // self.batch_size)

    @property
    def batch_size(self) -> int:
        return min(self.cfg.train.batch_size, len(self.data.train.labels))

    def max_steps(self) -> int | None:
        """The step budget from train.steps and train.epochs (the smaller), None when unbounded."""
        t = self.cfg.train
        limits = [t.steps] if t.steps is not None else []
        if t.epochs is not None:
            limits.append(math.ceil(t.epochs * self.steps_per_epoch))
        return min(limits) if limits else None

    def run(self, final_eval: bool = True) -> dict:
        """Train until a budget is spent or a stop is requested; returns the final summary."""
        t = self.cfg.train
        max_steps = self.max_steps()
        if max_steps is None and t.time_budget_s is None:
            log.warning("no steps/epochs/time budget: training until request_stop()")
        if self.cfg.eval.at_start and self.step == 0 and self.round == 0 and self.data.bank is not None:
            self.evaluate(tag="init")
        loss_avg, interval_images, interval_seconds = RunningMean(100), 0, 0.0
        self.objective.train()
        while not self._stop.is_set():
            if max_steps is not None and self.step >= max_steps:
                break
            if t.time_budget_s is not None and self._train_seconds >= t.time_budget_s:
                break
            started, diagnostics_before = time.perf_counter(), self._diagnostics_seconds
            loss, logs = self._train_step()
            step_seconds = time.perf_counter() - started
            self.step += 1
            loss_avg.add(loss)
            interval_images += self.batch_size
            interval_seconds += step_seconds
            if t.slowdown > 1.0:  # heterogeneous compute: a k-times slower peer
                self._stop.wait((t.slowdown - 1.0) * step_seconds)
            self._compute_since_round += time.perf_counter() - started
            if self.step % t.period == 0:
                self._gossip_round()
            diagnostics = self._diagnostics_seconds - diagnostics_before
            self._train_seconds += time.perf_counter() - started - diagnostics
            if self.step % t.log_every == 0:
                self._log_train(loss, loss_avg.value, logs, interval_images / max(interval_seconds, 1e-9))
                interval_images, interval_seconds = 0, 0.0
            if t.eval_every and self.step % t.eval_every == 0 and self.data.bank is not None:
                self.evaluate(tag="periodic")
            if t.checkpoint_every and self.step % t.checkpoint_every == 0 and self.run_dir is not None:
                self.save_checkpoint()
        return self._finish(final_eval)

    def _finish(self, final_eval: bool) -> dict:
        summary: dict[str, Any] = {"peer": self.peer_id, "step": self.step, "round": self.round,
                                   "train_seconds": round(self._train_seconds, 3),
                                   "diagnostics_seconds": round(self._diagnostics_seconds, 3),
                                   "stopped": self._stop.is_set()}
        if final_eval and self.data.bank is not None:
            summary["eval"] = self.evaluate(tag="final")
        if self.run_dir is not None:
            summary["checkpoint"] = str(self.save_checkpoint())
        if self._metrics is not None:
            self._metrics.write("final", **summary)
            self._metrics.close()
        return summary

    def _batch(self, step: int) -> torch.Tensor:
        """The uint8 images of ``step``: epoch order = randperm seeded by (seed, peer, epoch)."""
        spe = self.steps_per_epoch
        epoch, pos = divmod(step, spe)
        if epoch != self._perm_epoch:
            seed = (self.cfg.train.seed * 1_000_003 + self.cfg.data.peer_index) * 10_007 + epoch
            gen = torch.Generator().manual_seed(seed)
            self._perm = torch.randperm(len(self.data.train.labels), generator=gen)
            self._perm_epoch = epoch
        idx = self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        return torch.as_tensor(self.data.train.images)[idx]

    def _lr(self) -> float:
        """Linear warm-up, then constant or cosine decay to 0 at train.steps."""
        t, base = self.cfg.train, self.objective.lr
        if t.warmup_steps and self.step < t.warmup_steps:
            return base * (self.step + 1) / t.warmup_steps
        if t.lr_schedule == "cosine" and t.steps:
            progress = min(1.0, (self.step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
            return base * 0.5 * (1.0 + math.cos(math.pi * progress))
        return base

    def _train_step(self) -> tuple[float, dict]:
        """One optimizer step on one batch; returns (loss, the objective's logs)."""
        images = self._batch(self.step).to(self.device, non_blocking=True).float().div_(255)
        if self.device.type == "cuda" and self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.feature_skew is not None:
            images = self.feature_skew(images)
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        amp = self.scaler is not None
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=amp):
            out = self.training_step(images)
        loss = out.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.peer_id}: loss is {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        if amp:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        logs = {k: (v.item() if torch.is_tensor(v) else v) for k, v in (out.logs or {}).items()}
        return loss.item(), {"lr": lr, **logs}

    def _gossip_round(self) -> None:
        """Publish this round's flat params (+ MAR payload), mix with neighbours, load the result.

        On their schedules (issue 7 §1) the round also saves the published params as a snapshot and
        embeds the probe batch with the local model (after publishing, before the mix is loaded) and
        with the mixed model; that time is measured apart and left out of the round's time split."""
        next_round = self.round + 1
        compute_seconds, self._compute_since_round = self._compute_since_round, 0.0
        probing = self._probe is not None and next_round % self.cfg.eval.probe_every == 0
        if self.hook is None:
            self.round = next_round
            if probing:
                started = time.perf_counter()
                z_local = self._embed_probe()
                self._write_probe(next_round, z_local, None, started)
            return
        blocked_from = time.perf_counter()
        if self._flat_buf is None:
            self._flat_buf = torch.empty(self.layout.numel, dtype=torch.float32)
        flat = self.layout.flatten(self.objective, out=self._flat_buf)
        payload = self.objective.round_payload()
        self.hook.publish(flat, round=next_round, embedding=payload)
        diagnostics_from = time.perf_counter()
        if self.cfg.eval.snapshot_every and next_round % self.cfg.eval.snapshot_every == 0:
            self._save_snapshot(next_round, flat)
        probe_from = time.perf_counter()
        z_local = self._embed_probe() if probing else None  # the model still holds the local params
        probe_seconds = time.perf_counter() - probe_from
        diagnostics_seconds = time.perf_counter() - diagnostics_from
        self._diagnostics_seconds += diagnostics_seconds
        timeout = self.cfg.gossip.deadline_s * 3 + 30.0  # the future resolves by its pulls' deadlines
        try:
            result = self.hook.mix().result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            log.warning("%s: round %d mix did not resolve in %.0f s; keeping local params",
                        self.peer_id, next_round, timeout)
            self.round = next_round
            self._write("round", step=self.step, round=next_round, error="mix timeout",
                        compute_seconds=compute_seconds,
                        blocked_seconds=time.perf_counter() - blocked_from - diagnostics_seconds)
            if z_local is not None:
                self._write_probe(next_round, z_local, None, time.perf_counter(), probe_seconds)
            return
        self.layout.load_(self.objective, result.params)
        target = self.objective.neighbourhood_target(result.embedding, result.embeddings)
        if target is not None:
            self.objective.set_global_embedding(target.to(self.device), next_round)
        self.round = next_round
        self.last_mix = result
        self._write_round(next_round, result, compute_seconds,
                          time.perf_counter() - blocked_from - diagnostics_seconds)
        if z_local is not None:
            started = time.perf_counter()
            self._write_probe(next_round, z_local, self._embed_probe(), started, probe_seconds)

    def _embed_probe(self) -> torch.Tensor:
        """The probe batch's frozen features under the model's current parameters."""
        return probe_embeddings(self.objective, self._probe.images, self.device, self.cfg.eval.batch_size)

    def _write_probe(self, round_number: int, z_local: torch.Tensor, z_mixed: torch.Tensor | None,
                     started: float, earlier_seconds: float = 0.0) -> None:
        """The ``probe`` record: collapse std of the local (pre-mix) and mixed embeddings and their
        A-MMD (None without a mix). ``seconds`` = the probe's whole cost: ``earlier_seconds`` (the
        pre-mix embedding, already counted as diagnostics time) plus the time since ``started``."""
        record = {"collapse_std": collapse_std(z_local),
                  "collapse_std_mixed": collapse_std(z_mixed) if z_mixed is not None else None,
                  "a_mmd": embedding_a_mmd(z_local, z_mixed) if z_mixed is not None else None}
        seconds = time.perf_counter() - started
        self._diagnostics_seconds += seconds
        self._write("probe", step=self.step, round=round_number, **record, probe_size=self._probe.size,
                    seconds=round(earlier_seconds + seconds, 4))

    def _save_snapshot(self, round: int, flat: torch.Tensor) -> Path | None:
        """Atomically save the params published for ``round`` (float32) to
        ``<run dir>/snapshots/round_{round:05d}.pt`` for :func:`peer.diagnostics.snapshot_consensus`."""
        if self.run_dir is None:
            return None
        path = self.run_dir / "snapshots" / f"round_{round:05d}.pt"
        return ckpt.atomic_torch_save({"params": flat.float(), "fingerprint": self.layout.fingerprint,
                                       "round": round, "step": self.step}, path)

    def _write_round(self, round: int, result: MixResult, compute_seconds: float, blocked_seconds: float) -> None:
        """The round's diagnostics record (issue 7 §1): the realised W row (self weight + each
        neighbour's weight, who answered), bytes, the time split and staleness.

        Time split: ``compute_seconds`` = training steps since the previous round; ``pull_seconds`` =
        communicating (until the last pull finished or hit its deadline); ``mix_seconds`` = averaging;
        ``wait_seconds`` = the rest of the time training was blocked on the round (publishing, loading
        the mixed params, waiting for the hook). Snapshot and probe time is not in any of them."""
        stalenesses = [n.staleness for n in result.neighbours if n.answered and n.staleness is not None]
        self._write("round", step=self.step, round=round, mode=self.cfg.gossip.mode, answered=result.answered,
                    expected=result.expected, self_weight=result.self_weight, bytes_in=result.bytes_in,
                    bytes_out=result.bytes_out, compute_seconds=compute_seconds, pull_seconds=result.pull_seconds,
                    mix_seconds=result.mix_seconds, blocked_seconds=blocked_seconds,
                    wait_seconds=max(0.0, blocked_seconds - result.pull_seconds - result.mix_seconds),
                    staleness_max=max(stalenesses) if stalenesses else None,
                    neighbour_distance_sq=result.neighbour_distance_sq,
                    neighbours=[{"peer": n.peer_id, "answered": n.answered, "weight": n.weight,
                                 "round": n.round, "staleness": n.staleness, "bytes_in": n.bytes_in,
                                 "seconds": n.seconds, "error": n.error} for n in result.neighbours])

    # ------------------------------------------------------------------ evaluation and logging

    def evaluate(self, tag: str = "manual") -> dict:
        """kNN + linear probe on the global and own-distribution test sets (frozen features)."""
        if self.data.bank is None or self.data.test is None:
            raise ValueError("this trainer was built without evaluation data (with_eval=False)")
        e = self.cfg.eval
        settings = EvalSettings(e.knn_k, e.knn_temperature, e.linear_epochs, e.linear_lr, e.batch_size)
        started = time.perf_counter()
        result = evaluate(self.objective, self.data.bank, self.data.test, self.data.own_test_idx, settings,
                          self.device, self.data.num_classes)
        result["seconds"] = round(time.perf_counter() - started, 3)
        self.last_eval = result
        self._write("eval", step=self.step, round=self.round, tag=tag, **result)
        log.info("%s: eval (%s) at step %d: %s", self.peer_id, tag, self.step,
                 " ".join(f"{k}={v:.4f}" for k, v in result.items() if isinstance(v, float)))
        return result

    def _log_train(self, loss: float, loss_avg: float, logs: dict, images_per_s: float) -> None:
        self._write("train", **{**logs, "step": self.step, "round": self.round,
                                "epoch": round(self.step / self.steps_per_epoch, 3), "loss": loss,
                                "loss_avg": loss_avg, "images_per_s": round(images_per_s, 2),
                                "train_seconds": round(self._train_seconds, 3)})
        mix = self.last_mix
        progress_logger().info(format_progress(
            self.peer_id, self.round, self.step, loss, loss_avg, images_per_s,
            mix.answered if mix else None, mix.expected if mix else None,
            mix.pull_seconds + mix.mix_seconds if mix else None, mix.neighbour_distance_sq if mix else None))

    def _write(self, kind: str, **fields: Any) -> None:
        if self._metrics is not None:
            self._metrics.write(kind, **fields)
