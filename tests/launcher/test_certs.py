"""launcher.certs: swarm CA + per-peer certificates, and what `dssl swarm` passes peers for them."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from launcher.certs import load_ca, write_peer, write_swarm_tls
from launcher.spec import SpecError, plan_from_dict
from launcher.swarm import check_secret_file, security_args


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_signs_one_certificate_per_peer_with_the_given_sans(tmp_path):
    # execute
    d = write_swarm_tls(
        tmp_path / "tls", "s", ["p0", "p1"], hosts=["127.0.0.1", "::1", "10.77.0.2", "node-a"]
    )
    # assert
    ca = _cert(d / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for peer in ("p0", "p1"):
        cert = _cert(d / f"{peer}.crt")
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == peer
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.IPAddress)) == {
            ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.77.0.2")
        }
        assert san.get_values_for_type(x509.DNSName) == ["node-a"]
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
        assert stat.S_IMODE((d / f"{peer}.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600


def test_a_late_peer_is_issued_by_the_same_ca(tmp_path):
    d = write_swarm_tls(tmp_path, "s", ["p0"], hosts=["127.0.0.1"])
    write_peer(d, load_ca(d), "late", ["127.0.0.1"])
    _cert(d / "late.crt").verify_directly_issued_by(_cert(d / "ca.crt"))


def test_another_swarms_ca_does_not_verify(tmp_path):
    ours = write_swarm_tls(tmp_path / "a", "s", ["p0"], hosts=["127.0.0.1"])
    theirs = write_swarm_tls(tmp_path / "b", "s", ["p0"], hosts=["127.0.0.1"])
    with pytest.raises(InvalidSignature):  # same CA name, another CA's key
        _cert(theirs / "p0.crt").verify_directly_issued_by(_cert(ours / "ca.crt"))


@pytest.mark.parametrize("bad", ["", "../x", ".hidden"])
def test_peer_ids_that_cannot_name_files_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        write_swarm_tls(tmp_path, "s", [bad], hosts=["127.0.0.1"])


class _Run:
    def __init__(self, path: Path):
        self.path = path


def test_security_args_make_certificates_or_say_insecure(tmp_path):
    plan = plan_from_dict({"swarm": {"size": 2, "id": "s"}})
    secret = tmp_path / "secret"
    secret.write_text("x" * 32)
    tls_args = security_args(plan, _Run(tmp_path), insecure=False, secret_file=secret)
    assert tls_args == ["--swarm-secret-file", str(secret.resolve()), "--tls-dir", str(tmp_path / "tls")]
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == sorted(
        ["ca.crt", "ca.key"] + [f"{p.peer_id}.{ext}" for p in plan.peers for ext in ("crt", "key")]
    )
    assert security_args(plan, _Run(tmp_path / "x"), insecure=True, secret_file=None) == ["--insecure"]


def test_secret_file_is_checked_before_anything_starts(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(SpecError, match="at least 16"):
        check_secret_file(short)
    with pytest.raises(SpecError, match="No such file"):
        check_secret_file(tmp_path / "missing")
    check_secret_file(None)


def test_dssl_certs_issues_a_joiner_directory_without_the_ca_key(tmp_path, capsys):
    # prepare
    from launcher.cli import main

    swarm_tls = write_swarm_tls(tmp_path / "run" / "tls", "s", ["p0"], hosts=["127.0.0.1"])
    out = tmp_path / "joiner-tls"
    # execute
    code = main(
        ["certs", "--ca-dir", str(swarm_tls), "--peer-id", "j1", "--host", "10.0.0.9", "--out", str(out)]
    )
    # assert: CA-signed, names the joiner's address, private, usable by TLSFiles.from_dir, no CA key
    assert code == 0
    cert = _cert(out / "j1.crt")
    cert.verify_directly_issued_by(_cert(swarm_tls / "ca.crt"))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.9" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert (out / "ca.crt").read_bytes() == (swarm_tls / "ca.crt").read_bytes()
    assert not (out / "ca.key").exists() and (out / "j1.key").stat().st_mode & 0o077 == 0
    assert "--tls-dir" in capsys.readouterr().out
    # and bad input is refused with the reason, writing nothing
    assert (
        main(["certs", "--ca-dir", str(tmp_path), "--peer-id", "j2", "--host", "x", "--out", str(out)]) == 2
    )
    assert (
        main(["certs", "--ca-dir", str(swarm_tls), "--peer-id", "j1", "--host", "x", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert "holds no swarm CA" in err and "exists already" in err
    assert not (out / "j2.key").exists()
