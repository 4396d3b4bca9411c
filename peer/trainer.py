"""The training loop of one peer: standalone, or with a gossip hook every ``period`` steps.

Read :meth:`Trainer.run` top to bottom::

    batch of the local share (seeded order per epoch) -> feature skew (if configured)
    -> objective.training_step -> backward -> optimizer step (AMP + GradScaler on CUDA)
    -> every `period` steps: flat params (+ MAR payload) -> hook.publish -> hook.mix().result()
       (gossip.overlap: the mix stays in flight while training goes on, peer.overlap)
       -> the mix (then DiLoCo's outer step if enabled) into the model (+ z_global) -> log the round (on
       their schedules: a parameter snapshot and the probe-batch diagnostics before and after the mix,
       timed apart from the round and from the training-time budget) -> malloc_trim (if enabled)
    -> progress / metrics line, evaluation and checkpoint on their schedules
    -> stop on the step / epoch / wall-clock budget or when request_stop() is called

Build with :meth:`Trainer.create` (loads data, builds the objective and optimizer; the constructor only
stores). The peer process uses :meth:`run`, :meth:`request_stop` (safe from a signal handler), :attr:`step`
/ :attr:`round`, :attr:`layout` (its ``fingerprint`` is announced), :meth:`flat_params`, :meth:`set_round`,
:meth:`load_flat_params` / :meth:`load_model_state` (state pulled from neighbours before training),
:meth:`resume`, :meth:`evaluate`, :meth:`save_checkpoint`.

Data order is a pure function of (seed, peer index, epoch) and the step counter: with the RNG
states in the checkpoint, a resumed run continues exactly like an uninterrupted one."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gossip.hook import GossipHook, MixResult
from peer import checkpoint as ckpt
from peer.allocator import release_free_memory
from peer.build import (
    build_objective,
    build_optimizer,
    feature_skew_for,
    learning_rate,
    prepare_device,
    prepare_run_dir,
    seed_everything,
)
from peer.config import Config, config_to_dict
from peer.evaluate import EvalSettings, evaluate, knn_point
from peer.flat import FlatLayout
from peer.local_data import LocalData, load_local_data
from peer.metrics import MetricsWriter, RunningMean, format_progress, progress_logger, round_record
from peer.outer_optimizer import OuterOptimizer
from peer.overlap import RoundInFlight, with_local_progress
from peer.probe import ProbeBatch, probe_batch, probe_embeddings, probe_record
from peer.rundir import METRICS_FILE, checkpoint_path

log = logging.getLogger(__name__)


def _sizes(data: LocalData, layout: FlatLayout) -> str:
    images, fingerprint = len(data.train.labels), layout.fingerprint[:12]
    return f"{images} local images, {layout.numel} params in the flat buffer ({fingerprint})"


class Trainer:
    """One peer's training loop. Build with :meth:`create`; the constructor only stores."""

    def __init__(
        self,
        *,
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
        self.cfg, self.objective, self.optimizer, self.scaler = cfg, objective, optimizer, scaler
        self.data, self.layout, self.device, self.hook = data, layout, device, hook
        self.run_dir, self.feature_skew, self.peer_id = run_dir, feature_skew, peer_id
        self.training_step = training_step or objective.training_step  # torch.compile'd when asked
        self.step = 0  # optimizer steps done
        self.round = 0  # gossip rounds done (rounds are numbered from 1)
        self.last_mix: MixResult | None = None
        self.last_eval: dict | None = None
        self.outer = OuterOptimizer(cfg.outer, layout, objective)  # a no-op unless outer.enabled
        self._stop = threading.Event()
        self._metrics = MetricsWriter(run_dir / METRICS_FILE, peer_id) if run_dir else None
        self._flat_buf: torch.Tensor | None = None  # reused for every publish (none in standalone runs)
        self._in_flight: RoundInFlight | None = None  # gossip.overlap: the round whose mix is under way
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
    ) -> Trainer:
        """Resolve the device, load data (unless given), build objective + optimizer + layout.

        ``run_dir`` (or ``cfg.train.run_dir``) receives metrics.jsonl, checkpoints, the resolved
        config and the partition report; None writes nothing (tests)."""
        t = cfg.train
        device = prepare_device(t.device, t.threads)
        data = data or load_local_data(cfg)
        if len(data.train.labels) == 0:
            raise ValueError(f"peer {cfg.data.peer_index} got an empty share of {cfg.data.dataset}")
        cfg, objective, layout = build_objective(cfg, data, device)
        optimizer = build_optimizer(objective)
        scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and t.amp else None
        skew = feature_skew_for(cfg)
        # Per-peer stream for augmentations and masks (peers must not draw identical views).
        seed_everything(t.seed * 1_000_003 + cfg.data.peer_index + 1)
        run_dir = prepare_run_dir(cfg, data, run_dir or t.run_dir)
        peer_id = peer_id or cfg.gossip.peer_id or f"peer-{cfg.data.peer_index}"
        log.info("%s: %s on %s, %s", peer_id, cfg.objective.name, device, _sizes(data, layout))
        # Off by default: measured 0-17 % faster for a 30-50 s compile (docs/design.md §6).
        step_fn = torch.compile(objective.training_step) if t.compile else None
        return cls(
            cfg=cfg,
            objective=objective,
            optimizer=optimizer,
            scaler=scaler,
            data=data,
            layout=layout,
            device=device,
            hook=hook,
            run_dir=run_dir,
            feature_skew=skew,
            peer_id=peer_id,
            training_step=step_fn,
        )

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
        self.outer.restart()

    def load_model_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Overwrite the model with a full state dict (e.g. a donor's checkpoint)."""
        self.objective.load_state_dict(state_dict)
        self.outer.restart()

    def set_round(self, round: int) -> None:
        """Join the swarm at round ``round`` (a late joiner continues from the swarm's round)."""
        self.round = int(round)

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoint` (exact, RNG included)."""
        state = ckpt.load_checkpoint(path, map_location=self.device)
        self.step, self.round = ckpt.restore_checkpoint(
            state, model=self.objective, optimizer=self.optimizer, scaler=self.scaler
        )
        self.outer.restore(state.get("extra") or {})
        log.info("%s: resumed from %s at step %d round %d", self.peer_id, path, self.step, self.round)

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Atomic checkpoint (default: <run dir>/checkpoints/last.pt)."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("no run_dir and no path: nowhere to write the checkpoint")
            path = checkpoint_path(self.run_dir)
        return ckpt.save_checkpoint(
            path,
            model=self.objective,
            optimizer=self.optimizer,
            scaler=self.scaler,
            step=self.step,
            round=self.round,
            config=config_to_dict(self.cfg),
            extra={"fingerprint": self.layout.fingerprint, **self.outer.checkpoint_entries()},
        )

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
        self.outer.begin(self.objective)  # the first interval's θ_start (unless resumed)
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
            elif self._in_flight is not None and self._in_flight.done():  # overlap: the mix landed
                self._land_round(self._in_flight)
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
        if self._in_flight is not None:  # overlap: the last round's mix lands before the final eval
            self._land_round(self._in_flight)
        summary: dict[str, Any] = {
            "peer": self.peer_id,
            "step": self.step,
            "round": self.round,
            "train_seconds": round(self._train_seconds, 3),
            "diagnostics_seconds": round(self._diagnostics_seconds, 3),
            "stopped": self._stop.is_set(),
        }
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

    def _train_step(self) -> tuple[float, dict]:
        """One optimizer step on one batch; returns (loss, the objective's logs)."""
        images = self._batch(self.step).to(self.device, non_blocking=True).float().div_(255)
        if self.device.type == "cuda" and self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.feature_skew is not None:
            images = self.feature_skew(images)
        lr = learning_rate(self.cfg.train, self.objective.lr, self.step)
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
        """One gossip round: publish, mix with the neighbours, load the result, log the round.

        With ``gossip.overlap`` the mix is left in flight and training goes on (:mod:`peer.overlap`):
        it lands at the first step after it resolves, at the latest before the next round's publish.
        On their schedules the round also saves the published params as a snapshot and embeds the
        probe batch with the local model (before the mix is loaded) and with the mixed model; that
        time is counted as diagnostics, apart from the round's time split."""
        if self._in_flight is not None:  # overlap: the previous round lands before the next publish
            self._land_round(self._in_flight)
        round_ = self.round + 1
        compute_seconds, self._compute_since_round = self._compute_since_round, 0.0
        probing = self._probe is not None and round_ % self.cfg.eval.probe_every == 0
        if self.hook is None:  # standalone: a round is only a counter (and its probe)
            self._count_round(round_, probing)
            return
        in_flight = self._start_round(round_, compute_seconds, probing)
        if self.cfg.gossip.overlap:
            self._in_flight = in_flight
        else:
            self._land_round(in_flight)

    def _start_round(self, round_: int, compute_seconds: float, probing: bool) -> RoundInFlight:
        """Publish this round's flat params (+ the objective's payload) and start the mix."""
        clock = time.perf_counter
        blocked_from = clock()
        if self._flat_buf is None:
            self._flat_buf = torch.empty(self.layout.numel, dtype=torch.float32)
        flat = self.layout.flatten(self.objective, out=self._flat_buf)
        self.hook.publish(flat, round=round_, embedding=self.objective.round_payload())
        # diagnostics (timed apart): the snapshot file, the probe under the local params
        diagnostics_from = clock()
        if self.run_dir is not None:  # on eval.snapshot_every's schedule
            every = self.cfg.eval.snapshot_every
            ckpt.save_round_snapshot(self.run_dir, every, self.layout, round_, self.step, flat)
        probe_from = clock()
        z_local = self._embed_probe() if probing else None
        probe_seconds = clock() - probe_from
        diagnostics_seconds = clock() - diagnostics_from
        self._diagnostics_seconds += diagnostics_seconds
        future = self.hook.mix()  # always resolves; a failed or late round says why in `failure`
        blocked = clock() - blocked_from - diagnostics_seconds
        return RoundInFlight(
            round_, future, flat, self.step, compute_seconds, blocked, z_local, probe_seconds
        )

    def _land_round(self, in_flight: RoundInFlight) -> None:
        """Load the round's mix (through the outer step; plus the local progress made meanwhile under
        overlap), log the round, probe the mixed params on schedule."""
        self._in_flight = None
        clock = time.perf_counter
        landed_from = clock()
        result = in_flight.future.result()
        mixed = result.params if result.failure is None else in_flight.published
        landed, outer = self.outer.step(mixed)
        if result.failure is None or outer:  # a round that did not mix still takes its outer step
            if self.step > in_flight.step:
                current = self.layout.flatten(self.objective)
                landed = with_local_progress(landed, in_flight.published, current)
            if result.failure is None:
                self._load_mix(result, in_flight.round, landed)
            else:
                self.layout.load_(self.objective, landed)
        self.round = in_flight.round
        blocked_seconds = in_flight.blocked_seconds + clock() - landed_from
        if self.cfg.gossip.overlap:
            outer["overlap_steps"] = self.step - in_flight.step  # steps trained while it was in flight
        times = {"compute_seconds": in_flight.compute_seconds, "blocked_seconds": blocked_seconds}
        fields = round_record(result, self.cfg.gossip.mode, **times)
        self._write("round", step=self.step, round=in_flight.round, **fields, **outer)
        if in_flight.z_local is not None:
            probe_from, z_local = clock(), in_flight.z_local
            z_mixed = self._embed_probe() if result.failure is None else None
            self._write_probe(in_flight.round, z_local, z_mixed, probe_from, in_flight.probe_seconds)
        release_free_memory()  # DSSL_MALLOC_TUNING=trim: the round's freed buffers leave RSS

    def _count_round(self, round_: int, probing: bool) -> None:
        """A round without gossip (standalone training): advance the counter, probe on schedule."""
        self.round = round_
        if probing:
            started = time.perf_counter()
            self._write_probe(round_, self._embed_probe(), None, started)

    def _load_mix(self, result: MixResult, round_: int, params: torch.Tensor) -> None:
        """``params`` (the mix, after any outer step) into the model; the objective's target from the mix."""
        self.layout.load_(self.objective, params)
        target = self.objective.neighbourhood_target(result.embedding, result.embeddings)
        if target is not None:
            self.objective.set_global_embedding(target.to(self.device), round_)
        self.last_mix = result

    def _embed_probe(self) -> torch.Tensor:
        """The probe batch's frozen features under the model's current parameters."""
        return probe_embeddings(self.objective, self._probe.images, self.device, self.cfg.eval.batch_size)

    def _write_probe(
        self,
        round_number: int,
        z_local: torch.Tensor,
        z_mixed: torch.Tensor | None,
        started: float,
        earlier_seconds: float = 0.0,
    ) -> None:
        """The ``probe`` record (:func:`peer.probe.probe_record`). ``seconds`` = the probe's whole cost:
        ``earlier_seconds`` (the pre-mix embedding, already counted as diagnostics time) plus the
        time since ``started``."""
        record = probe_record(z_local, z_mixed)
        seconds = time.perf_counter() - started
        self._diagnostics_seconds += seconds
        self._write(
            "probe",
            step=self.step,
            round=round_number,
            **record,
            probe_size=self._probe.size,
            seconds=round(earlier_seconds + seconds, 4),
        )

    # ------------------------------------------------------------------ evaluation and logging

    def evaluate(self, tag: str = "manual") -> dict:
        """kNN + linear probe on the global and own-distribution test sets (frozen features); a
        periodic one is a learning-curve point (kNN on ``eval.curve_test_images``) when configured."""
        data = self.data
        if data.bank is None or data.test is None:
            raise ValueError("this trainer was built without evaluation data (with_eval=False)")
        settings = EvalSettings.from_config(self.cfg.eval)
        started = time.perf_counter()
        model = (self.objective, data.bank)
        if tag == "periodic" and data.curve_test is not None:
            result = knn_point(*model, data.curve_test, settings, self.device, data.num_classes)
        else:
            result = evaluate(*model, data.test, data.own_test_idx, settings, self.device, data.num_classes)
        result["seconds"] = round(time.perf_counter() - started, 3)
        self.last_eval = result
        self._write("eval", step=self.step, round=self.round, tag=tag, **result)
        log.info(
            "%s: eval (%s) at step %d: %s",
            self.peer_id,
            tag,
            self.step,
            " ".join(f"{k}={v:.4f}" for k, v in result.items() if isinstance(v, float)),
        )
        return result

    def _log_train(self, loss: float, loss_avg: float, logs: dict, images_per_s: float) -> None:
        self._write(
            "train",
            **{
                **logs,
                "step": self.step,
                "round": self.round,
                "epoch": round(self.step / self.steps_per_epoch, 3),
                "loss": loss,
                "loss_avg": loss_avg,
                "images_per_s": round(images_per_s, 2),
                "train_seconds": round(self._train_seconds, 3),
            },
        )
        mix = self.last_mix  # the neighbour columns stay '-' until a round has mixed
        seen = (
            (mix.answered, mix.expected, mix.pull_seconds + mix.mix_seconds, mix.neighbour_distance_sq)
            if mix
            else ()
        )
        line = format_progress(self.peer_id, self.round, self.step, loss, loss_avg, images_per_s, *seen)
        progress_logger().info(line)

    def _write(self, kind: str, **fields: Any) -> None:
        if self._metrics is not None:
            self._metrics.write(kind, **fields)
