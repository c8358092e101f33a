"""Termination calls the platform ends by itself: the maximum call duration and the media
timeout, each with a platform of its own set to seconds instead of the defaults (24 h and
60 s), since both are platform settings. The PBX and the carrier are sipp; neither sends
RTP, which is what the media timeout notices.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from trunkline.harness.modules import load_module

pytestmark = pytest.mark.e2e


def _load_support() -> Any:
    return load_module(Path(__file__).with_name("termination_support.py"))


support = _load_support()


def platform(
    tmp_path_factory: pytest.TempPathFactory, sipp: str, environment: Mapping[str, str]
) -> Iterator[Any]:
    yield from support.start_termination(tmp_path_factory, sipp, environment)


@pytest.fixture
def short_calls(
    tmp_path_factory: pytest.TempPathFactory, harness_sip: Mapping[str, Any]
) -> Iterator[Any]:
    yield from platform(tmp_path_factory, harness_sip["sipp"], {"TRUNKLINE_MAX_CALL_DURATION": "2"})


@pytest.fixture
def quick_media_timeout(
    tmp_path_factory: pytest.TempPathFactory, harness_sip: Mapping[str, Any]
) -> Iterator[Any]:
    yield from platform(tmp_path_factory, harness_sip["sipp"], {"TRUNKLINE_MEDIA_TIMEOUT": "2"})


def hung_up_by_the_platform(termination: Any, tmp_path: Path, name: str) -> tuple[Any, float]:
    """A call that only the platform ends: both sides wait for a BYE. Its CALLS ended event,
    and how long the PBX waited from its ACK to the BYE."""
    sipp = termination.sipp(tmp_path)
    trunk = termination.trunk(name)
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx(
            "pbx_uac_callee_hangup.xml",
            domain=trunk.domain,
            caller=termination.caller,
            timeout=20.0,
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()  # it got a BYE too
    (ack,) = run.sent("ACK")
    (bye,) = run.requests_received("BYE")
    events = support.call_events(
        termination.platform.nats_url, termination.account_sid, support.call_sid_of(run)
    )
    return events["ended"], bye.seconds - ack.seconds


def test_termination_ends_both_legs_at_the_maximum_call_duration(
    short_calls: Any, tmp_path: Path
) -> None:
    started = time.monotonic()
    ended, waited = hung_up_by_the_platform(short_calls, tmp_path, "maxdur")
    assert ended.ended_by == "platform"
    assert "maximum call duration" in ended.reason
    assert ended.status == "completed" and ended.duration_seconds >= 2
    assert 1.8 <= waited < 6, waited
    assert time.monotonic() - started < 20


def test_termination_ends_both_legs_when_no_rtp_arrives_for_the_media_timeout(
    quick_media_timeout: Any, tmp_path: Path
) -> None:
    ended, waited = hung_up_by_the_platform(quick_media_timeout, tmp_path, "mediatimeout")
    assert ended.ended_by == "platform"
    assert "media timeout" in ended.reason
    assert ended.status == "completed"
    assert 1.5 <= waited < 8, waited
