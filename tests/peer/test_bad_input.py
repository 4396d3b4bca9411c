"""Bad configs and command lines fail fast: exit code != 0, one clear line naming the problem, no
traceback, and nothing left running (``dssl swarm``: no peer ever spawned)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from launcher.cli import main as dssl

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = (
    "/ip4/127.0.0.1/tcp/9/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"  # port 9: discard, closed
)


def _files(tmp: Path) -> dict[str, Path]:
    files = {
        "unknown": "data: {datset: fashion-mnist}\n",
        "wrongtype": "train: {steps: many}\n",
        "nodata": "data: {root: /nonexistent/dssl-data}\ntrain: {steps: 2}\n",
        "short": "abc\n",
        "ok": "train: {steps: 2}\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


def _cases(f: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], str]]:
    """(name, dssl argv, text the one error line must contain)."""
    return [*_train_cases(f, tmp), *_peer_cases(f, tmp), *_peer_security_cases(f, tmp)]


def _train_cases(f: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], str]]:
    run = ["--run-dir", str(tmp / "run")]
    return [
        ("train unknown key", ["train", "--config", str(f["unknown"])], "data.datset: unknown key"),
        ("train wrong type", ["train", "--config", str(f["wrongtype"])], "train.steps: expected int"),
        ("train missing data dir", ["train", "--config", str(f["nodata"]), *run], "/nonexistent/dssl-data"),
        ("train missing config", ["train", "--config", str(tmp / "nope.yaml")], "does not exist"),
    ]


def _peer_cases(f: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], str]]:
    run = ["--run-dir", str(tmp / "run")]
    return [
        ("peer unknown key", ["peer", "--quiet", "--config", str(f["unknown"])], "data.datset: unknown key"),
        (
            "peer bad override",
            ["peer", "--quiet", "--set", "train.steps"],
            "expected the form section.key=value",
        ),
        (
            "peer missing data dir",
            ["peer", "--quiet", "--config", str(f["nodata"]), *run],
            "/nonexistent/dssl-data",
        ),
        (
            "peer malformed bootstrap",
            ["peer", "--quiet", "--config", str(f["ok"]), "--bootstrap", "garbage", *run],
            "not a valid multiaddr",
        ),
        (
            "peer unreachable bootstrap",
            ["peer", "--quiet", "--config", str(f["ok"]), "--bootstrap", UNREACHABLE, *run],
            "no initial peer answered",
        ),
    ]


def _peer_security_cases(f: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], str]]:
    run = ["--run-dir", str(tmp / "run")]
    return [
        (
            "peer missing tls files",
            ["peer", "--quiet", "--config", str(f["ok"]), "--tls-dir", str(tmp), *run],
            "lacks",
        ),
        (
            "peer unreadable secret",
            [
                "peer",
                "--quiet",
                "--config",
                str(f["ok"]),
                "--swarm-secret-file",
                str(tmp / "no-secret"),
                *run,
            ],
            "cannot read the swarm secret file",
        ),
        (
            "peer short secret",
            ["peer", "--quiet", "--config", str(f["ok"]), "--swarm-secret-file", str(f["short"]), *run],
            "at least 16",
        ),
    ]


def _run(argv: list[str]) -> tuple[int, str, bool]:
    """Run ``dssl argv`` in its own session; (exit code, stderr, whether anything of it is still alive)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "DSSL_SWARM_SECRET": ""},
    )
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        leftovers = _group_alive(proc.pid)
        if leftovers:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err, leftovers


def _group_alive(pgid: int) -> bool:
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


def test_train_and_peer_fail_fast_with_one_clear_line(tmp_path):
    # prepare
    cases = _cases(_files(tmp_path), tmp_path)
    # execute: the cases are independent processes; two at a time
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: _run(case[1]), cases))
    # assert
    problems = []
    for (name, _argv, expected), (code, err, leftovers) in zip(cases, results):
        errors = [line for line in err.splitlines() if "error:" in line]
        if code == 0 or "Traceback" in err or len(errors) != 1 or expected not in errors[0] or leftovers:
            problems.append((name, code, leftovers, err[-600:]))
    assert problems == []


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--config", "{unknown}"], "unknown key(s) data"),
        (["--set", "train.steps=many"], "train.steps: expected int"),
        (["--set", "data.root=/nonexistent/dssl-data"], "data.root /nonexistent/dssl-data does not exist"),
        (["--swarm-secret-file", "{short}"], "at least 16"),
        (["--peers", "0"], "size"),
    ],
)
def test_swarm_fails_before_spawning_any_peer(tmp_path, capsys, extra, expected):
    # prepare
    files = _files(tmp_path)
    argv = [
        "swarm",
        "--run-root",
        str(tmp_path / "runs"),
        *[a.format(unknown=files["unknown"], short=files["short"]) for a in extra],
    ]
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. torch's shm manager
    # execute
    code = dssl(argv)
    # assert
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and expected in errors[0], err
    assert not (tmp_path / "runs").exists()  # no run directory: nothing was spawned
    assert [p for p in psutil.Process().children(recursive=True) if p.pid not in before] == []
