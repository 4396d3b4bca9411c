"""Swarm membership: mutual TLS from the swarm CA and swarm-secret HMAC tokens, over real gRPC,
with a real stranger process (``tests.gossip.stranger_peer``) on the other side."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from gossip.node import GossipNode, NodeConfig
from gossip.security import AuthError, SecurityConfigError, SwarmAuth, TLSFiles, load_secret
from launcher.certs import write_swarm_tls

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"correct horse battery staple 42"
OTHER_SECRET = b"an entirely different secret!!"


def _config(peer_id: str, **kw) -> NodeConfig:
    return NodeConfig(
        swarm_id="swarm",
        peer_id=peer_id,
        layout_fingerprint="l",
        chunk_bytes=4096,
        pull_deadline_s=5.0,
        hello_deadline_s=5.0,
        **kw,
    )


@contextlib.asynccontextmanager
async def _nodes(*configs):
    nodes = [await GossipNode.create(c) for c in configs]
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.close()


# ---- tokens ---------------------------------------------------------------------------------


def test_token_round_trip_and_every_way_it_is_refused():
    now = [1000.0]
    auth = SwarmAuth(SECRET, "swarm", max_skew_s=60, clock=lambda: now[0])
    token = auth.client_token("a", "pull")
    auth.verify_client(token, "a", "pull")
    with pytest.raises(AuthError, match="replay"):
        auth.verify_client(token, "a", "pull")
    for bad, reason in [
        (b"", "no swarm auth token"),
        (token[:-1], "malformed"),
        (auth.client_token("a", "hello"), "does not match"),
        (SwarmAuth(OTHER_SECRET, "swarm").client_token("a", "pull"), "does not match"),
        (SwarmAuth(SECRET, "other").client_token("a", "pull"), "does not match"),
    ]:
        with pytest.raises(AuthError, match=reason):
            auth.verify_client(bad, "a", "pull")
    with pytest.raises(AuthError, match="does not match"):  # a token is bound to the caller's id
        auth.verify_client(auth.client_token("a", "pull"), "b", "pull")
    stale = auth.client_token("a", "pull")
    now[0] += 61
    with pytest.raises(AuthError, match="off our clock"):
        auth.verify_client(stale, "a", "pull")


def test_server_proof_is_a_challenge_response():
    auth = SwarmAuth(SECRET, "swarm")
    token = auth.client_token("a", "pull")
    auth.verify_server(auth.server_proof(token), token)
    with pytest.raises(AuthError, match="no swarm membership proof"):
        auth.verify_server(None, token)
    with pytest.raises(AuthError, match="does not match"):  # a proof for another call is useless
        auth.verify_server(auth.server_proof(auth.client_token("a", "pull")), token)


def test_secret_from_file_or_env_and_never_in_repr(tmp_path, monkeypatch):
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    assert load_secret(path) == SECRET
    monkeypatch.setenv("DSSL_SWARM_SECRET", OTHER_SECRET.decode())
    assert load_secret() == OTHER_SECRET
    path.write_bytes(b"short")
    with pytest.raises(SecurityConfigError, match="at least 16"):
        load_secret(path)
    with pytest.raises(SecurityConfigError, match="cannot read"):
        load_secret(tmp_path / "missing")
    config = _config("a", swarm_secret=SECRET)
    assert SECRET.decode() not in repr(config) and SECRET.decode() not in repr(SwarmAuth(SECRET, "s"))


def test_tls_dir_names_missing_files(tmp_path):
    with pytest.raises(SecurityConfigError, match="a.crt"):
        TLSFiles.from_dir(tmp_path, "a")


# ---- members among themselves ---------------------------------------------------------------


async def test_members_with_the_secret_pull_and_hello(tmp_path):
    async with _nodes(_config("a", swarm_secret=SECRET), _config("b", swarm_secret=SECRET)) as (a, b):
        b.publish(torch.arange(5000.0), 0)
        outcome = await a.pull("b", b.address, 0)
        hello = await a.hello(b.address)
        assert outcome.error is None and torch.equal(outcome.snapshot.params, torch.arange(5000.0))
        assert hello.ok and hello.record.peer_id == "b"


async def test_members_over_mutual_tls_pull_and_mix(tmp_path):
    tls_dir = write_swarm_tls(tmp_path / "tls", "swarm", ["a", "b"], hosts=["127.0.0.1", "localhost"])
    configs = [_config(p, tls=TLSFiles.from_dir(tls_dir, p), swarm_secret=SECRET) for p in ("a", "b")]
    async with _nodes(*configs) as (a, b):
        xa, xb = torch.randn(5000), torch.randn(5000)
        a.publish(xa, 0)
        b.publish(xb, 0)
        result = await a.mix(0, {"b": b.address}, 0.5, {"b": 0.5})
        assert result.answered == 1
        torch.testing.assert_close(result.params, (xa + xb) / 2)


async def test_in_process_stranger_with_a_wrong_secret_is_refused_both_ways(caplog):
    async with _nodes(
        _config("member", swarm_secret=SECRET),
        _config("stranger", swarm_secret=OTHER_SECRET),
        _config("plain"),
    ) as (member, stranger, plain):
        member.publish(torch.ones(100), 0)
        stranger.publish(torch.ones(100), 0)
        plain.publish(torch.ones(100), 0)
        theirs = await stranger.pull("member", member.address, 0)
        ours = await member.pull("stranger", stranger.address, 0)
        from_plain = await member.pull("plain", plain.address, 0)
        assert theirs.error.startswith("unauthenticated: swarm authentication failed")
        assert ours.error.startswith("unauthenticated")  # the stranger refuses our token first
        assert from_plain.error == (
            "unauthenticated: the server sent no swarm membership proof "
            "(it does not hold this swarm's secret)"
        )
        assert any("unauthenticated" in r.getMessage() for r in caplog.records if r.name == "gossip.service")


# ---- a real stranger process ----------------------------------------------------------------


class Stranger:
    """``tests.gossip.stranger_peer`` in its own session; JSON events read with deadlines."""

    def __init__(self, reaper, member: str, tls_dir: Path | None = None, secret: bytes | None = None):
        env = {k: v for k, v in os.environ.items() if k != "DSSL_SWARM_SECRET"}
        if secret is not None:
            env["DSSL_SWARM_SECRET"] = secret.decode()
        command = [
            sys.executable,
            "-m",
            "tests.gossip.stranger_peer",
            "--swarm-id",
            "swarm",
            "--peer-id",
            "stranger",
            "--member",
            member,
            *(["--tls-dir", str(tls_dir)] if tls_dir else []),
        ]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        reaper.append(self.proc)
        self._events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self._events.put(json.loads(line))

    def event(self, name: str, timeout: float = 60.0) -> dict:
        while True:
            event = self._events.get(timeout=timeout)
            if event["event"] == name:
                return event

    def finish(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


async def _face_stranger(reaper, member_config: NodeConfig, **stranger) -> tuple[dict, dict, str]:
    """Start a member in-process and a stranger process; both try each other."""
    async with _nodes(member_config) as (member,):
        member.publish(torch.zeros(1000) + 3, 0)
        proc = Stranger(reaper, member.address, **stranger)
        address = (await asyncio.to_thread(proc.event, "serving"))["address"]
        pulled = await asyncio.to_thread(proc.event, "pull")
        greeted = await asyncio.to_thread(proc.event, "hello")
        ours = await member.pull("stranger", address, 0)
        assert await asyncio.to_thread(proc.finish) == 0
        return pulled, greeted, ours.error


async def test_stranger_process_without_the_secret_is_refused_at_the_handshake(reaper, caplog):
    pulled, greeted, ours = await _face_stranger(reaper, _config("member", swarm_secret=SECRET))
    assert pulled["error"] == (
        "unauthenticated: swarm authentication failed: the request carries no swarm auth "
        "token (this swarm requires its secret)"
    )
    assert greeted["error"].startswith("unauthenticated: swarm authentication failed")
    assert (
        ours
        == "unauthenticated: the server sent no swarm membership proof (it does not hold this swarm's secret)"
    )
    refusals = [r.getMessage() for r in caplog.records if r.name == "gossip.service"]
    assert any(m.startswith("refusing pull from 'stranger'") and "unauthenticated" in m for m in refusals)


async def test_stranger_process_with_another_ca_fails_the_tls_handshake(reaper, tmp_path):
    ours_dir = write_swarm_tls(tmp_path / "swarm", "swarm", ["member"], hosts=["127.0.0.1"])
    theirs_dir = write_swarm_tls(tmp_path / "stranger", "swarm", ["stranger"], hosts=["127.0.0.1"])
    member = _config("member", tls=TLSFiles.from_dir(ours_dir, "member"))
    pulled, greeted, ours = await _face_stranger(reaper, member, tls_dir=theirs_dir)
    assert pulled["error"].startswith("unavailable") and greeted["error"].startswith("unavailable")
    assert ours.startswith("unavailable")
    assert "handshake" in (pulled["error"] + ours).lower() or "ssl" in (pulled["error"] + ours).lower()


async def test_plaintext_stranger_process_cannot_talk_to_a_tls_member(reaper, tmp_path):
    tls_dir = write_swarm_tls(tmp_path / "swarm", "swarm", ["member"], hosts=["127.0.0.1"])
    pulled, greeted, ours = await _face_stranger(
        reaper, _config("member", tls=TLSFiles.from_dir(tls_dir, "member"))
    )
    assert pulled["error"].startswith("unavailable") and greeted["error"].startswith("unavailable")
    assert ours.startswith("unavailable")


async def test_a_member_claiming_another_peers_id_is_refused_by_its_certificate(tmp_path, caplog):
    # prepare: "c" holds a valid certificate of the swarm CA, but for peer "a", and says it is "c"
    tls_dir = write_swarm_tls(tmp_path / "tls", "swarm", ["a", "b"], hosts=["127.0.0.1", "localhost"])
    honest = _config("a", tls=TLSFiles.from_dir(tls_dir, "a"))
    impostor = _config("c", tls=TLSFiles.from_dir(tls_dir, "a"))
    server = _config("b", tls=TLSFiles.from_dir(tls_dir, "b"))
    async with _nodes(honest, impostor, server) as (a, c, b):
        b.publish(torch.arange(100.0), 0)
        # execute
        good = await a.pull("b", b.address, 0)
        bad = await c.pull("b", b.address, 0)
    # assert
    assert good.error is None
    assert bad.snapshot is None and "permission_denied" in str(bad.error) and "'a', not 'c'" in str(bad.error)
    assert "its certificate is for 'a'" in caplog.text
