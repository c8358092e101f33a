"""The API's own surfaces: OpenAPI document, console page, health and metrics."""

from __future__ import annotations

import httpx
from opentelemetry import trace

from trunkline.api.openapi import served_operations
from trunkline.api.testing import LiveApi
from trunkline.telemetry.testing import in_memory_spans


def test_openapi_document_describes_every_twilio_route(live_api: LiveApi) -> None:
    doc = httpx.get(f"{live_api.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    described = {(p, m) for p, item in doc["paths"].items() for m in item if m != "description"}
    undescribed = {op for op in served_operations() if op not in described}
    # Accounts has no Twilio description in the reference subset; the document says so.
    assert {p for p, _ in undescribed} <= {
        "/2010-04-01/Accounts.json",
        "/2010-04-01/Accounts/{Sid}.json",
    }
    assert ("/v1/Trunks", "post") in described
    assert all(f"{m.upper()} {p}" in doc["info"]["description"] for p, m in undescribed)


def test_console_page_is_served_with_a_strict_policy(live_api: LiveApi) -> None:
    resp = httpx.get(f"{live_api.url}/console")
    assert resp.status_code == 200
    assert "Trunkline console" in resp.text
    assert "default-src 'none'" in resp.headers["content-security-policy"]


def test_health_and_metrics(live_api: LiveApi) -> None:
    assert httpx.get(f"{live_api.url}/healthz").json()["status"] == "ok"
    httpx.get(f"{live_api.url}/v1/Trunks")  # a 401, counted under its route template
    metrics = httpx.get(f"{live_api.url}/metrics").text
    assert 'trunkline_api_requests_total{route="/v1/Trunks",status="401"}' in metrics


def test_unknown_path_and_method_use_twilio_error_bodies(live_api: LiveApi) -> None:
    missing = httpx.get(f"{live_api.url}/v1/Nope")
    assert missing.status_code == 404 and missing.json()["code"] == 20404
    wrong = httpx.put(f"{live_api.url}/v1/Trunks")
    assert wrong.status_code == 405 and wrong.json()["code"] == 20004


def test_each_request_is_a_server_span_and_announcements_happen_inside_it(
    live_api: LiveApi,
) -> None:
    exporter = in_memory_spans()
    exporter.clear()  # shared by the session: keep only this test's spans
    sid, token = live_api.new_account()
    resp = httpx.post(f"{live_api.url}/v1/Trunks", data={"FriendlyName": "t"}, auth=(sid, token))
    assert resp.status_code == 201
    [span] = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/Trunks"]
    assert span.kind == trace.SpanKind.SERVER
    assert span.attributes is not None
    assert 201 in (
        span.attributes.get("http.status_code"),
        span.attributes.get("http.response.status_code"),
    )
    # The NATS announcement of the new trunk is made inside the request's trace.
    assert live_api.announcer.trace_ids[resp.json()["sid"]] == span.context.trace_id
