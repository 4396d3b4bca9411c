"""The claims ledger: several studies' claims.csv stacked, one row of record per claim."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from analysis.claims import CLAIMS_CSV_FIELDS
from analysis.ledger import LEDGER_FIELDS, LedgerError, build_ledger, claim_id, ledger_main


def claim_row(label: str, decision: str, half_width: float, delta: float = 0.02, n: int = 5) -> dict:
    row = dict.fromkeys(CLAIMS_CSV_FIELDS, "")
    row.update(
        claim=label,
        metric="knn_mean",
        effect="0.001",
        ci_low=str(-half_width),
        ci_high=str(half_width),
        half_width=str(half_width),
        delta=str(delta),
        n_seeds=str(n),
        decision=decision,
    )
    return row


def write_study(root: Path, name: str, rows: list[dict]) -> Path:
    study = root / name
    study.mkdir()
    with (study / "claims.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CLAIMS_CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return study


def test_the_strongest_decision_is_of_record_whatever_the_order(tmp_path):
    # prepare: claim 2 underpowered in a small study, decided (equivalence, powered) in a large one
    small = write_study(
        tmp_path,
        "small",
        [
            claim_row("2: connectivity, 8 peers", "underpowered", 0.04, delta=0.03, n=3),
            claim_row("1b: feature skew", "underpowered", 0.05, n=3),
        ],
    )
    large = write_study(
        tmp_path, "large", [claim_row("2: connectivity, 16 peers", "refuted (equivalence)", 0.012, 0.03, 6)]
    )
    # execute
    ledger = build_ledger([small, large])
    # assert: claims in id order; claim 2's record is the large study's row, the other row follows
    assert [(r["claim_id"], r["study"], r["of_record"]) for r in ledger] == [
        ("1b", "small", "yes"),
        ("2", "large", "yes"),
        ("2", "small", "no"),
    ]


def test_powered_beats_decisive_but_wide_and_ties_go_to_the_first_study(tmp_path):
    wide = write_study(tmp_path, "wide", [claim_row("3: MAR", "refuted", 0.05)])  # decisive, 0.05 > δ/2
    narrow = write_study(tmp_path, "narrow", [claim_row("3: MAR", "refuted", 0.008)])
    twin = write_study(tmp_path, "twin", [claim_row("3: MAR", "refuted", 0.008)])
    records = [r["study"] for r in build_ledger([wide, narrow, twin]) if r["of_record"] == "yes"]
    assert records == ["narrow"]


def test_claim_ids_sort_naturally_and_a_label_without_an_id_is_an_error():
    assert claim_id("10: late") == "10" and claim_id(" 1b: skew") == "1b"
    with pytest.raises(LedgerError, match="does not start with"):
        claim_id("MAR beats MAE")


def test_bad_studies_are_refused_with_the_reason(tmp_path):
    with pytest.raises(LedgerError, match="holds no claims.csv"):
        build_ledger([tmp_path])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "claims.csv").write_text("claim,effect\n1: x,0.1\n")
    with pytest.raises(LedgerError, match="missing column"):
        build_ledger([broken])
    garbled = write_study(tmp_path, "garbled", [{**claim_row("1: x", "confirmed", 0.01), "ci_low": "n/a"}])
    with pytest.raises(LedgerError, match="ci_low"):
        build_ledger([garbled])


def test_the_cli_writes_the_ledger_and_exits_2_on_a_bad_study(tmp_path, capsys):
    study = write_study(tmp_path, "study", [claim_row("1: drop", "confirmed", 0.004)])
    out = tmp_path / "ledger.csv"
    assert ledger_main([str(study), "--out", str(out)]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LEDGER_FIELDS and rows[0]["decision"] == "confirmed"
    assert ledger_main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "holds no claims.csv" in capsys.readouterr().err
