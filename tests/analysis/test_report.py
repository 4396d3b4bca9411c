"""``dssl report`` on a hand-made run directory: report.md, the PNGs and the fault event's placement."""

from __future__ import annotations

from analysis.diagnostics import write_diagnostics
from analysis.run_report import fault_events
from launcher.cli import main
from tests.analysis._diag_run import make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_dssl_report_writes_markdown_and_plots(tmp_path, capsys):
    # prepare
    run = make_run(tmp_path)
    # execute
    code = main(["report", str(run)])
    # assert
    assert code == 0
    text = (run / "report.md").read_text()
    for name in ("report_knn.png", "report_consensus.png", "report_bytes.png"):
        assert (run / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in text
    assert "| b | 0.31 | 0.55 | 3 |" in text
    assert "fault kill c" in text
    assert "2.667" in text  # the exact consensus distance 8/3
    assert (run / "diagnostics.json").is_file() and (run / "rounds.csv").is_file()


def test_only_mid_run_and_fault_events_are_marked_at_interpolated_rounds(tmp_path):
    # prepare: rounds at T0+10/20/30, a fault at T0+25, spawn before and exit after the rounds
    run = make_run(tmp_path)
    # execute
    events = fault_events(run, write_diagnostics(run)["rounds"])
    # assert
    assert [(e["label"], e["x"]) for e in events] == [("fault kill c", 2.5)]


def test_report_of_a_non_run_directory_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
