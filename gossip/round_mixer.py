"""RoundMixer: one round's weighted average (or trimmed mean), mixed while the neighbours' chunks arrive."""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch

from gossip import fused_mix, mixing, robust
from protocol.assembler import ReceivedSnapshot
from protocol.frames import CorruptStream

# Elements per block of the mixing loops: the float32 blocks involved (own, neighbours, out, scratch)
# stay in a core's L2 cache (4 MiB here), so screening, mixing and the distance cost about one pass
# over memory, not five. Measured on 44.6 MiB, one thread: 2^20 -> 2^16 elements cut 21 to 18 ms.
_BLOCK = 1 << 16
# The compiled one-pass kernel (gossip.fused_mix) reuses nothing across passes: larger blocks, fewer calls.
_NATIVE_BLOCK = 1 << 18


class RoundMixer:
    """θ_i ← W_ii θ_i + Σ_j W_ij θ_j computed while the neighbours' chunks arrive.

    Each neighbour's verified prefix grows as its stream comes in; the prefix that *every*
    still-active neighbour has delivered is mixed at once (cache-hot, overlapping the transfers) into
    a new buffer. When a neighbour fails after part of its prefix was mixed, its weight is handed back
    to the self-weight and that part is re-mixed without it, exactly what ``mixing.renormalise``
    prescribes (bit-for-bit the mix it would have been), and the rest is mixed without it.
    ``finish`` mixes whatever is left; until then the buffer is private, so callers only ever see a
    fully mixed result.
    Before a block is mixed, every active neighbour's part of it is screened by the
    ``robust.AcceptancePolicy`` (non-finite values, norm / distance jumps): a neighbour that fails is
    *rejected* — dropped like one that failed mid-stream — so a NaN never reaches ``out``. With
    ``trim_fraction`` set, blocks are only screened while arriving and ``finish`` computes the
    coordinate-wise trimmed mean over the closed neighbourhood (it needs every buffer at once).
    Used on one thread at a time (the event loop, then ``finish`` in a worker).
    """

    def __init__(
        self,
        own: torch.Tensor,
        self_weight: float,
        weights: Mapping[str, float],
        *,
        out: torch.Tensor | None = None,
        policy: robust.AcceptancePolicy | None = None,
        trim_fraction: float | None = None,
    ):
        """``out``: a fresh float32 buffer shaped like ``own`` to mix into (default: allocate one);
        ``policy``: screens neighbour blocks (default: non-finite check only); ``trim_fraction``:
        aggregate by trimmed mean instead of the weighted average."""
        self.policy = policy or robust.AcceptancePolicy(robust.RobustConfig(max_norm_ratio=None), 0.0)
        self.trim_fraction = trim_fraction
        self.rejected: dict[str, str] = {}  # neighbour -> why its (verified) snapshot was not mixed
        self.own = own
        self.out = torch.empty_like(own) if out is None else out
        self._scratch = torch.empty(min(_BLOCK, own.numel()), dtype=torch.float32)
        self.self_weight = self_weight  # realised W_ii: grows as neighbours drop out
        self.weights = dict(weights)  # nominal W_ij
        self.failed: set[str] = set()
        self.params: dict[str, torch.Tensor] = {}  # neighbour params (wire dtype), views of receive buffers
        self.ready = {peer: 0 for peer in weights}  # elements of each neighbour that are final
        self.mixed = 0  # out[:mixed] is mixed (trimmed mean: screened) over the active neighbours
        self.distance = 0.0  # ||θ_i - mean of active neighbours||² over [:mixed]
        self.seconds = 0.0  # time spent mixing on the event loop (overlapped with transfers)
        self._native = fused_mix.kernel()  # None: torch ops only

    def active(self) -> list[str]:
        return [peer for peer in sorted(self.weights) if peer not in self.failed]

    def attach(self, peer: str, params: torch.Tensor) -> None:
        """A neighbour's header was accepted; ``params`` will fill in as chunks arrive."""
        if params.shape != self.own.shape:
            raise CorruptStream(
                f"params shape {tuple(params.shape)} differs from ours {tuple(self.own.shape)}"
            )
        self.params[peer] = params

    def progress(self, peer: str, received_bytes: int) -> None:
        params = self.params[peer]
        self.ready[peer] = min(received_bytes // params.element_size(), params.numel())
        self._advance()

    def drop(self, peer: str) -> None:
        """``peer`` will not deliver: return its weight to self over the mixed prefix, go on without it."""
        if peer in self.failed:
            return
        self._undo(peer)
        self._advance()

    def _undo(self, peer: str) -> None:
        """Give ``peer``'s weight to self and re-mix the prefix it contributed to without it (a prefix
        is only mixed once everyone has it, after screening). Re-mixing costs the same one pass as
        subtracting its share would, and leaves ``out`` bit-for-bit equal to a mix that never had it."""
        start = time.perf_counter()
        self.failed.add(peer)
        self.self_weight += self.weights[peer]
        if self.trim_fraction is None:
            active = self.active()
            weights = [self.self_weight] + [self.weights[p] for p in active]
            self.distance = 0.0
            fused = self._fusable(active, weights)
            if self._native_path(fused):
                for block in _blocks(0, self.mixed, _NATIVE_BLOCK):
                    self.distance += self._mix_native(block, active, weights)[1]
            else:
                for block in _blocks(0, self.mixed):
                    self.distance += self._mix_block(block, active, weights, fused)
        self.seconds += time.perf_counter() - start

    def _reject(self, peer: str, reason: str) -> None:
        """A delivered (part of a) snapshot failed the acceptance rules: drop it, remember why."""
        self.rejected[peer] = reason
        self._undo(peer)

    def _advance(self) -> None:
        """Screen and mix every block all active neighbours have delivered; restart after a rejection."""
        while True:
            active = self.active()
            frontier = min((self.ready[peer] for peer in active), default=self.own.numel())
            if frontier <= self.mixed:
                return
            start = time.perf_counter()
            weights = [self.self_weight] + [self.weights[peer] for peer in active]
            rejected = False
            fused = self._fusable(active, weights)
            native = self._native_path(fused)
            for block in _blocks(self.mixed, frontier, _NATIVE_BLOCK if native else _BLOCK):
                if native:
                    norms, distance = self._mix_native(block, active, weights)
                    rejected = self._rejects(block, active, norms)
                else:
                    rejected = self._rejects(block, active)
                    if not rejected and self.trim_fraction is None:
                        distance = self._mix_block(block, active, weights, fused)
                if rejected:
                    break  # (a native block's out is past ``mixed``: private, mixed again later)
                if self.trim_fraction is None:
                    self.distance += distance
                self.mixed = block.stop
            self.seconds += time.perf_counter() - start
            if not rejected:
                return

    def _rejects(self, block: slice, active: list[str], norms: list[float] | None = None) -> bool:
        """Screen every active neighbour's ``block`` (``norms``: their ||·||², when the kernel computed
        them); reject each that fails. True when any did."""
        rejected = False
        for i, peer in enumerate(active):
            if norms is None:
                values = self.params[peer][block]
                reason = self.policy.check_block(peer, block.start, self.own[block], values, self._scratch)
            else:
                reason = self.policy.check_norm(peer, block.start, block.stop - block.start, norms[i])
            if reason is not None:
                self._reject(peer, reason)
                rejected = True
        return rejected

    def _native_path(self, fused: bool) -> bool:
        """Mix (and screen) with the compiled kernel: equal weights, float32, no per-neighbour distance
        bound, weighted aggregation."""
        return (
            fused
            and self._native is not None
            and self.trim_fraction is None
            and not self.policy.needs_distance
        )

    def _mix_native(self, block: slice, active: list[str], weights: list[float]) -> tuple[list[float], float]:
        """One pass of the compiled kernel over ``block``: ([||θ_j||²], ||θ_i − mean||²)."""
        theirs = [self.params[peer][block] for peer in active]
        return self._native(self.own[block], theirs, -sum(weights[1:]), self.out[block])

    def _mix_block(self, block: slice, active: list[str], weights: list[float], fused: bool) -> float:
        """Mix ``block`` into ``out``; return its share of ||θ_i - mean of active||².

        When every active neighbour has the same weight w and the row sums to 1 (Metropolis weights on
        a regular graph, uniform weights; ``fused``, from ``_fusable``), the mix is
        θ_i - k·w·(θ_i - mean): one kernel on the difference the distance needs anyway, so k + 2
        kernels per block instead of 2k + 2."""
        if not fused:
            theirs = [self.params[peer][block] for peer in active]
            mixing.weighted_average([self.own[block]] + theirs, weights, out=self.out[block])
            return self._distance(block, active)
        diff = self._difference(block, active)
        torch.add(self.own[block], diff, alpha=-sum(weights[1:]), out=self.out[block])
        return float(torch.dot(diff, diff))

    def _fusable(self, active: list[str], weights: list[float]) -> bool:
        """float32 everywhere, equal neighbour weights, a stochastic row, ``out`` aliasing no input."""
        if not active or self.out.dtype != torch.float32 or self.own.dtype != torch.float32:
            return False
        if any(peer not in self.params or self.params[peer].dtype != torch.float32 for peer in active):
            return False  # (a neighbour not attached yet has delivered nothing to mix)
        if any(w != weights[1] for w in weights[2:]) or abs(sum(weights) - 1.0) > 1e-9:
            return False
        inputs = [self.own] + [self.params[p] for p in active]
        return not any(mixing.shares_memory(self.out, t) for t in inputs)

    def _difference(self, block: slice, active: list[str]) -> torch.Tensor:
        """θ_i - mean of active over ``block``, in the reused scratch block (k kernels)."""
        scale = 1.0 / len(active)
        diff = self._scratch[: block.stop - block.start]
        torch.sub(self.own[block], self.params[active[0]][block], alpha=scale, out=diff)
        for peer in active[1:]:
            diff.sub_(self.params[peer][block], alpha=scale)
        return diff

    def _distance(self, block: slice, active: list[str]) -> float:
        """||θ_i - mean of active||² over ``block``, in a reused scratch block (k + 1 kernels)."""
        if not active:
            return 0.0
        diff = self._difference(block, active)
        return float(torch.dot(diff, diff))

    def remaining(self) -> int:
        """Elements not mixed yet."""
        return self.own.numel() - self.mixed

    def finish(self) -> tuple[torch.Tensor, float, dict[str, float], float]:
        """(mixed params, realised W_ii, realised {j: W_ij}, distance) once every pull has ended."""
        for peer in self.active():
            if self.ready[peer] < self.own.numel():
                raise RuntimeError(f"neighbour {peer} neither completed nor was dropped")
        self._advance()  # the rest (everything, when no neighbour answered)
        for peer in self.active():
            reason = self.policy.check_complete(peer)
            if reason is not None:
                self._reject(peer, reason)
        if self.trim_fraction is not None:
            return self._finish_trimmed()
        self_weight, kept = mixing.renormalise(
            self.self_weight - sum(self.weights[p] for p in self.failed), self.weights, self.active()
        )
        return self.out, self_weight, kept, self.distance

    def _finish_trimmed(self) -> tuple[torch.Tensor, float, dict[str, float], float]:
        """Trimmed mean over ourselves and the accepted neighbours; reported weights are uniform."""
        active = self.active()
        robust.trimmed_mean([self.own] + [self.params[p] for p in active], self.trim_fraction, out=self.out)
        self.distance = sum(self._distance(block, active) for block in _blocks(0, self.own.numel()))
        share = 1.0 / (len(active) + 1)
        return self.out, share, {peer: share for peer in active}, self.distance


def _blocks(start: int, stop: int, size: int = _BLOCK):
    for lo in range(start, stop, size):
        yield slice(lo, min(lo + size, stop))


def neighbourhood_embeddings(
    own: torch.Tensor | None, answered: Mapping[str, ReceivedSnapshot]
) -> tuple[torch.Tensor, ...]:
    """The closed neighbourhood's embeddings (ours first, then those who answered, sorted by peer id):
    those who published one, of the same shape as the first, in float32."""
    published = [e for e in [own] + [answered[j].embedding for j in sorted(answered)] if e is not None]
    return tuple(e.float() for e in published if e.shape == published[0].shape)
