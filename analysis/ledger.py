"""``dssl claims``: one ledger of the paper's claims over several studies.

Each study (a ``dssl report`` output directory) writes its own ``claims.csv``; a claim can be tested
by more than one study (claim 2 at 8 peers in the small study, at 16 peers in the paper's regime),
and some claims are tested by one only. The ledger stacks every study's rows and marks, for each
claim, the one row *of record*: the row whose decision is the strongest, in this order —

1. decisive and powered: confirmed / refuted / refuted (equivalence) with a 95 % CI half-width
   ≤ δ/2 (issue 14's bar);
2. decisive but wider than that (a CI that excludes 0 is a decision at any width);
3. anything else (underpowered, no δ, no data);

ties going to the study listed first. Nothing is recomputed here: the rows are the studies' own.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from analysis.claims import CLAIMS_CSV_FIELDS
from analysis.power import CONFIRMED, EQUIVALENT, REFUTED
from peer.rundir import CLAIMS_CSV

LEDGER_FIELDS = ("claim_id", "study", "of_record", *CLAIMS_CSV_FIELDS)
REQUIRED = ("claim", "metric", "effect", "ci_low", "ci_high", "half_width", "delta", "n_seeds", "decision")
DECISIVE = (CONFIRMED, REFUTED, EQUIVALENT)
_CLAIM_ID = re.compile(r"^\s*([0-9]+[a-z]?)\s*:")


class LedgerError(ValueError):
    """A study directory or its claims.csv that cannot enter the ledger (the message says why)."""


def claim_id(label: str) -> str:
    """``"2: Connectivity: ..."`` → ``"2"`` (a claim's label starts with its id and a colon)."""
    match = _CLAIM_ID.match(label)
    if match is None:
        raise LedgerError(f"claim label {label[:60]!r} does not start with '<id>:'")
    return match.group(1)


def _number(row: dict, column: str, where: str) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise LedgerError(f"{where}: column {column!r} is not a number: {text[:40]!r}") from None


def read_study(study_dir: str | Path) -> list[dict]:
    """The rows of ``study_dir/claims.csv``, each with ``claim_id`` and ``study`` (the directory's
    name) added; raises :class:`LedgerError` for a missing file, a missing column or a bad cell."""
    study_dir = Path(study_dir)
    path = study_dir / CLAIMS_CSV
    if not path.is_file():
        raise LedgerError(
            f"{study_dir} holds no {CLAIMS_CSV} (run `dssl report SWEEP_DIR --out {study_dir}`)"
        )
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise LedgerError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    for i, row in enumerate(rows, start=2):
        where = f"{path} line {i}"
        for column in ("effect", "ci_low", "ci_high", "half_width", "delta"):
            _number(row, column, where)
        row["claim_id"] = claim_id(row["claim"])
        row["study"] = study_dir.name
    return rows


def strength(row: dict) -> int:
    """2: decisive and powered (half-width ≤ δ/2); 1: decisive; 0: no decision."""
    if row["decision"] not in DECISIVE:
        return 0
    half, delta = _number(row, "half_width", row["study"]), _number(row, "delta", row["study"])
    return 2 if half is not None and delta is not None and half <= delta / 2 else 1


def _id_key(cid: str) -> tuple[int, str]:
    digits = re.match(r"[0-9]+", cid)
    return (int(digits.group(0)) if digits else 0, cid)


def build_ledger(study_dirs: list[str | Path]) -> list[dict]:
    """Every study's rows, grouped by claim id (1, 1b, 2, 3, ...), the row of record first
    (``of_record`` = ``yes``) and the others after it in the order the studies were given."""
    if not study_dirs:
        raise LedgerError("no study directory given")
    rows = [row for d in study_dirs for row in read_study(d)]
    ledger: list[dict] = []
    for cid in sorted({r["claim_id"] for r in rows}, key=_id_key):
        group = [r for r in rows if r["claim_id"] == cid]
        record = max(group, key=strength)  # max keeps the first of equals: the study listed first
        for r in [record] + [r for r in group if r is not record]:
            ledger.append({**r, "of_record": "yes" if r is record else "no"})
    return ledger


def write_ledger(rows: list[dict], path: str | Path) -> Path:
    """The ledger as CSV with :data:`LEDGER_FIELDS` (a study's extra columns are dropped)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LEDGER_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dssl claims",
        description="Stack the claims.csv of several study reports into one ledger that marks, per "
        "claim, the row of record (the strongest decision; ties: the study listed first).",
    )
    p.add_argument("studies", nargs="+", type=Path, help="study report directories holding claims.csv")
    p.add_argument(
        "--out", type=Path, required=True, help="the ledger CSV to write (e.g. docs/results/claims.csv)"
    )
    return p


def ledger_main(argv: list[str]) -> int:
    """``dssl claims STUDY_DIR... --out CSV``; exit status 2 for a study that cannot be read."""
    args = _parser().parse_args(argv)
    try:
        rows = build_ledger(args.studies)
    except LedgerError as exc:
        print(f"dssl claims: error: {exc}", file=sys.stderr)
        return 2
    write_ledger(rows, args.out)
    for row in rows:
        if row["of_record"] == "yes":
            print(f"claim {row['claim_id']:>3}  {row['decision']:<22} {row['study']}  (n {row['n_seeds']})")
    print(f"dssl claims: wrote {args.out} ({len(rows)} rows)")
    return 0
