"""Plot helpers shared by the run report and the sweep report (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["MaxNLocator", "log_if_positive", "mark_events", "palette", "plt", "save"]


def save(fig: plt.Figure, path: Path, *, integer_x: bool = False) -> Path:
    """Lay out, write ``path`` (PNG, 100 dpi) and close the figure; ``integer_x``: whole-number x
    ticks on every axis (rounds)."""
    if integer_x:
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def mark_events(ax: plt.Axes, events: list[dict], *, label: str = "fault / restart events", y: float = 1.0):
    """A dashed red vertical line at each event's ``x`` with its ``label`` written along it."""
    for i, e in enumerate(events):
        ax.axvline(
            e["x"], color="red", linestyle="--", linewidth=1, alpha=0.7, label=label if i == 0 else None
        )
        ax.annotate(
            e["label"],
            (e["x"], y),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            color="red",
            va="top",
            ha="right",
        )


def log_if_positive(ax: plt.Axes, values: list[float]) -> None:
    """Log y scale when every plotted value is > 0 (a zero or negative value would vanish)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0:
        ax.set_yscale("log")


def palette(n: int) -> list:
    """``n`` distinct colours (tab10, or tab20 beyond ten)."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]
