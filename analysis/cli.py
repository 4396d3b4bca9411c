"""``dssl report DIR``: one command line for both reports; it reads files and writes the report.

A run directory (``peers/``) gets :func:`analysis.run_report.write_report`; a sweep directory
(``results.csv``) gets :func:`analysis.sweep_report.write_study_report`, optionally into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.earlier_results import IncludeError
from analysis.run_report import write_report
from analysis.sweep_report import write_study_report
from peer.rundir import CLAIMS_CSV, PEERS_DIR, RESULTS_CSV


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dssl report",
        description="Markdown + PNG report of a swarm run directory or of a sweep directory.",
    )
    p.add_argument(
        "directory",
        type=Path,
        help="a run directory (runs/<ts>-<name>, has peers/) or a sweep directory (has results.csv)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="sweep directories only: write the report, plots, claims.csv and copies of grid.yaml + "
        "results.csv here (e.g. docs/results); default: the sweep directory",
    )
    p.add_argument(
        "--include",
        type=Path,
        action="append",
        default=[],
        metavar="RESULTS_CSV",
        help="sweep directories only: the results.csv of an earlier report of the same grid (e.g. "
        "docs/results/feature16/results.csv); its complete runs that this sweep has not completed "
        "count too (repeatable)",
    )
    return p


def _error(message: str) -> int:
    print(f"dssl report: error: {message}", file=sys.stderr)
    return 2


def _sweep_report(sweep_dir: Path, out: Path | None, include: list[Path]) -> int:
    try:
        report = write_study_report(sweep_dir, out, include)
    except IncludeError as exc:
        return _error(str(exc))
    claims = report.parent / CLAIMS_CSV
    pngs = len(list(report.parent.glob("report_*.png")))
    shown = f"; claims: {claims}" if claims.is_file() else ""
    print(f"dssl report: wrote {report} and {pngs} plots{shown}")
    return 0


def _run_report(run_dir: Path) -> int:
    report = write_report(run_dir)
    print(f"dssl report: wrote {report} and {len(list(run_dir.glob('report_*.png')))} plots")
    return 0


def report_main(argv: list[str]) -> int:
    """``dssl report RUN_DIR | SWEEP_DIR [--out DIR]``; exit status 2 for anything else."""
    args = _parser().parse_args(argv)
    if (args.directory / RESULTS_CSV).is_file():
        return _sweep_report(args.directory, args.out, args.include)
    if not (args.directory / PEERS_DIR).is_dir():
        return _error(
            f"{args.directory} is not a run directory (no {PEERS_DIR}/) "
            f"and not a sweep directory (no {RESULTS_CSV})"
        )
    if args.out is not None:
        return _error("--out applies to a sweep directory only; a run's report goes into the run directory")
    if args.include:
        return _error("--include applies to a sweep directory only")
    return _run_report(args.directory)
