"""MAR: MAE + an alignment term to the neighbourhood's representations (docs/paper.md §3, Eq. 5–7).

    L_MAR = L_MAE + γ_t · A-MMD(z_local, z_global)

* ``z_local`` ``[B, D]``: per-sample mean of the encoder's output tokens of the *visible* patches
  (CLS excluded), differentiable — the paper's z_i = f_e(x1), pooled per sample so the kernel
  compares samples with samples.
* ``z_global`` ``[B', D]``: a constant (no gradient) received from the gossip layer: the uniform
  mean of the closed neighbourhood's payloads from the previous round (Alg. 2 l.8). Round 1 has no
  ``z_global`` and MAR is plain MAE.
* A-MMD (Eq. 6), implemented by :func:`a_mmd`, with the Gaussian-type kernel
  ``k(z, z') = exp(-‖z - z'‖ / (2σ²))`` exactly as the paper writes it (non-squared distance) and
  σ = the mean pairwise distance (no gradient).
* γ_t follows the cosine schedule of Eq. 7 (:func:`gamma_schedule`), indexed by round.

Payload (:meth:`MAR.round_payload`): a fixed-size ``[embedding_batch, D]`` matrix holding the
detached ``z_local`` of the most recent ``embedding_batch`` samples seen (a ring buffer). The
paper's code instead averages the latent tensors element-wise over all steps of a round; since
rows of different batches are unrelated images, that average drifts towards a single mean vector
and stops describing the local embedding *distribution*, which is what an MMD compares. The ring
buffer keeps real samples. Size at the defaults: 64 × 192 fp32 = 48 KiB per round.

How the paper's reference code differs (do not copy; docs/paper.md §3 "Deviations"): its MMD helper is
written for 2-D inputs but receives ``[B, tokens, D]`` tensors, so the distance is taken over the
token axis (a per-channel kernel); it keeps the diagonal terms k(z_a, z_a) = 1 in the within-set
sums; it uses the squared distance; its σ is a token-to-token distance inside each sample; its
global latents are position-wise averages of differently masked tokens; and its decentralised path
passes no γ, so the alignment weight there is 0.
"""

from __future__ import annotations

import math

import torch

from peer.objectives.base import ObjectiveConfig, StepOutput
from peer.objectives.mae import MAE


def gamma_schedule(round: int, gamma_max: float, gamma_min: float, rounds: int) -> float:
    """Eq. 7: γ_t = γ_min + (γ_max − γ_min)·½(1 + cos(π·t/Ω)), with t clipped to [0, Ω].

    ``round`` is t (0-based: γ_max at round 0), ``rounds`` is Ω; after Ω rounds γ stays at γ_min.
    """
    if rounds <= 0:
        return gamma_min
    t = min(max(round, 0), rounds)
    return gamma_min + (gamma_max - gamma_min) * 0.5 * (1.0 + math.cos(math.pi * t / rounds))


def _pairwise_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[len(a), len(b)]``; the gradient at distance 0 is 0 (not NaN).

    Uses ‖a‖² + ‖b‖² − 2a·b (one matrix product) instead of materialising the ``[A, B, D]``
    difference tensor: 10–50× faster at B = 256 on CPU; the clamp absorbs the rounding that can make
    the expansion slightly negative."""
    squared = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(0) - 2.0 * (a @ b.T)
    return squared.clamp_min(1e-12).sqrt()


def _off_diagonal_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a square matrix without its diagonal: Σ_{a≠b} v_ab / (n(n−1))."""
    n = values.shape[0]
    return (values.sum() - values.diagonal().sum()) / (n * (n - 1))


def a_mmd(z: torch.Tensor, z_bar: torch.Tensor) -> torch.Tensor:
    """A-MMD of Eq. 6 between local embeddings ``z [B, D]`` and constant global ones ``z_bar [B', D]``.

        A-MMD = Σ_{a≠b} k(z_a, z_b) / (B(B−1)) + Σ_{a≠b} k(z̄_a, z̄_b) / (B'(B'−1))
                − 2 / (B·B') · Σ_{a,b} k(z_a, z̄_b)
        k(x, y) = exp(−‖x − y‖ / (2σ²)),   σ = mean_{a≠b} ‖u_a − u_b‖ over u = [z; z̄]

    For B = B' this is the paper's formula (the unbiased MMD² estimator); for B ≠ B' each sum is
    normalised by its own number of terms. σ is measured once over the union of both sets so that
    all three sums use the same kernel (otherwise it is not an MMD), and carries no gradient. If
    B' = 1 the global within-set term cannot be estimated and is left out: it is a constant, so the
    gradient is unchanged, but the value is then no longer ≥ 0 in expectation. Requires B ≥ 2.
    """
    if z.ndim != 2 or z_bar.ndim != 2 or z.shape[1] != z_bar.shape[1]:
        raise ValueError(f"a_mmd expects [B, D] and [B', D], got {tuple(z.shape)} and {tuple(z_bar.shape)}")
    if z.shape[0] < 2:
        raise ValueError("a_mmd needs at least 2 local embeddings")
    dtype = torch.promote_types(z.dtype, torch.float32)  # at least float32, also under AMP
    z = z.to(dtype)
    z_bar = z_bar.detach().to(device=z.device, dtype=dtype)
    with torch.no_grad():
        union = torch.cat([z, z_bar])
        sigma = _off_diagonal_mean(_pairwise_distance(union, union)).clamp_min(1e-12)
    scale = 2 * sigma**2

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-_pairwise_distance(a, b) / scale)

    local = _off_diagonal_mean(kernel(z, z))
    cross = kernel(z, z_bar).mean()
    glob = _off_diagonal_mean(kernel(z_bar, z_bar)) if z_bar.shape[0] >= 2 else z.new_zeros(())
    return local + glob - 2 * cross


class MAR(MAE):
    """MAE plus γ_t · A-MMD(z_local, z_global) (the paper's FedMAR/DecMAR objective).

    Gossip averages all parameters as for MAE; in addition the trainer publishes
    :meth:`round_payload` with each round's parameters and, after mixing, calls
    :meth:`set_global_embedding` with the uniform mean of the closed neighbourhood's payloads.
    """

    def __init__(self, cfg: ObjectiveConfig) -> None:
        super().__init__(cfg)
        # Plain attributes, not buffers: the trainer's flat gossip buffer must not carry them.
        self._z_global: torch.Tensor | None = None
        self._round = 0
        self._payload = torch.zeros(cfg.embedding_batch, cfg.embed_dim)
        self._payload_filled = False
        self._payload_pos = 0

    @property
    def gamma(self) -> float:
        """γ_t for the current round (Eq. 7)."""
        cfg = self.cfg
        return gamma_schedule(self._round, cfg.gamma_max, cfg.gamma_min, cfg.gamma_rounds)

    @property
    def z_global(self) -> torch.Tensor | None:
        """The neighbourhood embedding used this round, or None (round 1: plain MAE)."""
        return self._z_global

    def training_step(self, images: torch.Tensor) -> StepOutput:
        mae_loss, tokens = self.masked_step(self.view(images))
        z_local = tokens[:, 1:].mean(dim=1)
        self._remember(z_local.detach())
        logs = {"mae": float(mae_loss.detach()), "gamma": self.gamma}
        z_global = self.z_global
        if z_global is None or z_local.shape[0] < 2:  # no neighbourhood yet, or a 1-image batch
            loss = mae_loss
            logs["mmd"] = 0.0
        else:
            mmd = a_mmd(z_local, z_global)
            loss = mae_loss + self.gamma * mmd
            logs["mmd"] = float(mmd.detach())
        logs["loss"] = float(loss.detach())
        return StepOutput(loss=loss, logs=logs)

    def _remember(self, z: torch.Tensor) -> None:
        """Write the newest embeddings into the payload ring buffer (cycling ``z`` to fill it the
        first time, so the payload has a fixed shape after the first step)."""
        rows = self._payload.shape[0]
        z = z.float()
        if self._payload.device != z.device:  # stay on the training device: no host sync per step
            self._payload = self._payload.to(z.device)
        if not self._payload_filled:
            self._payload.copy_(z.repeat(math.ceil(rows / z.shape[0]), 1)[:rows])
            self._payload_filled = True
            self._payload_pos = z.shape[0] % rows
            return
        z = z[-rows:]
        idx = (self._payload_pos + torch.arange(z.shape[0], device=z.device)) % rows
        self._payload[idx] = z
        self._payload_pos = int((self._payload_pos + z.shape[0]) % rows)

    def round_payload(self) -> torch.Tensor | None:
        """``[embedding_batch, embed_dim]`` float32 CPU copy of the latest local embeddings, or None
        before the first training step."""
        return self._payload.cpu().clone() if self._payload_filled else None

    def neighbourhood_target(
        self, mean: torch.Tensor | None, payloads: tuple[torch.Tensor, ...]
    ) -> torch.Tensor | None:
        """``mar_target: mean`` → the element-wise mean of the closed neighbourhood's payloads (the
        paper's Alg. 2 l.8). Rows of different peers are unrelated images, so averaging them shrinks
        z_global's spread by up to 1/|A_i|, and A-MMD then pulls the local embeddings inward round
        after round (our runs: the collapse indicator falls to ~0, docs/results.md).
        ``mar_target: union`` → all the payloads' rows stacked ``[|A_i|·B', D]``: the neighbourhood's
        embedding distribution itself, which is what an MMD compares."""
        if self.cfg.mar_target == "union" and payloads:
            return torch.cat(payloads)
        return mean

    def set_global_embedding(self, z: torch.Tensor | None, round: int) -> None:
        """Use ``z`` ``[B', D]`` (no gradient) as z_global from now on; ``round`` is t of Eq. 7, the
        number of rounds completed so far. ``None`` (nothing received) turns the alignment off."""
        self._round = int(round)
        if z is None:
            self._z_global = None
            return
        if z.ndim != 2 or z.shape[1] != self.cfg.embed_dim:
            raise ValueError(f"z_global must be [B', {self.cfg.embed_dim}], got {tuple(z.shape)}")
        self._z_global = z.detach().to(dtype=torch.float32).clone()
