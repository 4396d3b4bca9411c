"""``dssl report`` with probe records and parameter snapshots: the representation plot, the exact
consensus panel and the summary lines (hand-made run directory, tests/analysis/_probe_run.py)."""

from __future__ import annotations

from analysis.run_plots import plot_representation
from launcher.cli import main
from tests.analysis._diag_run import make_run
from tests.analysis._probe_run import make_probe_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_draws_representation_and_mentions_probe_and_snapshot_figures(tmp_path):
    # prepare
    run = make_probe_run(tmp_path)
    # execute
    code = main(["report", str(run)])
    # assert
    assert code == 0
    text = (run / "report.md").read_text()
    for name in ("report_representation.png", "report_consensus.png"):
        assert (run / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in text
    assert "final mean collapse std" in text and ": 0.65" in text
    assert "final mean A-MMD" in text and ": 0.25" in text
    assert "2 snapshot rounds (last: round 2, 1)" in text


def test_no_representation_plot_without_probe_records(tmp_path):
    # prepare
    run = make_run(tmp_path)
    # execute
    main(["report", str(run)])
    # assert
    assert not (run / "report_representation.png").exists()
    assert "0 snapshot rounds" in (run / "report.md").read_text()
    no_probes = {"per_peer": {"a": {"evals": [], "rounds": []}}}
    assert plot_representation(no_probes, [], tmp_path / "x.png") is None
