"""Credentials on a peer's stdin (how ``dssl swarm --hosts`` ships TLS files and the swarm secret
to a host that does not share our disk): the line round-trips, and every bad line is refused clearly."""

from __future__ import annotations

import base64
import io
import json
import stat

import pytest

from gossip.security import (
    MAX_CREDENTIALS_BYTES,
    SecurityConfigError,
    TLSFiles,
    encode_credentials,
    read_credentials,
)
from launcher.certs import write_swarm_tls

SECRET = b"correct horse battery staple 42"


def test_tls_files_and_secret_round_trip_into_a_private_directory(tmp_path):
    # prepare
    tls = write_swarm_tls(tmp_path / "tls", "swarm", ["p0", "p1"], ["127.0.0.1"])
    line = encode_credentials(tls, "p1", SECRET)
    # execute
    got_dir, secret = read_credentials(io.BytesIO(line + b"more stdin after the line"), tmp_path / "recv")
    # assert: same bytes, the key readable by us only, and the line is one line
    assert line.count(b"\n") == 1 and secret == SECRET
    files = TLSFiles.from_dir(got_dir, "p1")
    assert files.key.read_bytes() == (tls / "p1.key").read_bytes()
    assert files.cert.read_bytes() == (tls / "p1.crt").read_bytes()
    assert files.ca.read_bytes() == (tls / "ca.crt").read_bytes()
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(got_dir.stat().st_mode) == 0o700
    assert not (got_dir / "ca.key").exists()  # the CA key never leaves the launcher


def test_secret_only_and_tls_only(tmp_path):
    tls = write_swarm_tls(tmp_path / "tls", "swarm", ["p0"], ["127.0.0.1"])
    assert read_credentials(io.BytesIO(encode_credentials(None, "p0", SECRET)), tmp_path / "a") == (
        None,
        SECRET,
    )
    got_dir, secret = read_credentials(io.BytesIO(encode_credentials(tls, "p0", None)), tmp_path / "b")
    assert secret is None and (got_dir / "p0.key").is_file()


def _line(payload) -> bytes:
    return base64.b64encode(json.dumps(payload).encode()) + b"\n"


@pytest.mark.parametrize(
    "stdin, message",
    [
        (b"", "stdin closed before"),
        (b"not base64 at all!\n", "malformed"),
        (_line(["a list"]), "malformed"),
        (_line({"peer_id": "p0", "tls": None}), "malformed"),
        (_line({"peer_id": "../p0", "tls": None, "secret": None}), "bad peer id"),
        (_line({"peer_id": "p0", "tls": {"ca": "x"}, "secret": None}), "ca, cert and key"),
        (_line({"peer_id": "p0", "tls": None, "secret": 42}), "must be a string"),
        (_line({"peer_id": "p0", "tls": None, "secret": "short"}), "at least 16"),
        (b"A" * (MAX_CREDENTIALS_BYTES + 10) + b"\n", "exceeds"),
    ],
)
def test_bad_credentials_lines_are_refused_with_the_reason(tmp_path, stdin, message):
    with pytest.raises(SecurityConfigError, match=message):
        read_credentials(io.BytesIO(stdin), tmp_path / "recv")
    assert not list(tmp_path.glob("recv/*.key"))  # nothing half-written
