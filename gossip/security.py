"""Who may pull and be pulled: TLS credentials from the swarm CA, and swarm-secret authentication.

Two independent layers, either or both on:

* **Mutual TLS** (``TLSFiles``): every gossip channel is encrypted; the server presents a
  certificate signed by the swarm CA whose SANs cover the address it advertises, and *requires* a
  client certificate signed by the same CA. A stranger without a CA-signed certificate fails the
  handshake (the client sees UNAVAILABLE "handshake failed"; the server never runs a handler).
  ``launcher.certs`` makes the CA and the per-peer files: ``<dir>/ca.crt``, ``<dir>/<peer>.crt``,
  ``<dir>/<peer>.key``.
* **Shared swarm secret** (``SwarmAuth``), with or without TLS: every request carries an
  ``auth_token`` = version | timestamp | random nonce | HMAC-SHA256(secret, swarm id, caller peer
  id, method, timestamp, nonce). The server checks the MAC, refuses timestamps off by more than
  ``max_skew_s`` and nonces it has already seen (replay), and answers UNAUTHENTICATED with the
  reason. It proves its own membership by returning HMAC(secret, "server", swarm id, the caller's
  token) in the response's initial metadata (``PROOF_METADATA``); the client refuses a server
  that does not (a fresh nonce per call makes that proof a challenge-response).

The secret comes from a file or the ``DSSL_SWARM_SECRET`` environment variable (``load_secret``),
never from the command line, and is kept out of every ``repr``.

A peer launched on another host over ssh has neither its certificate nor the secret file on its
disk: the launcher sends them as one line on the peer's stdin (``encode_credentials`` /
``read_credentials``), never on a command line, where ``ps`` would show them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import grpc

SECRET_ENV = "DSSL_SWARM_SECRET"
MIN_SECRET_BYTES = 16  # shorter secrets are refused: they could be brute-forced from one token
PROOF_METADATA = "dssl-server-proof-bin"  # "-bin": gRPC carries the value as raw bytes
_VERSION = 1
_NONCE_BYTES = 16
_TOKEN = struct.Struct(">BQ16s32s")  # version, unix time in ms, nonce, HMAC-SHA256
DEFAULT_MAX_SKEW_S = 60.0  # clocks of swarm hosts must agree within this (NTP keeps them within ms)
MAX_REMEMBERED_NONCES = 1 << 17  # replay cache bound: ~128k calls per 2 x max_skew_s window


class AuthError(Exception):
    """A token or proof that does not show membership of the swarm; the message says why."""


class SecurityConfigError(ValueError):
    """TLS files or a swarm secret that cannot be used (missing, unreadable, too short)."""


# ---- TLS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of one peer: the swarm CA certificate, its own certificate and private key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_dir(cls, directory: str | Path, peer_id: str) -> TLSFiles:
        """``<dir>/ca.crt``, ``<dir>/<peer_id>.crt`` and ``.key``, as ``launcher.certs`` writes them."""
        d = Path(directory)
        files = cls(ca=d / "ca.crt", cert=d / f"{peer_id}.crt", key=d / f"{peer_id}.key")
        missing = [str(p) for p in (files.ca, files.cert, files.key) if not p.is_file()]
        if missing:
            raise SecurityConfigError(
                f"TLS directory {d} lacks {', '.join(missing)} "
                f"(make them with launcher.certs, or run without TLS via --insecure)"
            )
        return files

    def _read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except OSError as exc:
            raise SecurityConfigError(f"cannot read TLS file: {exc}") from None

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve with our certificate; require and verify a CA-signed client certificate."""
        ca, cert, key = self._read()
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Verify the server against the swarm CA (and its SANs against the dialled host); present ours."""
        ca, cert, key = self._read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


# ---- credentials sent on a peer's stdin (ssh launches) ----------------------------------------

MAX_CREDENTIALS_BYTES = 64 * 1024  # three PEM files and a secret are a few KiB


def encode_credentials(tls_dir: str | Path | None, peer_id: str, secret: bytes | None) -> bytes:
    """One line (base64 of JSON, newline-terminated) carrying ``peer_id``'s TLS files from
    ``tls_dir`` (``TLSFiles.from_dir`` layout) and/or the swarm secret."""
    payload: dict = {"peer_id": peer_id, "tls": None, "secret": None}
    if tls_dir is not None:
        files = TLSFiles.from_dir(tls_dir, peer_id)
        ca, cert, key = files._read()
        payload["tls"] = {"ca": ca.decode(), "cert": cert.decode(), "key": key.decode()}
    if secret is not None:
        payload["secret"] = secret.decode()
    return base64.b64encode(json.dumps(payload).encode()) + b"\n"


def read_credentials(stream: BinaryIO, directory: str | Path) -> tuple[Path | None, bytes | None]:
    """Read the line of :func:`encode_credentials` from ``stream``; write the TLS files (keys 0600)
    into ``directory`` (created 0700). Returns (TLS directory or None, secret or None).

    Raises SecurityConfigError on end of input, an oversized or malformed line, or short secret."""
    line = stream.readline(MAX_CREDENTIALS_BYTES + 1)
    if not line:
        raise SecurityConfigError("--credentials-stdin: stdin closed before the credentials line arrived")
    if len(line) > MAX_CREDENTIALS_BYTES:
        raise SecurityConfigError(
            f"--credentials-stdin: the credentials line exceeds {MAX_CREDENTIALS_BYTES} bytes"
        )
    try:
        payload = json.loads(base64.b64decode(line.strip(), validate=True))
        peer_id, tls, secret = payload["peer_id"], payload["tls"], payload["secret"]
        if not isinstance(peer_id, str) or not peer_id or "/" in peer_id or peer_id.startswith("."):
            raise ValueError(f"bad peer id {peer_id!r}")
        if tls is not None and not all(isinstance(tls.get(k), str) for k in ("ca", "cert", "key")):
            raise ValueError("tls needs the strings ca, cert and key")
        if secret is not None and not isinstance(secret, str):
            raise ValueError("the secret must be a string")
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SecurityConfigError(f"--credentials-stdin: malformed credentials line ({exc})") from None
    tls_dir = None
    if tls is not None:
        tls_dir = Path(directory)
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, text, mode in (
            ("ca.crt", tls["ca"], 0o644),
            (f"{peer_id}.crt", tls["cert"], 0o644),
            (f"{peer_id}.key", tls["key"], 0o600),
        ):
            fd = os.open(tls_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
    secret_bytes = secret.strip().encode() if secret is not None else None
    if secret_bytes is not None and len(secret_bytes) < MIN_SECRET_BYTES:
        raise SecurityConfigError(
            f"--credentials-stdin: the swarm secret is {len(secret_bytes)} bytes; "
            f"use at least {MIN_SECRET_BYTES}"
        )
    return tls_dir, secret_bytes


# ---- the swarm secret -----------------------------------------------------------------------


def load_secret(path: str | Path | None = None, env: str = SECRET_ENV) -> bytes | None:
    """The swarm secret from ``path`` (whitespace-stripped), else from ``$env``, else None."""
    if path is not None:
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as exc:
            raise SecurityConfigError(f"cannot read the swarm secret file: {exc}") from None
        where = f"secret file {path}"
    elif os.environ.get(env):
        secret, where = os.environ[env].strip().encode(), f"${env}"
    else:
        return None
    if len(secret) < MIN_SECRET_BYTES:
        raise SecurityConfigError(
            f"the swarm secret in {where} is {len(secret)} bytes; use at least "
            f"{MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
        )
    return secret


def _fields(*parts: str | bytes | int) -> bytes:
    """Length-prefixed concatenation: no two different field lists give the same bytes."""
    out = bytearray()
    for part in parts:
        raw = (
            part.encode()
            if isinstance(part, str)
            else part
            if isinstance(part, bytes)
            else str(part).encode()
        )
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


class SwarmAuth:
    """Make and check request tokens and server proofs for one swarm (thread-safe)."""

    def __init__(
        self,
        secret: bytes,
        swarm_id: str,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        clock: Callable[[], float] = time.time,
    ):
        if len(secret) < MIN_SECRET_BYTES:
            raise SecurityConfigError(f"swarm secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self.swarm_id = swarm_id
        self.max_skew_s = max_skew_s
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # nonce -> time it may be forgotten
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SwarmAuth(swarm_id={self.swarm_id!r}, secret=<hidden>)"

    def _mac(self, *parts: str | bytes | int) -> bytes:
        return hmac.new(self._secret, _fields(*parts), hashlib.sha256).digest()

    def client_token(self, peer_id: str, method: str) -> bytes:
        """A fresh token for one call of ``method`` ("pull" / "hello") by ``peer_id``."""
        millis = int(self._clock() * 1000)
        nonce = os.urandom(_NONCE_BYTES)
        mac = self._mac("client", self.swarm_id, peer_id, method, millis, nonce)
        return _TOKEN.pack(_VERSION, millis, nonce, mac)

    def verify_client(self, token: bytes, peer_id: str, method: str) -> None:
        """Raise ``AuthError`` unless ``token`` is a fresh, unseen token of this swarm for this caller."""
        if not token:
            raise AuthError("the request carries no swarm auth token (this swarm requires its secret)")
        if len(token) != _TOKEN.size:
            raise AuthError(f"malformed auth token ({len(token)} bytes)")
        version, millis, nonce, mac = _TOKEN.unpack(token)
        if version != _VERSION:
            raise AuthError(f"auth token version {version} is not supported")
        expected = self._mac("client", self.swarm_id, peer_id, method, millis, nonce)
        if not hmac.compare_digest(mac, expected):
            raise AuthError(
                f"auth token does not match swarm {self.swarm_id!r}'s secret (or peer id {peer_id!r})"
            )
        now = self._clock()
        skew = abs(now - millis / 1000)
        if skew > self.max_skew_s:
            raise AuthError(
                f"auth token is {skew:.0f} s off our clock (limit {self.max_skew_s:.0f} s): "
                f"stale or replayed, or the hosts' clocks disagree"
            )
        self._remember(nonce, now)

    def _remember(self, nonce: bytes, now: float) -> None:
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now:
                self._seen.popitem(last=False)
            if nonce in self._seen:
                raise AuthError("auth token was already used (replay)")
            if len(self._seen) >= MAX_REMEMBERED_NONCES:
                raise AuthError("too many authenticated calls within the replay window; retry shortly")
            self._seen[nonce] = now + 2 * self.max_skew_s

    def server_proof(self, token: bytes) -> bytes:
        """What the server returns to prove it holds the secret: a MAC over the caller's fresh token."""
        return self._mac("server", self.swarm_id, token)

    def verify_server(self, proof: bytes | None, token: bytes) -> None:
        if not proof:
            raise AuthError(
                "the server sent no swarm membership proof (it does not hold this swarm's secret)"
            )
        if not hmac.compare_digest(proof, self.server_proof(token)):
            raise AuthError(f"the server's membership proof does not match swarm {self.swarm_id!r}'s secret")


@dataclass(frozen=True)
class Security:
    """Everything a node needs to talk securely: TLS files and/or the swarm authenticator."""

    tls: TLSFiles | None = None
    auth: SwarmAuth | None = None

    @property
    def description(self) -> str:
        parts = (["mutual TLS"] if self.tls else []) + (["swarm secret"] if self.auth else [])
        return " + ".join(parts) or "insecure"


def proof_from_metadata(metadata) -> bytes | None:
    """The server proof in a call's initial metadata (None when absent)."""
    for key, value in metadata or ():
        if key == PROOF_METADATA:
            return value if isinstance(value, bytes) else value.encode()
    return None
