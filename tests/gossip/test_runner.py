"""GossipRunner: the synchronous facade works from plain threads (no event loop in the caller)."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest
import torch

from gossip import mixing, topology
from gossip.hook import GossipHook, MixResult
from gossip.membership import StaticMembership
from gossip.node import BindError, NodeConfig
from gossip.runner import GossipRunner


def _config(peer_id: str, **overrides) -> NodeConfig:
    values = dict(
        swarm_id="swarm", peer_id=peer_id, layout_fingerprint="layout", pull_deadline_s=20.0, chunk_bytes=4096
    )
    values.update(overrides)
    return NodeConfig(**values)


def _start(peers, membership, spec):
    return {p: GossipRunner.start(_config(p), membership, spec) for p in peers}


def _train_rounds(runners, values, rounds: int) -> dict[str, list[MixResult]]:
    """What trainer threads do: each publishes, reuses its buffer at once, mixes, loads the result."""
    results: dict[str, list[MixResult]] = {p: [] for p in runners}

    def train(peer: str) -> None:
        runner: GossipHook = runners[peer]
        params = values[peer].clone()
        for r in range(rounds):
            runner.publish(params, round=r)
            params.zero_()  # the trainer may reuse its buffer at once: publish copied it
            result = runner.mix().result(timeout=60)
            results[peer].append(result)
            params.copy_(result.params)

    threads = [threading.Thread(target=train, args=(p,)) for p in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_runners_mix_from_plain_threads():
    # prepare: one shared static membership that each runner announces itself into
    membership = StaticMembership({})
    spec = topology.parse("ring")
    runners = _start(["a", "b", "c", "d"], membership, spec)
    try:
        torch.manual_seed(0)
        values = {p: torch.randn(2000) for p in runners}
        # execute
        results = _train_rounds(runners, values, rounds=3)
        # assert: round 0 equals W x, every neighbour answered, addresses came from membership
        assert all(len(v) == 3 for v in results.values())
        graph = spec.graph(sorted(runners), 0, 0)
        for peer, res in results.items():
            self_w, weights = mixing.mixing_row(graph, peer)
            expected = self_w * values[peer] + sum(w * values[j] for j, w in weights.items())
            torch.testing.assert_close(res[0].params, expected)
            assert res[0].answered == 2 and [r.round for r in res] == [0, 1, 2]
            assert all(r.failure is None for r in res)
        assert {r.peer_id: r.address for r in membership.live_peers()} == {
            p: x.address for p, x in runners.items()
        }
        deadline = time.monotonic() + 30  # the round is re-announced off the critical path: poll
        while membership.live_peers()[0].round != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert membership.live_peers()[0].round == 2
    finally:
        for runner in runners.values():
            runner.close()


class _SlowMembership(StaticMembership):
    """A membership whose live-peer read blocks (a DHT lookup on a loaded network) or fails."""

    def __init__(self, delay_s: float = 0.0, error: Exception | None = None) -> None:
        super().__init__({})
        self.delay_s, self.error = delay_s, error

    def live_peers(self):
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return super().live_peers()


def test_mix_returns_at_once_and_a_late_round_keeps_the_local_params():
    # prepare: the membership read takes 2 s; the round's deadline is 0.3 s
    membership = _SlowMembership(delay_s=2.0)
    runner = GossipRunner.start(_config("a"), membership, topology.parse("ring"), mix_timeout_s=0.3)
    try:
        runner.publish(torch.full((5,), 3.0), round=1)
        # execute
        started = time.monotonic()
        future = runner.mix()
        returned_after = time.monotonic() - started
        result = future.result(timeout=30)
        # assert: mix() did not wait for the membership; the round resolved with the reason
        assert returned_after < 0.2
        assert result.failure == "mix timeout" and result.round == 1
        assert torch.equal(result.params, torch.full((5,), 3.0))
        assert result.self_weight == 1.0 and result.neighbours == () and result.embedding is None
    finally:
        runner.close()


def test_a_failing_round_resolves_with_the_reason_and_the_local_params():
    # prepare: the membership read raises
    membership = _SlowMembership(error=OSError("dht unreachable"))
    runner = GossipRunner.start(_config("a"), membership, topology.parse("ring"))
    try:
        runner.publish(torch.arange(4.0), round=2)
        # execute
        result = runner.mix().result(timeout=30)
        # assert
        assert result.failure is not None and "dht unreachable" in result.failure
        assert result.failure.startswith("mix failed")
        assert torch.equal(result.params, torch.arange(4.0)) and result.round == 2
    finally:
        runner.close()


def test_runner_guards_its_contract():
    # prepare
    membership = StaticMembership({})
    runner = GossipRunner.start(_config("a"), membership, topology.parse("ring"))
    try:
        # execute / assert
        with pytest.raises(RuntimeError, match="publish"):
            runner.mix()
        runner.publish(torch.zeros(4), 3)
        with pytest.raises(ValueError, match="older"):
            runner.publish(torch.zeros(4), 2)
        alone = runner.mix().result(timeout=30)  # only peer: nothing to pull, own params back
        assert alone.expected == 0 and alone.self_weight == 1.0 and torch.equal(alone.params, torch.zeros(4))
    finally:
        runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner.publish(torch.zeros(4), 4)
    runner.close()  # idempotent


def test_taken_port_raises_a_clear_error_and_leaves_no_thread():
    # prepare
    membership = StaticMembership({})
    first = GossipRunner.start(_config("a"), membership, topology.parse("ring"))
    before = {t.name for t in threading.enumerate()}
    try:
        # execute / assert
        with pytest.raises(BindError, match="cannot bind"):
            GossipRunner.start(_config("b", listen=first.address), membership, topology.parse("ring"))
        assert "gossip-b" not in {t.name for t in threading.enumerate()} - before
    finally:
        first.close()


def test_mix_future_is_a_concurrent_future():
    # prepare
    runner = GossipRunner.start(_config("a"), StaticMembership({}), topology.parse("full"))
    try:
        runner.publish(torch.ones(3), 0)
        # execute
        future = runner.mix()
        # assert
        assert isinstance(future, concurrent.futures.Future)
        assert torch.equal(future.result(timeout=30).params, torch.ones(3))
    finally:
        runner.close()
