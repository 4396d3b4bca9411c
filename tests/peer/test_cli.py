"""`dssl train` / `dssl demo` fail with one clear line on bad configs and missing data; `dssl peer`
finds its bootstrap addresses in another peer's ready file."""

from __future__ import annotations

import json

from peer.cli import _bootstrap_from_file, demo_main, train_main
from peer.rundir import READY_FILE


def test_unknown_key_is_one_line_and_exit_2(capsys, tmp_path):
    # execute
    code = train_main(["--set", "train.batch_sise=3", "--run-dir", str(tmp_path / "r"), "--quiet"])
    # assert
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [err[0]] and "train.batch_sise: unknown key" in err[0]
    assert not (tmp_path / "r").exists()


def test_missing_data_directory_names_the_path(capsys, tmp_path):
    # execute
    code = demo_main(["--set", f"data.root={tmp_path / 'nope'}", "--run-dir", str(tmp_path / "r"), "--quiet"])
    # assert
    err = capsys.readouterr().err
    assert code == 2 and "dssl demo: error:" in err and str(tmp_path / "nope") in err


def test_missing_config_file(capsys, tmp_path):
    code = train_main(["--config", str(tmp_path / "none.yaml"), "--quiet"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_bootstrap_file_yields_the_bootstrap_multiaddrs(tmp_path):
    # prepare
    ready = tmp_path / READY_FILE
    ready.write_text(json.dumps({"maddrs": ["/ip4/10.0.0.1/tcp/7001/p2p/Qm"]}))
    # execute
    maddrs = _bootstrap_from_file(ready, timeout_s=1.0)
    # assert
    assert maddrs == ["/ip4/10.0.0.1/tcp/7001/p2p/Qm"]
