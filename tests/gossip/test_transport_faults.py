"""gossip.faults: the control-file-driven server interceptor, over real gRPC on 127.0.0.1."""

from __future__ import annotations

import contextlib
import time

import pytest
import torch

from gossip.faults import ControlError, ControlFile, FaultControl, drop_draw
from gossip.node import GossipNode, NodeConfig
from launcher.fault_control import write_control

CHUNK = 64 * 1024


def _config(peer_id: str, control=None, **overrides) -> NodeConfig:
    values = dict(
        swarm_id="swarm",
        peer_id=peer_id,
        layout_fingerprint="layout",
        chunk_bytes=CHUNK,
        pull_deadline_s=5.0,
        fault_control=None if control is None else str(control),
    )
    values.update(overrides)
    return NodeConfig(**values)


@contextlib.asynccontextmanager
async def _nodes(*configs: NodeConfig):
    nodes = [await GossipNode.create(c) for c in configs]
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.close()


def test_control_parses_and_rejects_unknown_keys():
    # prepare / execute
    control = FaultControl.from_dict(
        {
            "seed": 3,
            "drop": {"p": 0.5, "mode": "abort"},
            "links": {"*": {"delay_s": 0.1}, "b": {"bytes_per_s": 1000}},
            "partition": [["a", "b"], ["c"]],
        }
    )
    # assert
    assert control.drop_p == 0.5 and control.drop_mode == "abort"
    assert control.link("b").bytes_per_s == 1000 and control.link("z").delay_s == 0.1
    assert control.partitioned("a", "c") and control.partitioned("c", "b")
    assert not control.partitioned("a", "b") and not control.partitioned("a", "outsider")
    for bad in (
        {"dorp": 1},
        {"drop": {"p": 2}},
        {"drop": {"mode": "eat"}},
        {"links": {"a": {"bytes_per_s": 0}}},
        {"partition": "a,b"},
    ):
        with pytest.raises(ControlError):
            FaultControl.from_dict(bad)


def test_drop_decisions_are_replayable_and_close_to_p():
    # prepare
    control = FaultControl.from_dict({"seed": 11, "drop": {"p": 0.3}})
    # execute
    first = [control.decide("a", "b", r).action for r in range(2000)]
    again = [
        FaultControl.from_dict({"seed": 11, "drop": {"p": 0.3}}).decide("a", "b", r).action
        for r in range(2000)
    ]
    other_seed = [
        FaultControl.from_dict({"seed": 12, "drop": {"p": 0.3}}).decide("a", "b", r).action
        for r in range(2000)
    ]
    # assert
    assert first == again
    assert first != other_seed
    assert 0.25 < first.count("refuse") / len(first) < 0.35
    assert drop_draw(1, "a", "b", 5) == drop_draw(1, "a", "b", 5) != drop_draw(1, "a", "c", 5)


def test_control_file_reloads_on_change_and_keeps_last_good_on_garbage(tmp_path):
    # prepare
    path = tmp_path / "faults.json"
    control = ControlFile(path)
    # execute / assert: missing -> no faults; written -> seen; garbage -> previous kept; removed -> none
    assert control.current() == FaultControl()
    write_control(path, {"drop": {"p": 1.0}})
    assert control.current().drop_p == 1.0
    path.write_text("{not json")
    assert control.current().drop_p == 1.0
    write_control(path, {"drop": {"p": 0.25}})
    assert control.current().drop_p == 0.25
    path.unlink()
    assert control.current() == FaultControl()


async def test_drop_refuses_then_serves_after_the_file_changes(tmp_path):
    control = tmp_path / "faults.json"
    write_control(control, {"drop": {"p": 1.0}})
    async with _nodes(_config("a"), _config("b", control)) as (a, b):
        # prepare
        params = torch.arange(50_000, dtype=torch.float32)
        b.publish(params, round=0)
        # execute
        refused = await a.pull("b", b.address, 0)
        write_control(control, {"drop": {"p": 0.0}})
        served = await a.pull("b", b.address, 0)
        # assert
        assert refused.snapshot is None and "refused" in refused.error and "fault injection" in refused.error
        assert served.error is None and torch.equal(served.snapshot.params, params)


async def test_partition_refuses_across_the_cut_only(tmp_path):
    control = tmp_path / "faults.json"
    write_control(control, {"partition": [["a", "b"], ["c"]]})
    async with _nodes(_config("a"), _config("b", control), _config("c")) as (a, b, c):
        # prepare
        b.publish(torch.ones(10_000), round=0)
        # execute
        same_side = await a.pull("b", b.address, 0)
        across = await c.pull("b", b.address, 0)
        # assert
        assert same_side.error is None
        assert across.snapshot is None and "partitioned" in across.error


async def test_abort_fails_the_pull_mid_stream_and_the_mix_stays_whole(tmp_path):
    control = tmp_path / "faults.json"
    write_control(control, {"drop": {"p": 1.0, "mode": "abort"}})
    async with _nodes(_config("a"), _config("b", control), _config("c")) as (a, b, c):
        # prepare: constants, so any half-mixed buffer would show two different values
        a.publish(torch.full((200_000,), 1.0), round=0)
        b.publish(torch.full((200_000,), 5.0), round=0)
        c.publish(torch.full((200_000,), 9.0), round=0)
        # execute
        outcome = await a.pull("b", b.address, 0)
        result = await a.mix(0, {"b": b.address, "c": c.address}, 1 / 3, {"b": 1 / 3, "c": 1 / 3})
        # assert: b's stream broke after some bytes; the mix used a and c only, everywhere
        assert outcome.snapshot is None and outcome.error.startswith("unavailable")
        assert 0 < outcome.bytes_in < 200_000 * 4
        report = {n.peer_id: n for n in result.neighbours}
        assert not report["b"].answered and report["c"].answered
        assert 0 < report["b"].bytes_in < 200_000 * 4
        expected = (2 / 3) * 1.0 + (1 / 3) * 9.0
        assert float(result.params.min()) == pytest.approx(expected, abs=1e-5)
        assert float(result.params.max()) == pytest.approx(expected, abs=1e-5)


async def test_stall_runs_the_pull_into_its_deadline(tmp_path):
    control = tmp_path / "faults.json"
    write_control(control, {"drop": {"p": 1.0, "mode": "stall"}})
    async with _nodes(_config("a", pull_deadline_s=0.5), _config("b", control)) as (a, b):
        b.publish(torch.ones(1000), round=0)
        # execute
        outcome = await a.pull("b", b.address, 0)
        # assert
        assert outcome.snapshot is None and outcome.error.startswith("deadline")


async def test_bandwidth_and_delay_slow_the_link_to_the_named_requester_only(tmp_path):
    control = tmp_path / "faults.json"
    payload = 1_000_000  # bytes of fp32 params
    write_control(control, {"links": {"a": {"bytes_per_s": 2_000_000, "delay_s": 0.2}}})
    async with _nodes(_config("a"), _config("b", control), _config("c")) as (a, b, c):
        # prepare
        b.publish(torch.ones(payload // 4), round=0)
        await b.ready()
        # execute
        started = time.perf_counter()
        slow = await a.pull("b", b.address, 0)
        slow_seconds = time.perf_counter() - started
        fast = await c.pull("b", b.address, 0)
        # assert: a lower bound only (a token bucket cannot be faster than its rate; load only slows)
        assert slow.error is None and fast.error is None
        assert slow_seconds >= 0.2 + 0.8 * (payload - 0.05 * 2_000_000) / 2_000_000
        assert torch.equal(slow.snapshot.params, fast.snapshot.params)


async def test_the_fault_interceptor_is_installed_only_when_a_control_file_is_configured(
    monkeypatch, tmp_path
):
    # prepare: record every interceptor the node builds
    import gossip.node

    built = []
    real = gossip.node.FaultInterceptor
    monkeypatch.setattr(gossip.node, "FaultInterceptor", lambda *a: built.append(a) or real(*a))
    # execute
    async with _nodes(_config("plain"), _config("faulty", control=tmp_path / "faults.json")):
        pass
    # assert
    assert built == [(str(tmp_path / "faults.json"), "faulty")]
