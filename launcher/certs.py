"""A swarm's certificate authority and per-peer TLS certificates, written into the run directory.

``dssl swarm`` calls :func:`write_swarm_tls` before any peer starts: one CA for the swarm, and for
each peer a certificate (CN = peer id) signed by it, usable both as gRPC server certificate (the
peer serves pulls) and as client certificate (the peer pulls; servers require mutual TLS). Peers
bind port 0, so certificates name hosts only: the SANs must cover every address a peer advertises
(127.0.0.1, ::1, localhost, the host name, and netns / LAN addresses given by the caller).

Layout (what ``gossip.security.TLSFiles.from_dir`` reads)::

    <dir>/ca.crt   <dir>/ca.key   <dir>/<peer>.crt   <dir>/<peer>.key     (keys are mode 0600)

Keys are ECDSA P-256: generated in well under a millisecond and supported by gRPC's TLS stack.
The CA key stays in the run directory so a late peer can be issued a certificate later
(:func:`issue_peer`). The file names are the ones ``gossip.security.TLSFiles`` reads.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DAYS = 30  # a local run's certificates; long enough for any study run, short enough to not linger
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class SwarmCA:
    """The swarm's CA: its key and self-signed certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dssl swarm"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=days)
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip("[]") for h in hosts if h):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def create_ca(swarm_id: str, days: int = DEFAULT_DAYS) -> SwarmCA:
    """A new self-signed CA for ``swarm_id`` (may only sign end-entity certificates)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _validity(x509.CertificateBuilder(), days)
        .subject_name(_name(f"dssl swarm CA {swarm_id}"))
        .issuer_name(_name(f"dssl swarm CA {swarm_id}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return SwarmCA(key=key, cert=builder.sign(key, hashes.SHA256()))


def issue_peer(
    ca: SwarmCA, peer_id: str, hosts: Iterable[str], days: int = DEFAULT_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Key + certificate for ``peer_id``, valid as TLS server and client, SANs = ``hosts``."""
    hosts = list(hosts)
    if not hosts:
        raise ValueError("a peer certificate needs at least one host (IP address or DNS name)")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _validity(x509.CertificateBuilder(), days)
        .subject_name(_name(peer_id))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    return key, builder.sign(ca.key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def default_hosts(extra: Iterable[str] = ()) -> list[str]:
    """Loopback, this host's name, and ``extra`` (netns / LAN addresses peers advertise)."""
    return list(dict.fromkeys([*LOCAL_HOSTS, socket.gethostname(), *extra]))


def write_peer(
    directory: Path, ca: SwarmCA, peer_id: str, hosts: Iterable[str], days: int = DEFAULT_DAYS
) -> None:
    key, cert = issue_peer(ca, peer_id, hosts, days)
    _write(directory / f"{peer_id}.key", _key_pem(key), private=True)
    _write(directory / f"{peer_id}.crt", _cert_pem(cert))


def write_swarm_tls(
    directory: str | Path,
    swarm_id: str,
    peer_ids: Iterable[str],
    hosts: Iterable[str] | None = None,
    days: int = DEFAULT_DAYS,
) -> Path:
    """Create ``directory`` with the swarm CA and one certificate per peer; returns the directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    ca = create_ca(swarm_id, days)
    _write(d / "ca.key", _key_pem(ca.key), private=True)
    _write(d / "ca.crt", _cert_pem(ca.cert))
    host_list = default_hosts() if hosts is None else list(hosts)
    for peer_id in peer_ids:
        if not peer_id or "/" in peer_id or peer_id.startswith("."):
            raise ValueError(f"peer id {peer_id!r} cannot name a certificate file")
        write_peer(d, ca, peer_id, host_list, days)
    return d


def load_ca(directory: str | Path) -> SwarmCA:
    """The CA written by :func:`write_swarm_tls` (to issue a late peer's certificate)."""
    d = Path(directory)
    key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    return SwarmCA(key=key, cert=x509.load_pem_x509_certificate((d / "ca.crt").read_bytes()))


def issue_joiner(
    ca_dir: str | Path, peer_id: str, hosts: Iterable[str], out: str | Path, days: int = DEFAULT_DAYS
) -> Path:
    """A late joiner's TLS directory: ``out`` gets the swarm's ``ca.crt`` and a new certificate +
    key for ``peer_id`` (SANs = ``hosts``, the addresses it will advertise) signed by the CA in
    ``ca_dir``; the CA key is not copied. Returns ``out`` (what ``dssl join --tls-dir`` takes)."""
    ca_dir, out = Path(ca_dir), Path(out)
    if not (ca_dir / "ca.key").is_file() or not (ca_dir / "ca.crt").is_file():
        raise ValueError(
            f"{ca_dir} holds no swarm CA (ca.crt + ca.key); it is <run dir>/tls of a dssl swarm run"
        )
    if not peer_id or "/" in peer_id or peer_id.startswith("."):
        raise ValueError(f"peer id {peer_id!r} cannot name a certificate file")
    if (out / f"{peer_id}.key").exists():
        raise ValueError(f"{out / (peer_id + '.key')} exists already; choose another --out or peer id")
    ca = load_ca(ca_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    _write(out / "ca.crt", _cert_pem(ca.cert))
    write_peer(out, ca, peer_id, list(hosts), days)
    return out


def certs_main(argv: list[str]) -> int:
    """``dssl certs``: issue a certificate for a peer joining a running TLS swarm from another host."""
    import argparse
    import shlex
    import sys

    p = argparse.ArgumentParser(
        prog="dssl certs",
        description=(
            "Issue a TLS certificate for a peer that joins a running swarm from another host: signed by the "
            "swarm's CA (<run dir>/tls), naming the addresses the new peer advertises. Copy --out to that "
            "host and pass it to `dssl join --tls-dir`."
        ),
    )
    p.add_argument("--ca-dir", required=True, type=Path, help="the swarm's CA directory: <run dir>/tls")
    p.add_argument("--peer-id", required=True, help="the joining peer's id (dssl join --peer-id)")
    p.add_argument(
        "--host",
        dest="hosts",
        action="append",
        required=True,
        metavar="ADDR",
        help="an IP address / DNS name the new peer listens on (repeatable)",
    )
    p.add_argument(
        "--out", required=True, type=Path, help="directory to write ca.crt, <id>.crt, <id>.key into"
    )
    args = p.parse_args(argv)
    try:
        out = issue_joiner(args.ca_dir, args.peer_id, args.hosts, args.out)
    except (ValueError, OSError) as exc:
        print(f"dssl certs: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"dssl certs: wrote {out}/ca.crt, {args.peer_id}.crt and {args.peer_id}.key (key mode 0600)\n"
        f"copy it to the new host, then run the swarm's join command with "
        f"--peer-id {shlex.quote(args.peer_id)} --tls-dir {shlex.quote(str(out))}"
    )
    return 0
