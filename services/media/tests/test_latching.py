"""Symmetric RTP latching rules, one test per rule of trunkline.media.latching."""

from __future__ import annotations

import pytest

from trunkline.media.latching import Latch, LatchingPolicy, Verdict, is_usable

PUBLIC_SDP = ("8.8.4.4", 40000)
PRIVATE_SDP = ("192.168.1.20", 4000)
NAT = ("8.8.4.4", 61234)  # same public IP as the SDP, port rewritten by the NAT
NAT_OF_PRIVATE = ("9.9.9.9", 50000)
STRANGER = ("1.1.1.1", 40000)
HOLD = "0.0.0.0"  # noqa: S104 (an SDP hold address, RFC 3264 8.4, not a bind)
ON = LatchingPolicy(symmetric=True)
OFF = LatchingPolicy(symmetric=False)


def test_disabled_sends_to_sdp_and_ignores_sources() -> None:
    latch = Latch(PRIVATE_SDP, OFF)
    assert latch.on_packet(NAT_OF_PRIVATE, 1, 0.0) is Verdict.ACCEPTED
    assert latch.on_packet(STRANGER, 2, 0.1) is Verdict.ACCEPTED
    assert latch.send_to == PRIVATE_SDP
    assert latch.latched is None


def test_enabled_sends_to_sdp_until_a_packet_latches() -> None:
    assert Latch(PUBLIC_SDP, ON).send_to == PUBLIC_SDP


def test_public_sdp_address_latches_a_source_with_the_same_ip_and_other_port() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    assert latch.on_packet(NAT, 0x1234, 0.0) is Verdict.LATCHED
    assert latch.send_to == NAT
    assert latch.ssrc == 0x1234


def test_public_sdp_address_refuses_sources_with_another_ip() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    assert latch.on_packet(STRANGER, 1, 0.0) is Verdict.INELIGIBLE_SOURCE
    assert not Verdict.INELIGIBLE_SOURCE.accepted
    assert latch.send_to == PUBLIC_SDP


@pytest.mark.parametrize(
    "sdp_host",
    [
        "192.168.1.20",
        "10.0.0.5",
        "172.16.3.4",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.1.1",
        HOLD,
        "192.0.2.1",
        "fd00::1",
        "::1",
        "224.0.0.1",
        "pbx.example.com",
    ],
)
def test_unusable_sdp_address_lets_any_source_latch(sdp_host: str) -> None:
    assert not is_usable(sdp_host)
    latch = Latch((sdp_host, 4000), ON)
    assert latch.on_packet(NAT_OF_PRIVATE, 7, 0.0) is Verdict.LATCHED
    assert latch.send_to == NAT_OF_PRIVATE


def test_missing_sdp_address_lets_any_source_latch_and_sends_nowhere_before() -> None:
    latch = Latch(None, ON)
    assert latch.send_to is None
    assert latch.on_packet(STRANGER, 7, 0.0) is Verdict.LATCHED
    assert latch.send_to == STRANGER


@pytest.mark.parametrize("host", ["8.8.4.4", "2001:4860:4860::8888"])
def test_global_unicast_addresses_are_usable(host: str) -> None:
    assert is_usable(host)


def test_ipv6_sources_compare_by_address_not_spelling() -> None:
    latch = Latch(("2001:4860:4860::8888", 4000), ON)
    verdict = latch.on_packet(("2001:4860:4860:0:0:0:0:8888", 5000), 1, 0.0)
    assert verdict is Verdict.LATCHED


def test_hold_address_means_send_nowhere_until_latched() -> None:
    # RFC 3264 8.4: c=0.0.0.0 puts the stream on hold.
    assert Latch((HOLD, 4000), OFF).send_to is None
    assert Latch(("8.8.4.4", 0), OFF).send_to is None


def test_latched_stream_accepts_its_own_packets() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    latch.on_packet(NAT, 5, 0.0)
    for i in range(1, 100):
        assert latch.on_packet(NAT, 5, i * 0.02) is Verdict.ACCEPTED
    assert latch.send_to == NAT


def test_stray_packet_cannot_steal_an_active_stream() -> None:
    latch = Latch(PRIVATE_SDP, ON)
    latch.on_packet(NAT_OF_PRIVATE, 5, 0.0)
    latch.on_packet(NAT_OF_PRIVATE, 5, 1.0)
    assert latch.on_packet(STRANGER, 9, 1.1) is Verdict.STREAM_ACTIVE
    assert latch.send_to == NAT_OF_PRIVATE


def test_other_ssrc_from_the_latched_address_is_dropped_while_active() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    latch.on_packet(NAT, 5, 0.0)
    assert latch.on_packet(NAT, 6, 0.1) is Verdict.STREAM_ACTIVE
    assert latch.ssrc == 5


def test_new_ssrc_from_the_latched_address_takes_over_after_idle() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    latch.on_packet(NAT, 5, 0.0)
    assert latch.on_packet(NAT, 6, 0.5) is Verdict.RELATCHED
    assert latch.ssrc == 6
    assert latch.on_packet(NAT, 6, 0.52) is Verdict.ACCEPTED


def test_idle_stream_can_be_relatched_by_an_eligible_source() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    latch.on_packet(NAT, 5, 0.0)
    other_nat_port = ("8.8.4.4", 61300)
    assert latch.on_packet(other_nat_port, 5, 0.499) is Verdict.STREAM_ACTIVE
    assert latch.on_packet(other_nat_port, 5, 0.5) is Verdict.RELATCHED
    assert latch.send_to == other_nat_port


def test_dropped_packets_do_not_keep_a_stream_alive() -> None:
    latch = Latch(PRIVATE_SDP, ON)
    latch.on_packet(NAT_OF_PRIVATE, 5, 0.0)
    for i in range(1, 25):
        assert latch.on_packet(STRANGER, 9, i * 0.02) is Verdict.STREAM_ACTIVE
    assert latch.on_packet(STRANGER, 9, 0.5) is Verdict.RELATCHED


def test_ineligible_source_cannot_relatch_even_when_idle() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    latch.on_packet(NAT, 5, 0.0)
    assert latch.on_packet(STRANGER, 5, 100.0) is Verdict.INELIGIBLE_SOURCE
    assert latch.send_to == NAT


def test_relatches_are_limited_per_window() -> None:
    policy = LatchingPolicy(symmetric=True, relatch_idle=1.0, max_relatches=2, relatch_window=60.0)
    latch = Latch(None, policy)
    latch.on_packet(("9.9.9.1", 1), 1, 0.0)
    assert latch.on_packet(("9.9.9.2", 1), 2, 10.0) is Verdict.RELATCHED
    assert latch.on_packet(("9.9.9.3", 1), 3, 20.0) is Verdict.RELATCHED
    assert latch.on_packet(("9.9.9.4", 1), 4, 30.0) is Verdict.RELATCH_LIMITED
    assert not Verdict.RELATCH_LIMITED.accepted
    assert latch.send_to == ("9.9.9.3", 1)
    # The first re-latch (t=10) leaves the 60 s window at t=70.
    assert latch.on_packet(("9.9.9.4", 1), 4, 69.9) is Verdict.RELATCH_LIMITED
    assert latch.on_packet(("9.9.9.4", 1), 4, 70.0) is Verdict.RELATCHED


def test_zero_relatches_allowed_keeps_the_first_latch_forever() -> None:
    latch = Latch(None, LatchingPolicy(symmetric=True, max_relatches=0))
    latch.on_packet(("9.9.9.1", 1), 1, 0.0)
    assert latch.on_packet(("9.9.9.2", 1), 2, 1000.0) is Verdict.RELATCH_LIMITED


def test_new_sdp_address_drops_the_latch() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    latch.on_packet(NAT, 5, 0.0)
    latch.update_sdp(("9.9.9.9", 30000))
    assert latch.latched is None
    assert latch.send_to == ("9.9.9.9", 30000)
    assert latch.on_packet(NAT, 5, 0.1) is Verdict.INELIGIBLE_SOURCE
    assert latch.on_packet(("9.9.9.9", 30002), 8, 0.2) is Verdict.LATCHED


def test_new_sdp_port_on_the_same_ip_keeps_the_latch() -> None:
    latch = Latch(PUBLIC_SDP, ON)
    latch.on_packet(NAT, 5, 0.0)
    latch.update_sdp(("8.8.4.4", 40002))
    assert latch.send_to == NAT
    assert latch.sdp_address == ("8.8.4.4", 40002)


def test_hold_by_reoffer_then_resume_relearns_the_peer() -> None:
    latch = Latch(PRIVATE_SDP, ON)
    latch.on_packet(NAT_OF_PRIVATE, 5, 0.0)
    latch.update_sdp((HOLD, 4000))
    assert latch.send_to is None
    latch.update_sdp(PRIVATE_SDP)
    assert latch.on_packet(NAT_OF_PRIVATE, 5, 1.0) is Verdict.LATCHED


def test_negative_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        LatchingPolicy(symmetric=True, relatch_idle=-1.0)
