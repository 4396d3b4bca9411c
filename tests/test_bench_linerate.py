"""The line-rate benchmark's arithmetic, arguments and report, and (as root) its shaped link: the
delay line really delays, ``tbf`` is installed, and both namespaces are gone afterwards."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import _netns_links
from benchmarks.linerate_bench import RESNET18_FLOATS, Case, efficiency, parse_args, result_key, result_line


def test_efficiency_is_payload_bits_over_what_the_link_carries_in_that_time():
    # execute / assert: 125 MB at 1 Gbit/s takes 1 s at line rate
    assert efficiency(125_000_000, 1e9, 1.0) == pytest.approx(1.0)
    assert efficiency(125_000_000, 1e9, 2.0) == pytest.approx(0.5)
    # a ResNet-18 (46.8 MB) over 100 Mbit/s in 4 s
    assert efficiency(RESNET18_FLOATS * 4, 100e6, 4.0) == pytest.approx(RESNET18_FLOATS * 32 / 4e8)


@pytest.mark.parametrize("args", [(0, 1e9, 1.0), (1, 0.0, 1.0), (1, 1e9, 0.0)])
def test_efficiency_refuses_non_positive_inputs(args):
    with pytest.raises(ValueError):
        efficiency(*args)


def test_result_line_names_each_case_and_reports_its_median():
    # prepare: 12.5 MB at 1 Gbit/s: medians 0.2 s and 0.1 s -> 0.5 and 1.0
    cases = [
        Case("1g", "pull", "plain", [0.3, 0.2, 0.1], [0.2]),
        Case("1g", "exchange", "tls", [0.1, 0.1, 0.5], [0.1]),
    ]
    # execute
    line = result_line(cases, 12_500_000)
    # assert
    assert line == "RESULT eff_1g_pull=0.500 eff_1g_exchange_tls=1.000"
    assert result_key("100m_rtt30", "pull", "tls") == "eff_100m_rtt30_pull_tls"


def test_defaults_run_every_link_mode_and_security_on_a_resnet18():
    # execute
    args = parse_args([])
    # assert
    assert args.floats == RESNET18_FLOATS
    assert args.links == ["1g", "100m_rtt30"]
    assert args.modes == ["pull", "exchange", "tcp"]
    assert args.security == ["plain", "tls"]


def test_lists_are_parsed_and_unknown_names_refused(capsys):
    # execute
    args = parse_args(["--links", "100m_rtt30", "--modes", "pull,tcp", "--security", "tls", "--reps", "3"])
    # assert
    assert (args.links, args.modes, args.security, args.reps) == (["100m_rtt30"], ["pull", "tcp"], ["tls"], 3)
    for bad in (["--links", "10g"], ["--reps", "0"], ["--chunk-bytes", "100"], ["--grpc-option", "x=1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    assert "10g" in capsys.readouterr().err
    tuned = parse_args(["--grpc-option", "grpc.http2.max_frame_size=1048576", "--no-idle-slow-start"])
    assert tuned.grpc_option == ["grpc.http2.max_frame_size=1048576"] and tuned.no_idle_slow_start


def test_the_shaped_link_delays_and_rate_limits_and_is_torn_down():
    reason = _netns_links.unavailable_reason(need_delay=True)
    if reason is not None:
        pytest.skip(reason)
    # prepare: 40 ms RTT; connecting to a closed port takes one round trip (SYN, RST)
    link = _netns_links.LinkSpec(rate_mbit=100, rtt_ms=40)
    probe = "import socket,time\nt=time.perf_counter()\ntry: socket.create_connection((%r, 9), 5)\n"
    probe += "except ConnectionRefusedError: print(time.perf_counter()-t)"
    with _netns_links.shaped_pair(link, prefix="dssl-lrtest") as pair:
        # execute
        refused = subprocess.run(
            [*pair.exec_prefix(pair.a), sys.executable, "-c", probe % pair.addr_b],
            capture_output=True,
            text=True,
            timeout=30,
        )
        shown = ["tc", "-n", pair.a, "qdisc", "show"]
        qdisc = subprocess.run(shown, capture_output=True, text=True, timeout=10)
        names = (pair.a, pair.b)
    # assert (shaped_pair has torn everything down by now, in its finally)
    assert 0.04 <= float(refused.stdout) < 1.0, refused.stderr
    assert "tbf" in qdisc.stdout and "100Mbit" in qdisc.stdout
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    assert not any(name in listed for name in names)
