"""Config loading: YAML -> defaults -> overrides precedence, clear errors, resolved dump."""

from __future__ import annotations

import logging
import typing

import pytest
import yaml

from peer.config import Config, ConfigError, GossipConfig, config_to_dict, dump_config, load_config


def _yaml(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_precedence_yaml_then_defaults_then_overrides(tmp_path):
    # prepare
    path = _yaml(tmp_path, "name: x\ntrain:\n  batch_size: 32\n  period: 5\nobjective:\n  name: mae\n")
    # execute
    cfg = load_config(path, ["train.batch_size=64", "gossip.peers=[a:1, b:2]", "objective.lr=0.001"])
    # assert: override beats YAML, YAML beats default, untouched keys keep defaults
    assert cfg.train.batch_size == 64 and cfg.train.period == 5 and cfg.objective.name == "mae"
    assert cfg.train.log_every == Config().train.log_every
    assert cfg.gossip.peers == ["a:1", "b:2"] and cfg.objective.lr == 0.001


def test_int_accepted_for_float_and_null_for_optional(tmp_path):
    # prepare / execute
    cfg = load_config(None, ["train.time_budget_s=60", "data.train_limit=null", "train.steps=10"])
    # assert
    assert cfg.train.time_budget_s == 60.0 and isinstance(cfg.train.time_budget_s, float)
    assert cfg.data.train_limit is None and cfg.train.steps == 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_sise=3", "train.batch_sise: unknown key"),
        ("train.batch_size=abc", "train.batch_size: expected int, got str"),
        ("train.amp=3", "train.amp: expected bool"),
        ("train.bn_policy=mean", "train.bn_policy: expected one of 'average', 'local'"),
        ("gossip.peers=3", "gossip.peers: expected list of str"),
        ("train=5", "train: expected a mapping"),
        ("data.peer_index=4", "data.peer_index: expected 0 <= peer_index"),
        ("data.partition=dirichlet", "data.partition:"),
        ("train.lr_schedule=cosine", "train.lr_schedule: cosine needs train.steps"),
        ("batch_size", "expected the form section.key=value"),
    ],
)
def test_errors_name_the_key_and_expected_type(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, [override])


def test_unknown_key_in_yaml(tmp_path):
    path = _yaml(tmp_path, "objective:\n  nme: mae\n")
    with pytest.raises(ConfigError, match="objective.nme: unknown key"):
        load_config(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_yaml(tmp_path, "train: [1,\n"))


def test_dump_round_trips(tmp_path):
    # prepare
    cfg = load_config(None, ["objective.name=mae", "train.steps=7", "gossip.bootstrap=[/ip4/1.2.3.4/tcp/1]"])
    # execute
    path = dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(path)
    # assert
    assert again == cfg
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)


def test_example_configs_load():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    for name in ("train_fmnist.yaml", "train_fmnist_mae.yaml", "demo_fmnist.yaml"):
        cfg = load_config(examples / name)
        assert cfg.data.dataset == "fashion-mnist"


def test_gossip_words_are_gossips_own():
    # prepare
    from gossip.choco_round import COMPRESSIONS
    from gossip.mixing import RULES
    from protocol.frames import WIRE_DTYPES

    hints = typing.get_type_hints(GossipConfig)
    # execute
    rules, dtypes = typing.get_args(hints["mixing"]), typing.get_args(hints["wire_dtype"])
    compressions = typing.get_args(hints["compression"])
    # assert: the config's words are exactly the ones gossip takes
    assert set(rules) == set(RULES) and set(dtypes) == set(WIRE_DTYPES)
    assert set(compressions) == set(COMPRESSIONS)


def test_bad_compression_settings_are_config_errors():
    for override in ("gossip.compression=zip", "gossip.topk_fraction=0", "gossip.choco_gamma=2"):
        with pytest.raises(ConfigError, match=override.split("=")[0]):
            load_config(None, [override])


def test_old_spellings_of_gossip_words_still_load_and_say_so(tmp_path, caplog):
    # prepare
    path = _yaml(tmp_path, "gossip:\n  mixing: metropolis\n  wire_dtype: float16\n")
    # execute
    with caplog.at_level(logging.WARNING, logger="peer.config"):
        cfg = load_config(path, ["gossip.topology=ring"])
        overridden = load_config(None, ["gossip.wire_dtype=bfloat16"])
    # assert
    assert cfg.gossip.mixing == "metropolis_hastings" and cfg.gossip.wire_dtype == "fp16"
    assert overridden.gossip.wire_dtype == "bf16"
    assert "gossip.mixing: 'metropolis' is the old spelling of 'metropolis_hastings'" in caplog.text
    assert "gossip.wire_dtype: 'float16' is the old spelling of 'fp16'" in caplog.text


def test_a_directed_topology_needs_uniform_mixing():
    with pytest.raises(ConfigError, match="gossip.mixing: exponential_one_peer is directed"):
        load_config(None, ["gossip.topology=exponential_one_peer"])
    cfg = load_config(None, ["gossip.topology=exponential_one_peer", "gossip.mixing=uniform"])
    assert cfg.gossip.mixing == "uniform"
