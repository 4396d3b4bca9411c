"""``dssl report <sweep dir>``: the robustness study's Markdown report with PNG plots.

Input: a sweep directory written by ``dssl sweep`` — ``grid.yaml`` (maybe with ``claims:``),
``results.csv`` (one row per run: status, seed, the grid's axis labels, the resolved objective /
partition / topology / faults and the run's summary figures) and per run the swarm run directory
(``rounds.csv``, ``diagnostics.json``, ``timeline.jsonl``). Only ``complete`` runs enter statistics.

Output, in the sweep dir: ``report.md``, ``report_*.png`` and (when the grid has claims)
``claims.csv``, each claim with its decision and power line (:mod:`analysis.power`), and
``claims_per_seed.csv``, each paired seed's effect (:mod:`analysis.claim_seeds`). Plots
(:mod:`analysis.sweep_plots`, :mod:`analysis.round_plots`), each skipped
with a one-line reason when the sweep has no data for it:

1. kNN accuracy vs Dirichlet α per method (IID drawn at α = 1e5, feature skew in a side panel);
2. the accuracy drop from IID per method and non-IID partition (paired by seed);
3. accuracy vs realised average connectivity |Ā| per topology;
4. consensus (mean neighbour distance, exact consensus distance) and spectral gap over rounds;
5. bytes sent vs accuracy, one point per run;
5b. each non-IID run's drop from IID against its realised spectral gap and consensus distance, with
   Spearman's ρ and its 95 % CI (:mod:`analysis.mixing_effect`);
6. per fault condition: its spectral gap, consensus and per-peer kNN over rounds with the fault
   events marked, next to the same seed's fault-free run.

Means carry 95 % Student-t confidence intervals over seeds (:func:`analysis.claims.mean_ci`). When
the sweep evaluated baselines (``baselines: true``), a table per run sets the swarm against its peers
trained alone, θ̄ and the centralised model.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from analysis.claim_seeds import CLAIM_SEEDS_CSV, claim_seeds_markdown, write_claim_seeds_csv
from analysis.claims import ClaimResult, complete_rows, evaluate_claims, load_claims, write_claims_csv
from analysis.earlier_results import write_rows
from analysis.mixing_effect import plot_drop_vs_mixing
from analysis.power import describe_protocol
from analysis.round_plots import plot_consensus, plot_faults, plot_learning_curves
from analysis.sweep_dir import METRIC, Sweep, as_float, group_by, load_sweep, per_seed, pm
from analysis.sweep_plots import (
    Plot,
    plot_accuracy_vs_alpha,
    plot_accuracy_vs_connectivity,
    plot_bytes,
    plot_drop,
)
from peer.rundir import CLAIMS_CSV, GRID_FILE, REPORT_FILE, RESULTS_CSV


def _summary(sweep: Sweep, out: Path) -> list[str]:
    statuses = group_by(sweep.rows, lambda r: r.get("status") or "unknown")
    seeds = sorted(
        {r.get("seed", "") for r in sweep.complete}, key=lambda s: (as_float(s) is None, as_float(s) or 0, s)
    )
    conditions = {sweep.condition(r) for r in sweep.rows}
    excluded = len(sweep.rows) - len(sweep.complete)
    lines = [
        "## Sweep",
        "",
        (
            f"* runs: {len(sweep.rows)} ({', '.join(f'{k} {len(v)}' for k, v in sorted(statuses.items()))}); "
            f"{excluded} not complete and excluded from every statistic"
        ),
        f"* seeds with complete runs: {', '.join(seeds) or 'none'}; conditions: {len(conditions)}",
    ]
    walls = [w for w in (as_float(r.get("wall_s")) for r in sweep.rows) if w is not None]
    if walls:
        lines.append(
            f"* wall time of the runs, summed: {sum(walls) / 60:.1f} min (one after another on one host)"
        )
    for axis in sweep.axes:
        values = list(dict.fromkeys(r.get(axis, "") for r in sweep.rows))
        lines.append(f"* axis `{axis}`: {', '.join(values)}")
    if (out / GRID_FILE).is_file():
        lines.append(f"* grid: [{GRID_FILE}]({GRID_FILE}); every run: [{RESULTS_CSV}]({RESULTS_CSV})")
    return lines + _imported_lines(sweep) + [""]


def _imported_lines(sweep: Sweep) -> list[str]:
    """Where the runs merged from earlier results came from: they count in every statistic and claim,
    but their run directories are elsewhere, so no per-round plot shows them."""
    sources = group_by(list(sweep.imported), lambda name: sweep.imported[name])
    return [
        f"* {len(names)} complete runs taken from earlier results `{source}` (seeds "
        f"{_seed_span(sweep, names)}): in every statistic and claim, not in the per-round plots "
        f"(their run directories are not in this sweep directory){_unmeasured_text(sweep, source)}"
        for source, names in sources.items()
    ] + [
        f"* {len(names)} complete runs of `{source}` are not runs of this grid (e.g. `{names[0]}`): left out"
        for source, names in sweep.left_out.items()
    ]


def _unmeasured_text(sweep: Sweep, source: Path) -> str:
    """The figure columns an earlier file predates (blank for its runs), as a clause of its line."""
    missing = sweep.unmeasured.get(source)
    if not missing:
        return ""
    names = ", ".join(f"`{m}`" for m in missing)
    return f"; written before results.csv had {names}, so those cells are blank for its runs"


def _seed_span(sweep: Sweep, names: list[str]) -> str:
    """The seeds of these runs, consecutive integers as ranges ("0-20, 23")."""
    chosen = set(names)
    texts = {r.get("seed", "") for r in sweep.rows if r.get("run") in chosen}
    if not all(t.isdigit() for t in texts):
        return ", ".join(sorted(texts))
    spans: list[list[int]] = []
    for seed in sorted(int(t) for t in texts):
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def _results_table(sweep: Sweep) -> list[str]:
    columns = [
        ("kNN acc", METRIC, ".3g", 1),
        ("linear acc", "linear_mean", ".3g", 1),
        ("\\|Ā\\|", "average_connectivity_mean", ".3g", 1),
        ("spectral gap", "spectral_gap_mean", ".3g", 1),
        ("consensus dist.", "consensus_distance", ".3g", 1),
        ("encoder dist.", "encoder_consensus_distance", ".3g", 1),
        ("kNN gain, last ¼ (pts)", "knn_last_quarter_gain", ".2g", 100),
        ("MB sent", "bytes_out_total", ".4g", 1e-6),
        ("wall s", "wall_s", ".4g", 1),
    ]
    head = "| condition | complete / runs | " + " | ".join(c[0] for c in columns) + " |"
    lines = [
        "## Results per condition",
        "",
        (
            f"Mean ± 95 % CI half-width over seeds (Student t); only complete runs. Condition = "
            f"{' / '.join(sweep.condition_columns)}."
        ),
        "",
        head,
        "|" + "---|" * (len(columns) + 2),
    ]
    all_groups = group_by(sweep.rows, sweep.condition)
    for name, group in sorted(all_groups.items()):
        done = complete_rows(group)
        cells = [
            pm([v * scale for v in per_seed(done, col).values()], spec) for _, col, spec, scale in columns
        ]
        lines.append(f"| {name} | {len(done)} / {len(group)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _pays_table(sweep: Sweep) -> list[str]:
    """Per complete run with baselines: swarm vs its peers alone, θ̄ and the centralised ceiling."""
    rows = [r for r in sweep.complete if as_float(r.get("local_only_knn")) is not None]
    if not rows:
        return []
    lines = [
        "## Does the swarm pay?",
        "",
        "Per run: the mean over peers of kNN / linear accuracy in the swarm and trained alone on the same "
        "share, seed and steps (local-only); the consensus model θ̄; one model on the union of the shares "
        "(centralised). Gain = swarm − local-only, paired over peers, with its 95 % CI.",
        "",
        "| run | swarm kNN | local-only kNN | θ̄ kNN | centralised kNN | gain kNN [95 % CI] "
        "| gain linear [95 % CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            _num(as_float(r.get(c))) for c in (METRIC, "local_only_knn", "consensus_knn", "centralised_knn")
        ]
        gains = [_gain_cell(r, m) for m in ("knn", "linear")]
        lines.append(f"| {r.get('run')} | " + " | ".join(cells + gains) + " |")
    return lines + [""]


def _gain_cell(row: dict, metric: str) -> str:
    low, high = (as_float(row.get(f"gain_{metric}_ci_{end}")) for end in ("low", "high"))
    return f"{_num(as_float(row.get(f'gain_{metric}')))} {_ci(low, high)}"


def _ci(low: float | None, high: float | None) -> str:
    return "n < 2: no CI" if low is None else f"[{low:.3g}, {high:.3g}]"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _claim_row(r: ClaimResult) -> str:
    """One claims-table row: the protocol, the effect with its CI, δ, seeds, monotone, decision."""
    mono = "-"
    if r.monotone is not None:
        steps = " → ".join(f"{k} {_num(v)}" for k, v in r.monotone.means.items())
        mono = f"{'holds' if r.monotone.holds else 'violated'}: {steps}"
    v = r.assessment
    sides = (
        f"{r.a.description}: {_num(r.a.mean)} {_ci(r.a.low, r.a.high)}; "
        f"{r.b.description}: {_num(r.b.mean)} {_ci(r.b.low, r.b.high)}"
    )
    return (
        f"| {r.claim.label} | {describe_protocol(r.claim.metric)} | {sides} "
        f"| {_num(v.effect)} {_ci(v.low, v.high)} ({'paired' if r.pairing == 'paired' else 'Welch'}) "
        f"| {_num(v.half_width)} | {_num(r.claim.delta)} | {r.seeds} | {mono} | **{v.decision}** "
        f"| {'yes' if r.reproduced else 'no'} |"
    )


def claims_markdown(results: list[ClaimResult]) -> list[str]:
    """The claims table: the protocol, both sides, the effect in the paper's direction with its CI,
    δ, the decision (analysis.power.decide) and the power line of each claim."""
    lines = [
        "## Claims",
        "",
        (
            "effect = the per-seed difference signed in the paper's direction (> 0: as the paper "
            "claims), 95 % Student-t CI. Decision: **confirmed** = CI above 0; **refuted** = CI "
            "below 0; **refuted (equivalence)** = CI inside ±δ (no effect as large as δ); "
            "**underpowered** = none of these (half-width > δ/2). reproduced = the older verdict: "
            "means in order, CI excludes 0 and the monotone order (if any) holds on the means. "
            "Raw numbers: [claims.csv](claims.csv)."
        ),
        "",
        "| claim | protocol | a; b (mean [95 % CI]) | effect [95 % CI] | half-width | δ | seeds "
        "| monotone | decision | reproduced |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_claim_row(r) for r in results]
    lines += ["", "Power (half-width against δ/2, and the seeds the observed spread needs):", ""]
    lines += [f"* claim {r.claim.id}: {r.assessment.power}" for r in results]
    notes = [f"* claim {r.claim.id}: {'; '.join(r.reasons)}" for r in results if r.reasons]
    return lines + ([""] + notes if notes else []) + [""]


def _runs_table(sweep: Sweep, out: Path) -> list[str]:
    lines = ["## Runs", "", "| run | status | seed | condition | run dir |", "|---|---|---|---|---|"]
    for r in sweep.rows:
        run = sweep.run_dir(r)
        link = f"from `{sweep.imported[r.get('run')]}`" if r.get("run") in sweep.imported else "-"
        if run is not None:
            rel = os.path.relpath(run, out)
            link = f"[{rel}]({rel})" + (
                f" ([report]({rel}/{REPORT_FILE}))" if (run / REPORT_FILE).is_file() else ""
            )
        lines.append(
            f"| {r.get('run', '')} | {r.get('status', '')} | {r.get('seed', '')} | {sweep.condition(r)} "
            f"| {link} |"
        )
    return lines + [""]


def _markdown(sweep: Sweep, plots: list[Plot], claims: list[ClaimResult] | None, out: Path) -> str:
    lines = [f"# Robustness study: {sweep.path.resolve().name}", ""]
    if sweep.grid.get("description"):
        lines += [str(sweep.grid["description"]).strip(), ""]
    lines += _summary(sweep, out) + _results_table(sweep) + _pays_table(sweep)
    if claims:
        lines += claims_markdown(claims) + claim_seeds_markdown(claims)
    lines += ["## Plots", ""]
    for png, caption in plots:
        if png is not None:
            lines += [f"![{png.stem}]({png.name})", "", caption, ""]
    skipped = [caption for png, caption in plots if png is None]
    if skipped:
        lines += ["Not drawn:", ""] + [f"* {c}" for c in skipped] + [""]
    lines += _runs_table(sweep, out)
    return "\n".join(lines)


def _copy_inputs(sweep: Sweep, out: Path) -> None:
    """``grid.yaml`` and ``results.csv`` beside a report written outside the sweep directory; the
    results with the runs merged from earlier results.csv files, so that a later report can
    ``--include`` this copy in turn."""
    if out.resolve() == sweep.path.resolve():
        return  # the sweep's own results.csv stays what dssl sweep wrote
    if (sweep.path / GRID_FILE).is_file():
        shutil.copyfile(sweep.path / GRID_FILE, out / GRID_FILE)
    if sweep.imported:
        write_rows(out / RESULTS_CSV, sweep.rows, sweep.fields)
    else:
        shutil.copyfile(sweep.path / RESULTS_CSV, out / RESULTS_CSV)


def write_study_report(
    sweep_dir: str | Path, out_dir: str | Path | None = None, include: Sequence[Path] = ()
) -> Path:
    """Draw the plots, evaluate the grid's claims (writing claims.csv) and write ``report.md``.

    Everything goes into ``out_dir`` (default: the sweep directory); a separate ``out_dir`` (e.g.
    ``docs/results``) also gets copies of ``grid.yaml`` and ``results.csv`` so that the report
    stands on its own, and its run links point back into the sweep directory. ``include``: earlier
    results.csv files whose complete runs this sweep lacks (:mod:`analysis.earlier_results`)."""
    sweep = load_sweep(sweep_dir, include)
    out = Path(out_dir) if out_dir is not None else sweep.path
    out.mkdir(parents=True, exist_ok=True)
    _copy_inputs(sweep, out)
    for old in out.glob("report_*.png"):
        old.unlink()  # a plot skipped this time must not survive from an earlier report
    plots: list[Plot] = [
        plot_accuracy_vs_alpha(sweep, out / "report_accuracy_alpha.png"),
        plot_drop(sweep, out / "report_drop.png"),
        plot_accuracy_vs_connectivity(sweep, out / "report_connectivity.png"),
        plot_consensus(sweep, out / "report_consensus.png"),
        plot_learning_curves(sweep, out / "report_learning_curves.png"),
        plot_bytes(sweep, out / "report_bytes.png"),
        plot_drop_vs_mixing(sweep, out / "report_drop_vs_mixing.png"),
        *plot_faults(sweep, out),
    ]
    claims = load_claims(sweep.path / GRID_FILE) if (sweep.path / GRID_FILE).is_file() else []
    results = evaluate_claims(sweep.rows, claims) if claims else None
    if results:
        write_claims_csv(results, out / CLAIMS_CSV)
        write_claim_seeds_csv(results, out / CLAIM_SEEDS_CSV)
    else:
        for stale in (CLAIMS_CSV, CLAIM_SEEDS_CSV):  # the grid no longer has claims: no stale verdicts
            (out / stale).unlink(missing_ok=True)
    report = out / REPORT_FILE
    report.write_text(_markdown(sweep, plots, results, out), encoding="utf-8")
    return report
