"""The admin client: bearer auth, the CSV import body and one-line Twilio-style errors."""

from __future__ import annotations

import httpx
import pytest

from trunkline.cli.admin_client import AdminClient, AdminError


def client(handler: httpx.MockTransport) -> AdminClient:
    return AdminClient("http://api.test/", "adm1n", transport=handler)


def test_requests_carry_the_admin_token_and_form_bodies() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"sid": "AC1", "auth_token": "t"})

    account = client(httpx.MockTransport(handle)).create_account("Acme", "Trial")
    assert account["sid"] == "AC1"
    [request] = seen
    assert request.headers["Authorization"] == "Bearer adm1n"
    assert request.url == "http://api.test/admin/v1/Accounts"
    assert request.content == b"FriendlyName=Acme&Type=Trial"


def test_import_sends_csv() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["Content-Type"] == "text/csv"
        assert request.content.startswith(b"phone_number,")
        return httpx.Response(200, json={"imported": 1, "skipped": 0, "errors": []})

    result = client(httpx.MockTransport(handle)).import_numbers("phone_number,iso_country\n")
    assert result["imported"] == 1


def test_http_errors_show_the_twilio_code_and_message() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = {"code": 20404, "message": "The requested resource was not found", "status": 404}
        return httpx.Response(404, json=body)

    with pytest.raises(AdminError) as error:
        client(httpx.MockTransport(handle)).verify_caller_id("AC1", "+14155550100")
    assert str(error.value) == (
        "POST /admin/v1/Accounts/AC1/OutgoingCallerIds: HTTP 404 (code 20404): "
        "The requested resource was not found"
    )


def test_an_unreachable_api_says_so() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(AdminError) as error:
        client(httpx.MockTransport(handle)).list_accounts()
    assert "cannot reach the API at http://api.test" in str(error.value)
    assert "\n" not in str(error.value)


def test_listings_follow_next_page_urls_on_our_own_base_url() -> None:
    pages = {
        "0": {
            "phone_numbers": [{"phone_number": "+14155550100"}],
            "meta": {"next_page_url": "http://public.example/admin/v1/PhoneNumbers?Page=1"},
        },
        "1": {"phone_numbers": [{"phone_number": "+14155550101"}], "meta": {}},
    }
    requested: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        return httpx.Response(200, json=pages[request.url.params.get("Page", "0")])

    numbers = client(httpx.MockTransport(handle)).list_numbers({"AreaCode": "415"})
    assert [n["phone_number"] for n in numbers] == ["+14155550100", "+14155550101"]
    assert requested == [
        "http://api.test/admin/v1/PhoneNumbers?PageSize=1000&AreaCode=415",
        "http://api.test/admin/v1/PhoneNumbers?Page=1",
    ]


def test_a_rejected_import_returns_the_report_instead_of_raising() -> None:
    report = {"code": 20001, "message": "1 CSV rows rejected", "status": 400}
    report |= {"imported": 0, "errors": [{"line": 2, "message": "not E.164"}]}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=report)

    for importer in (AdminClient.import_numbers, AdminClient.import_cnam):
        assert importer(client(httpx.MockTransport(handle)), "x\n") == report


def test_an_import_refused_as_a_whole_still_raises() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = {"code": 20001, "message": "CSV header must name the columns", "status": 400}
        return httpx.Response(400, json=body)

    with pytest.raises(AdminError, match=r"HTTP 400 \(code 20001\): CSV header"):
        client(httpx.MockTransport(handle)).import_cnam("+14155550100,X\n")
