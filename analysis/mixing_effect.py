"""Does the realised mixing explain the accuracy drop? What only a real swarm can show.

Across a sweep's complete runs: each non-IID run's kNN drop from the IID run of the same seed and
condition (paired as in the drop plot), against two things the swarm actually did — the mean
spectral gap of its realised mixing matrices (faults, late and refused pulls included), its
final consensus distance, and that of the evaluated encoder alone (the total can be dominated by
heads and BatchNorm statistics: :mod:`analysis.consensus_distance`). One scatter per measure,
each with Spearman's ρ and its 95 % CI (:mod:`analysis.rank_correlation`): if better mixing
protects against label skew, ρ is negative against the spectral gap and positive against the
consensus distances.
"""

from __future__ import annotations

from pathlib import Path

from analysis.plots import palette, plt, save
from analysis.rank_correlation import Correlation, spearman
from analysis.sweep_dir import METRIC, Sweep, as_float, group_by, per_seed, series_columns

MEASURES = {
    "spectral_gap_mean": "realised spectral gap (mean over rounds)",
    "consensus_distance": "final consensus distance (1/N) Σ‖θ_i − θ̄‖²",
    "encoder_consensus_distance": "final consensus distance of the encoder alone",
}


def drop_points(sweep: Sweep) -> list[dict]:
    """One point per non-IID complete run that has a same-seed IID run of its condition:
    {run, condition, drop} and one value per entry of ``MEASURES``."""
    rows = [r for r in sweep.complete if as_float(r.get(METRIC)) is not None]
    cols = series_columns(sweep, rows, lambda r: r.get("partition"))
    points = []
    for name, group in group_by(rows, lambda r: sweep.condition(r, cols)).items():
        iid = per_seed([r for r in group if r.get("partition") == "iid"], METRIC)
        for r in group:
            seed = r.get("seed", "")
            if r.get("partition") == "iid" or seed not in iid:
                continue
            point = {"run": r.get("run"), "condition": name, "drop": iid[seed] - float(r[METRIC])}
            points.append(point | {m: as_float(r.get(m)) for m in MEASURES})
    return points


def correlations(points: list[dict]) -> dict[str, Correlation]:
    """Spearman's ρ of the drop against each mixing measure (runs lacking the measure left out)."""
    out = {}
    for measure in MEASURES:
        pairs = [(p[measure], p["drop"]) for p in points if p[measure] is not None]
        out[measure] = spearman([a for a, _ in pairs], [b for _, b in pairs])
    return out


def plot_drop_vs_mixing(sweep: Sweep, path: Path) -> tuple[Path | None, str]:
    """One scatter per entry of ``MEASURES`` (drop vs spectral gap, vs consensus distances),
    coloured by condition."""
    points = drop_points(sweep)
    if len(points) < 3:
        return None, "drop vs realised mixing skipped: fewer than 3 non-IID runs with a same-seed IID run."
    found = correlations(points)
    conditions = sorted({p["condition"] for p in points})
    colours = dict(zip(conditions, palette(len(conditions))))
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(5.5 * len(MEASURES), 4.5))
    for ax, (measure, label) in zip(axes, MEASURES.items()):
        for name in conditions:
            mine = [p for p in points if p["condition"] == name and p[measure] is not None]
            ax.scatter([p[measure] for p in mine], [p["drop"] for p in mine], color=colours[name], label=name)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(xlabel=label, ylabel="kNN drop from IID (same seed)", title=found[measure].describe())
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    lines = "; ".join(f"{m}: {c.describe()}" for m, c in found.items())
    caption = (
        f"Accuracy drop from IID against the realised mixing, one point per non-IID run. Spearman {lines}."
    )
    return save(fig, path), caption
