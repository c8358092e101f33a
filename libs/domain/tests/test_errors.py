"""The error table: every code is one of Twilio's, and SIP rejections name a SIP status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trunkline.domain.errors import Error

REFERENCE = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "reference"
    / "twilio_error_codes_trunking.json"
)


def test_codes_are_unique() -> None:
    codes = [error.value.code for error in Error]
    assert len(codes) == len(set(codes))


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference is not checked out")
def test_every_code_is_a_twilio_error_code() -> None:
    known = {entry["code"] for entry in json.loads(REFERENCE.read_text())}
    assert {error.value.code for error in Error} <= known


def test_sip_rejections_name_a_final_error_status() -> None:
    for error in Error:
        status = error.value.sip_status
        assert status is None or 400 <= status < 700, error
    assert Error.SOURCE_NOT_IN_ACL.value.sip_status == 403
    assert Error.BAD_CREDENTIALS.value.sip_status == 403
