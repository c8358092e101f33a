"""Trunkline's termination limits on /v1/Trunks: `CpsLimit` and `ConcurrentCallsLimit`.

They are extensions, so the official `twilio` package has no arguments for them: the tests
send them with `client.request` and check that the package still reads the answers.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx
import pytest
from twilio.rest import Client
from twilio.rest.trunking.v1.trunk import TrunkInstance

from trunkline.api.testing import LiveApi
from trunkline.domain.model import Trunk
from trunkline.domain.sid import new_sid


def call(client: Client, live_api: LiveApi, method: str, path: str, **data: str) -> Any:
    """A request with the SDK's own transport and auth; (status, body)."""
    resp = client.request(method, f"{live_api.url}{path}", data=data or None)
    return resp.status_code, json.loads(resp.text) if resp.text else None


def limits(body: dict[str, Any]) -> tuple[Any, Any]:
    return body["cps_limit"], body["concurrent_calls_limit"]


def test_new_trunk_has_platform_defaults(client: Client, live_api: LiveApi) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="defaults")
    status, body = call(client, live_api, "GET", f"/v1/Trunks/{trunk.sid}")
    assert status == 200
    assert limits(body) == (None, None)  # present, and null: the platform default applies


def test_create_update_fetch_and_reset_limits(client: Client, live_api: LiveApi) -> None:
    params = {"FriendlyName": "limited", "CpsLimit": "5", "ConcurrentCallsLimit": "30"}
    status, body = call(client, live_api, "POST", "/v1/Trunks", **params)
    assert status == 201
    assert limits(body) == (5, 30)
    sid = body["sid"]

    # The SDK still reads the trunk, and its own updates leave the limits alone.
    parsed = TrunkInstance(client.trunking.v1, body)
    assert (parsed.sid, parsed.friendly_name) == (sid, "limited")
    fetched = client.trunking.v1.trunks(sid).fetch()
    assert fetched.friendly_name == "limited" and fetched.secure is False
    client.trunking.v1.trunks(sid).update(friendly_name="renamed", secure=True)
    status, body = call(client, live_api, "GET", f"/v1/Trunks/{sid}")
    assert (body["friendly_name"], body["secure"], limits(body)) == ("renamed", True, (5, 30))

    # Each limit changes on its own.
    status, body = call(client, live_api, "POST", f"/v1/Trunks/{sid}", CpsLimit="12")
    assert status == 200 and limits(body) == (12, 30)
    status, body = call(
        client, live_api, "POST", f"/v1/Trunks/{sid}", ConcurrentCallsLimit="100000"
    )
    assert status == 200 and limits(body) == (12, 100000)

    # An empty value goes back to the platform default.
    status, body = call(client, live_api, "POST", f"/v1/Trunks/{sid}", CpsLimit="")
    assert status == 200 and limits(body) == (None, 100000)
    status, body = call(client, live_api, "POST", f"/v1/Trunks/{sid}", ConcurrentCallsLimit="")
    assert status == 200 and limits(body) == (None, None)
    status, body = call(client, live_api, "GET", f"/v1/Trunks/{sid}")
    assert limits(body) == (None, None)

    # Lists carry the fields too.
    call(client, live_api, "POST", f"/v1/Trunks/{sid}", CpsLimit="10000", ConcurrentCallsLimit="1")
    status, body = call(client, live_api, "GET", "/v1/Trunks")
    assert [limits(t) for t in body["trunks"]] == [(10000, 1)]
    assert [t.sid for t in client.trunking.v1.trunks.list()] == [sid]

    updates = [a for (_, r, s, a, _) in live_api.announcer.sent if s == sid and a == "updated"]
    assert len(updates) == 6  # every change is announced, so signaling's cache refreshes


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("CpsLimit", "0"),
        ("CpsLimit", "-1"),
        ("CpsLimit", "10001"),
        ("CpsLimit", "0.5"),
        ("CpsLimit", "2.0"),
        ("CpsLimit", "1e3"),
        ("CpsLimit", "+5"),
        ("CpsLimit", " 5"),
        ("CpsLimit", "5_000"),
        ("CpsLimit", "\u0665"),  # ARABIC-INDIC DIGIT FIVE: int() takes it, we do not
        ("CpsLimit", "five"),
        ("CpsLimit", "9" * 300),
        ("ConcurrentCallsLimit", "0"),
        ("ConcurrentCallsLimit", "100001"),
        ("ConcurrentCallsLimit", "1.5"),
        ("ConcurrentCallsLimit", "null"),
    ],
)
def test_bad_limits_are_20001_naming_the_parameter(
    client: Client, live_api: LiveApi, param: str, value: str
) -> None:
    status, body = call(
        client, live_api, "POST", "/v1/Trunks", FriendlyName="bad", **{param: value}
    )
    assert (status, body["code"], body["status"]) == (400, 20001, 400)
    assert param in body["message"]
    assert body["more_info"] == "https://www.twilio.com/docs/errors/20001"
    assert client.trunking.v1.trunks.list() == []  # nothing half-written

    trunk = client.trunking.v1.trunks.create(friendly_name="kept")
    call(client, live_api, "POST", f"/v1/Trunks/{trunk.sid}", CpsLimit="3")
    status, body = call(client, live_api, "POST", f"/v1/Trunks/{trunk.sid}", **{param: value})
    assert (status, body["code"]) == (400, 20001) and param in body["message"]
    status, body = call(client, live_api, "GET", f"/v1/Trunks/{trunk.sid}")
    assert limits(body) == (3, None)  # the failed update changed nothing


def test_bad_limit_through_plain_http_is_twilio_error_body(live_api: LiveApi) -> None:
    sid, token = live_api.new_account()
    resp = httpx.post(
        f"{live_api.url}/v1/Trunks", data={"ConcurrentCallsLimit": "-3"}, auth=(sid, token)
    )
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"code", "message", "more_info", "status"}
    assert body["code"] == 20001 and "ConcurrentCallsLimit" in body["message"]


# A trunk document exactly as the store wrote it before the limits existed.
OLD_TRUNK_DOC = {
    "sid": "",
    "account_sid": "",
    "friendly_name": "stored before the limits",
    "domain_name": None,
    "disaster_recovery_url": None,
    "disaster_recovery_method": "POST",
    "secure": False,
    "cnam_lookup_enabled": True,
    "symmetric_rtp_enabled": False,
    "transfer_mode": "disable-all",
    "transfer_caller_id": "from-transferee",
    "recording_mode": "do-not-record",
    "recording_trim": "do-not-trim",
    "date_created": "2025-01-02T11:23:45+00:00",
    "date_updated": "2025-01-02T11:23:45+00:00",
}


def test_old_documents_decode_with_default_limits() -> None:
    # Both backends keep a record as this JSON document and decode it with from_doc.
    doc = {**OLD_TRUNK_DOC, "sid": new_sid("TK"), "account_sid": new_sid("AC")}
    trunk = Trunk.from_doc(json.loads(json.dumps(doc)))
    assert (trunk.cps_limit, trunk.concurrent_calls_limit) == (None, None)
    assert trunk.cnam_lookup_enabled is True
    assert Trunk.from_doc(trunk.to_doc()) == trunk
    assert {"cps_limit", "concurrent_calls_limit"} <= set(trunk.to_doc())


def test_trunk_stored_before_the_change_still_loads(
    client: Client, live_api: LiveApi, account: tuple[str, str]
) -> None:
    account_sid, _ = account
    trunk_sid = new_sid("TK")
    doc = {**OLD_TRUNK_DOC, "sid": trunk_sid, "account_sid": account_sid}
    created_us = 1_735_817_025_000_000  # 2025-01-02T11:23:45Z
    db_path = live_api.settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as db:  # the rows the SQLite backend writes for a put
        db.execute(
            "INSERT INTO records (kind, key, created_us, doc) VALUES (?, ?, ?, ?)",
            ("trunk", trunk_sid, created_us, json.dumps(doc, separators=(",", ":"))),
        )
        db.execute(
            "INSERT INTO record_index (kind, name, value, created_us, key) VALUES (?, ?, ?, ?, ?)",
            ("trunk", "account", account_sid, created_us, trunk_sid),
        )
    db.close()

    fetched = client.trunking.v1.trunks(trunk_sid).fetch()
    assert fetched.friendly_name == "stored before the limits"
    assert [t.sid for t in client.trunking.v1.trunks.list()] == [trunk_sid]
    status, body = call(client, live_api, "GET", f"/v1/Trunks/{trunk_sid}")
    assert status == 200 and limits(body) == (None, None)

    status, body = call(client, live_api, "POST", f"/v1/Trunks/{trunk_sid}", CpsLimit="2")
    assert status == 200 and limits(body) == (2, None)
    assert body["cnam_lookup_enabled"] is True  # the old settings survive the rewrite
    with sqlite3.connect(db_path) as db:
        (stored,) = db.execute(
            "SELECT doc FROM records WHERE kind = 'trunk' AND key = ?", (trunk_sid,)
        ).fetchone()
    db.close()
    assert json.loads(stored)["cps_limit"] == 2
    assert json.loads(stored)["concurrent_calls_limit"] is None


def test_openapi_documents_the_limits_as_extensions(live_api: LiveApi) -> None:
    doc = httpx.get(f"{live_api.url}/openapi.json").json()
    for path in ("/v1/Trunks", "/v1/Trunks/{Sid}"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]
        params = body["application/x-www-form-urlencoded"]["schema"]["properties"]
        assert params["CpsLimit"]["x-trunkline-extension"] is True
        assert (params["CpsLimit"]["minimum"], params["CpsLimit"]["maximum"]) == (1, 10000)
        assert params["ConcurrentCallsLimit"]["maximum"] == 100000
        assert params["SymmetricRtpEnabled"]["type"] == "boolean"
    fields = doc["components"]["schemas"]["trunking.v1.trunk"]["properties"]
    assert fields["cps_limit"]["nullable"] is True
    assert fields["concurrent_calls_limit"]["x-trunkline-extension"] is True
