"""The Call record: what the store keeps of a call, and how it is listed."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from trunkline.domain.model import ALL_KINDS, Call, CallDirection, CallStatus
from trunkline.domain.sid import is_sid, new_sid

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def started() -> Call:
    return Call(
        sid=new_sid("CA"),
        account_sid="AC" + "1" * 32,
        trunk_sid="TK" + "2" * 32,
        direction=CallDirection.TRUNKING_TERMINATING,
        from_="+14155550100",
        to="+15108675309",
        start_time=T0,
        edge="ashburn",
        sip_call_id="a84b4c76e66710@pbx.example.com",
        date_created=T0,
        date_updated=T0,
    )


def test_a_new_call_is_queued_and_listed_by_account_and_trunk() -> None:
    call = started()
    assert is_sid(call.sid, "CA") and call.key == call.sid
    assert call.status == CallStatus.QUEUED
    assert call.indexes() == {"account": call.account_sid, "trunk": call.trunk_sid}
    assert replace(call, trunk_sid=None).indexes() == {"account": call.account_sid}
    assert Call in ALL_KINDS


def test_the_stored_document_reads_back_as_the_same_call() -> None:
    ended = replace(
        started(),
        status=CallStatus.COMPLETED,
        answer_time=T0 + timedelta(seconds=5),
        end_time=T0 + timedelta(seconds=47),
        duration=42,
        sip_response_code=200,
        date_updated=T0 + timedelta(seconds=47),
    )
    doc = json.loads(json.dumps(ended.to_doc()))  # as the store writes it
    assert (
        doc["from_"] == "+14155550100" and doc["answer_time"] == "2026-03-04T05:06:12.123456+00:00"
    )
    assert Call.from_doc(doc) == ended
    assert Call.from_doc(json.loads(json.dumps(started().to_doc()))).end_time is None


def test_final_statuses() -> None:
    assert {s.value for s in CallStatus if s.is_final} == {
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
    }
