"""The launcher's side of transport faults: validated atomic control files, and peers that honour
them only when a fault schedule runs."""

from __future__ import annotations

import json

import pytest

from gossip.faults import ControlError
from launcher.fault_control import with_fault_injection, write_control
from tests.launcher.swarm_util import tiny_plan


def test_write_control_validates_before_writing(tmp_path):
    # prepare
    path = tmp_path / "faults.json"
    # execute
    with pytest.raises(ControlError):
        write_control(path, {"drop": {"p": -1}})
    # assert
    assert not path.exists()
    write_control(path, {"seed": 1})
    assert json.loads(path.read_text()) == {"seed": 1}


def test_fault_injection_is_off_by_default_and_on_for_every_peer_of_a_faulted_plan():
    # prepare
    plan = tiny_plan(3, "t-inject", steps=4)
    # execute
    faulted = with_fault_injection(plan)
    # assert: the original plan is untouched, every peer of the new one honours its control file
    assert [p.config.gossip.fault_injection for p in plan.peers] == [False, False, False]
    assert [p.config.gossip.fault_injection for p in faulted.peers] == [True, True, True]
    assert [p.peer_id for p in faulted.peers] == [p.peer_id for p in plan.peers]
