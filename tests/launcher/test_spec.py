"""Swarm spec parsing and validation: every mistake is caught before any process is spawned."""

from __future__ import annotations

import pytest
import yaml

from launcher.demo import DEMO_SPEC
from launcher.spec import SpecError, load_plan, plan_from_dict


def test_peers_shortcut_gives_n_distinct_peers_with_disjoint_shares():
    # prepare / execute
    plan = plan_from_dict({"swarm": {"id": "s1", "seed": 7}}, size=4)
    # assert
    assert [p.peer_id for p in plan.peers] == ["p0", "p1", "p2", "p3"]
    assert [p.config.data.peer_index for p in plan.peers] == [0, 1, 2, 3]
    assert all(p.config.data.num_peers == 4 for p in plan.peers)
    assert all(p.config.gossip.swarm_id == "s1" for p in plan.peers)
    assert all(p.config.data.seed == 7 and p.config.train.seed == 7 for p in plan.peers)
    assert all(p.config.train.threads >= 1 for p in plan.peers)


def test_per_peer_knobs_override_defaults_and_base(monkeypatch):
    # prepare
    monkeypatch.setattr("launcher.spec.gpu_count", lambda: 0)
    spec = {
        "swarm": {"size": 3},
        "base": {"train": {"batch_size": 64, "period": 5}, "gossip": {"topology": "full"}},
        "defaults": {"threads": 1, "slowdown": 1.5},
        "peers": {
            1: {"slowdown": 3.0, "batch_size": 16, "id": "slowpoke"},
            2: {"share": 500, "set": {"train.period": 7}},
        },
    }
    # execute
    plan = plan_from_dict(spec)
    p0, p1, p2 = plan.peers
    # assert
    assert (p0.config.train.batch_size, p0.config.train.slowdown) == (64, 1.5)
    assert (p1.peer_id, p1.config.train.batch_size, p1.config.train.slowdown) == ("slowpoke", 16, 3.0)
    assert p1.config.gossip.peer_id == "slowpoke"
    assert p2.config.data.train_limit == 500 and p2.config.train.period == 7
    assert p0.config.train.period == 5 and p0.config.gossip.topology == "full"
    assert all(p.config.train.device == "cpu" for p in plan.peers)


def test_auto_device_round_robins_over_gpus(monkeypatch):
    # prepare
    monkeypatch.setattr("launcher.spec.gpu_count", lambda: 2)
    # execute
    plan = plan_from_dict({"peers": {2: {"device": "cpu"}}}, size=4)
    # assert
    assert [p.config.train.device for p in plan.peers] == ["cuda:0", "cuda:1", "cpu", "cuda:1"]


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"swarm": {"sizee": 3}}, "swarm: unknown key(s) sizee"),
        ({"swarm": {"size": 0}}, "swarm.size"),
        ({"swarm": {"size": "3"}}, "swarm.size"),
        ({"swarmm": {}}, "unknown key(s) swarmm"),
        ({"peers": {5: {"slowdown": 2.0}}}, "peers: key 5"),
        ({"peers": {0: {"slowdwn": 2.0}}}, "unknown key(s) slowdwn"),
        ({"peers": {0: {"batch_size": "big"}}}, "batch_size: expected images per step"),
        ({"peers": {0: {"slowdown": 0.5}}}, "train.slowdown"),
        ({"peers": {0: {"id": "p1"}}}, "used twice"),
        ({"base": {"train": {"bach_size": 3}}}, "train.bach_size: unknown key"),
        ({"base": {"gossip": {"mode": "sometimes"}}}, "gossip.mode"),
        ({"base": {"data": {"partition": "nonsense:9"}}}, "data.partition"),
        ({"defaults": {"set": {"train.nope": 1}}}, "train.nope"),
        ({"config": "no/such/file.yaml"}, "does not exist"),
    ],
)
def test_bad_specs_fail_with_a_message_naming_the_key(spec, needle):
    # prepare / execute
    with pytest.raises(SpecError) as info:
        plan_from_dict(spec)
    # assert
    assert needle in str(info.value)


def test_spec_file_with_base_config_file_and_cli_overrides(tmp_path):
    # prepare
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 32, "steps": 9}}))
    (tmp_path / "swarm.yaml").write_text(yaml.safe_dump({"config": "base.yaml", "swarm": {"size": 2}}))
    # execute
    plan = load_plan(tmp_path / "swarm.yaml", size=3, overrides=["train.steps=4"])
    # assert
    assert len(plan.peers) == 3
    assert all(p.config.train.batch_size == 32 and p.config.train.steps == 4 for p in plan.peers)
    assert plan.source == str(tmp_path / "swarm.yaml")


def test_example_specs_resolve():
    # prepare / execute
    plan = load_plan("examples/swarm.yaml")
    # assert: the example shows heterogeneity for real
    slowdowns = {p.config.train.slowdown for p in plan.peers}
    assert len(plan.peers) >= 3 and len(slowdowns) > 1


def test_demo_spec_is_the_paying_swarm_and_evaluates_the_random_init_once():
    # prepare / execute
    plan = load_plan(DEMO_SPEC)
    # assert: 8 SimSiam-ViT peers of 3 classes each; the shared random init evaluated on p0 only
    assert DEMO_SPEC.name == "demo.yaml" and len(plan.peers) == 8
    assert {p.config.objective.name for p in plan.peers} == {"simsiam"}
    assert {p.config.data.partition for p in plan.peers} == {"shards:3"}
    assert {p.config.train.batch_size for p in plan.peers} == {32}
    assert [p.config.eval.at_start for p in plan.peers] == [True] + [False] * 7
