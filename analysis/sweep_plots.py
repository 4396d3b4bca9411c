"""The sweep report's plots across runs: accuracy vs label skew, the drop from IID, accuracy vs
realised connectivity, bytes vs accuracy. Each returns ``(png, caption)`` or ``(None, why skipped)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.claims import mean_ci
from analysis.plots import palette, plt, save
from analysis.sweep_dir import (
    IID_ALPHA,
    METRIC,
    Sweep,
    alpha_of,
    as_float,
    err,
    group_by,
    per_seed,
    series_columns,
    topology_label,
)

Plot = tuple[Path | None, str]  # (png or None, caption or the reason it was skipped)


def _alpha_series(ax: plt.Axes, names: list[str], series: dict, colours: dict) -> None:
    """One error-bar line per condition: mean kNN (95 % CI over seeds) at each α."""
    for i, name in enumerate(names):
        offset = 10 ** (0.04 * (i - (len(names) - 1) / 2))  # spread error bars of one α apart
        points = []
        by_alpha = group_by(series.get(name, []), lambda r: alpha_of(r["partition"]))
        for alpha, rows in sorted(by_alpha.items()):
            mean, low, _ = mean_ci(list(per_seed(rows, METRIC).values()))
            points.append((alpha * offset, mean, err(mean, low)))
        if points:
            xs, ys, es = zip(*points)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=colours[name], label=name)


def _alpha_axis(ax: plt.Axes, on_axis: list[dict], cols: list[str]) -> None:
    alphas = sorted({alpha_of(r["partition"]) for r in on_axis})
    ax.set_xscale("log")
    ax.set_xticks(alphas)
    ax.set_xticklabels(["IID" if a == IID_ALPHA else f"{a:g}" for a in alphas])
    ax.minorticks_off()
    ax.set(
        xlabel="Dirichlet α (label skew; IID drawn at α = 1e5)",
        ylabel="kNN accuracy (mean ± 95 % CI)",
        title="Accuracy vs label skew",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=" / ".join(cols) or None, title_fontsize=8)


def _skew_panel(side: plt.Axes, skew_series: dict, colours: dict) -> None:
    """Feature-skew runs (no α) beside the α axis: one error bar per condition."""
    skew_names = sorted(skew_series)
    for i, name in enumerate(skew_names):
        mean, low, _ = mean_ci(list(per_seed(skew_series[name], METRIC).values()))
        side.errorbar([i], [mean], yerr=[err(mean, low)], marker="s", capsize=3, color=colours[name])
    side.set_xticks(range(len(skew_names)))
    side.set_xticklabels(skew_names, rotation=45, ha="right", fontsize=7)
    side.set(title="feature skew", xlim=(-0.7, len(skew_names) - 0.3))
    side.grid(alpha=0.3)


def plot_accuracy_vs_alpha(sweep: Sweep, path: Path) -> Plot:
    rows = [r for r in sweep.complete if as_float(r.get(METRIC)) is not None]
    on_axis = [r for r in rows if alpha_of(r.get("partition", "")) is not None]
    skew = [r for r in rows if r.get("partition") == "feature_skew"]
    if len({alpha_of(r["partition"]) for r in on_axis}) < 2:
        return None, "accuracy vs α skipped: fewer than two IID / Dirichlet levels with complete runs."
    cols = series_columns(sweep, on_axis + skew, lambda r: r.get("partition"))
    series = group_by(on_axis, lambda r: sweep.condition(r, cols))
    skew_series = group_by(skew, lambda r: sweep.condition(r, cols))
    names = sorted(set(series) | set(skew_series))
    colours = dict(zip(names, palette(len(names))))
    if skew:
        fig, (ax, side) = plt.subplots(
            1, 2, figsize=(9, 4.5), sharey=True, gridspec_kw={"width_ratios": [4, 1]}
        )
    else:
        fig, ax = plt.subplots(figsize=(8, 4.5))
    _alpha_series(ax, names, series, colours)
    _alpha_axis(ax, on_axis, cols)
    if skew:
        _skew_panel(side, skew_series, colours)
    return save(fig, path), (
        "kNN accuracy against the Dirichlet α of the label split, per method, mean over "
        "seeds with 95 % CIs" + ("; feature-skew runs in the side panel." if skew else ".")
    )


def _drops(series: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """condition -> non-IID partition -> (mean drop from IID, CI half-width, seeds), paired by seed."""
    bars: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name, rows in series.items():
        by_part = group_by(rows, lambda r: r.get("partition"))
        if "iid" not in by_part:
            continue
        iid = per_seed(by_part["iid"], METRIC)
        for part, prow in by_part.items():
            if part == "iid":
                continue
            other = per_seed(prow, METRIC)
            drops = [iid[s] - other[s] for s in other if s in iid]
            if drops:
                mean, low, _ = mean_ci(drops)
                bars.setdefault(name, {})[part] = (mean, err(mean, low), len(drops))
    return bars


def plot_drop(sweep: Sweep, path: Path) -> Plot:
    rows = [r for r in sweep.complete if as_float(r.get(METRIC)) is not None]
    cols = series_columns(sweep, rows, lambda r: r.get("partition"))
    bars = _drops(group_by(rows, lambda r: sweep.condition(r, cols)))
    if not bars:
        return None, "accuracy drop skipped: no condition has both IID and non-IID runs of the same seed."
    parts = sorted(
        {p for b in bars.values() for p in b}, key=lambda p: (alpha_of(p) is None, -(alpha_of(p) or 0), p)
    )
    names = sorted(bars)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(parts) + 3), 4.5))
    for i, (name, colour) in enumerate(zip(names, palette(len(names)))):
        xs = [j + (i - (len(names) - 1) / 2) * width for j, p in enumerate(parts) if p in bars[name]]
        vals = [bars[name][p] for p in parts if p in bars[name]]
        ax.bar(
            xs,
            [v[0] for v in vals],
            width=width,
            yerr=[v[1] for v in vals],
            capsize=3,
            color=colour,
            label=name,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(parts)))
    ax.set_xticklabels(parts)
    ax.set(
        xlabel="non-IID partition",
        ylabel="kNN accuracy drop from IID (mean ± 95 % CI)",
        title="Accuracy drop from IID (paired by seed; smaller is more robust)",
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, title=" / ".join(cols) or None, title_fontsize=8)
    caption = "kNN accuracy at IID minus at each non-IID partition, paired by seed, mean with 95 % CIs."
    return save(fig, path), caption


def _connectivity_points(ax: plt.Axes, rows: list[dict], cols: list[str], sweep: Sweep, style: dict) -> None:
    """Per (topology, other condition): faint points per seed and the mean with 95 % CIs."""
    colours, markers = style["colours"], style["markers"]
    by_condition = group_by(rows, lambda r: (topology_label(r), sweep.condition(r, cols)))
    for (topo, other), group in sorted(by_condition.items()):
        x, y = per_seed(group, "average_connectivity_mean"), per_seed(group, METRIC)
        ax.scatter(
            list(x.values()), [y[s] for s in x], color=colours[topo], marker=markers[other], alpha=0.35, s=20
        )
        mx, lx, _ = mean_ci(list(x.values()))
        my, ly, _ = mean_ci(list(y.values()))
        ax.errorbar(
            [mx],
            [my],
            xerr=[err(mx, lx)],
            yerr=[err(my, ly)],
            color=colours[topo],
            marker=markers[other],
            markersize=8,
            capsize=3,
            markeredgecolor="black",
        )


def _topology_labels(ax: plt.Axes, rows: list[dict], colours: dict) -> None:
    """One label per topology, above its points."""
    for topo, group in group_by(rows, topology_label).items():
        ax.annotate(
            topo,
            (
                np.mean([float(r["average_connectivity_mean"]) for r in group]),
                max(float(r[METRIC]) for r in group),
            ),
            textcoords="offset points",
            xytext=(0, 12),
            ha="center",
            fontsize=8,
            color=colours[topo],
            fontweight="bold",
        )


def _connectivity_legend(
    ax: plt.Axes, topologies: list[str], others: list[str], cols: list[str], style: dict
):
    colours, markers = style["colours"], style["markers"]
    handles = [plt.Line2D([], [], color=colours[t], marker="o", linestyle="", label=t) for t in topologies]
    if len(others) > 1:
        handles += [
            plt.Line2D([], [], color="grey", marker=markers[o], linestyle="", label=o) for o in others
        ]
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="colour: topology" + (f"; marker: {' / '.join(cols)}" if len(others) > 1 else ""),
        title_fontsize=7,
    )


def plot_accuracy_vs_connectivity(sweep: Sweep, path: Path) -> Plot:
    rows = [
        r
        for r in sweep.complete
        if as_float(r.get(METRIC)) is not None and as_float(r.get("average_connectivity_mean")) is not None
    ]
    if not rows:
        return (
            None,
            "accuracy vs |Ā| skipped: no complete run has both kNN accuracy and average connectivity.",
        )
    cols = series_columns(sweep, rows, topology_label)
    topologies = sorted({topology_label(r) for r in rows})
    others = sorted({sweep.condition(r, cols) for r in rows})
    style = {
        "colours": dict(zip(topologies, palette(len(topologies)))),
        "markers": dict(zip(others, "os^DvP*X<>" * 3)),
    }
    fig, ax = plt.subplots(figsize=(10, 4.5))
    _connectivity_points(ax, rows, cols, sweep, style)
    _topology_labels(ax, rows, style["colours"])
    _connectivity_legend(ax, topologies, others, cols, style)
    ax.margins(y=0.12)
    ax.set(
        xlabel="realised average connectivity |Ā| (mean over rounds)",
        ylabel="kNN accuracy",
        title="Accuracy vs realised connectivity (faint: one run; solid: mean ± 95 % CI)",
    )
    ax.grid(alpha=0.3)
    return save(fig, path), (
        "kNN accuracy against the realised average closed-neighbourhood size |Ā|, one faint "
        "point per run and the mean with 95 % CIs per topology."
    )


def plot_bytes(sweep: Sweep, path: Path) -> Plot:
    rows = [
        r
        for r in sweep.complete
        if as_float(r.get(METRIC)) is not None and as_float(r.get("bytes_out_total")) is not None
    ]
    if not rows:
        return None, "bytes vs accuracy skipped: no complete run has both bytes sent and kNN accuracy."
    groups = group_by(rows, sweep.condition)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (name, group), colour in zip(sorted(groups.items()), palette(len(groups))):
        ax.scatter(
            [float(r["bytes_out_total"]) / 1e6 for r in group],
            [float(r[METRIC]) for r in group],
            color=colour,
            label=name,
            s=30,
        )
    ax.set(
        xlabel="MB sent by the swarm over the run",
        ylabel="kNN accuracy",
        title="Communication vs accuracy (one point per run)",
    )
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title=" / ".join(sweep.condition_columns),
        title_fontsize=7,
    )
    return save(fig, path), "Total bytes the swarm sent against the final kNN accuracy, one point per run."
