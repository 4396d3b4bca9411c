"""Spearman's rank correlation with a 95 % confidence interval.

ρ is Pearson's correlation of the ranks (ties share their mean rank). Its CI comes from Fisher's
z = atanh(ρ) with the standard error of Bonett and Wright ("Sample size requirements for estimating
Pearson, Kendall and Spearman correlations", Psychometrika 2000): sqrt((1 + ρ²/2) / (n − 3)), which
needs n ≥ 4. Used to relate a sweep's accuracy drops to its realised mixing (analysis/mixing_effect.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile
_EDGE = 1 - 1e-12  # |ρ| = 1 has no finite z: the CI collapses onto it


@dataclass(frozen=True)
class Correlation:
    rho: float | None  # None with fewer than 3 points or a constant variable
    ci_low: float | None  # None with fewer than 4 points
    ci_high: float | None
    n: int

    def describe(self) -> str:
        if self.rho is None:
            return f"ρ not defined (n = {self.n})"
        ci = "no CI (n < 4)" if self.ci_low is None else f"95 % CI [{self.ci_low:+.2f}, {self.ci_high:+.2f}]"
        return f"ρ = {self.rho:+.2f}, {ci}, n = {self.n}"


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values get the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ranked = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranked[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return ranked


def spearman(x: list[float], y: list[float]) -> Correlation:
    """Spearman's ρ of paired values (pairs with a non-finite member dropped) and its 95 % CI."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n < 3:
        return Correlation(None, None, None, n)
    rx, ry = (ranks(np.array(v, dtype=float)) for v in zip(*pairs))
    if rx.std() == 0 or ry.std() == 0:
        return Correlation(None, None, None, n)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    if n < 4:
        return Correlation(rho, None, None, n)
    z = math.atanh(max(-_EDGE, min(_EDGE, rho)))
    half = Z_95 * math.sqrt((1 + rho**2 / 2) / (n - 3))
    return Correlation(rho, math.tanh(z - half), math.tanh(z + half), n)
