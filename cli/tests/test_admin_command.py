"""`trunkline admin` against a fake API: output, exit codes, and where it finds the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from trunkline.cli import admin as admin_module
from trunkline.cli.admin_client import AdminClient
from trunkline.cli.datadir import DataDir
from trunkline.cli.main import cli

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    data = DataDir.at(tmp_path / "data")
    data.create()
    data.load_or_create_admin_token()
    data.write_endpoints({"api_url": "http://api.test"})
    return data


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Handler]]:
    handlers: list[Handler] = []

    def fake_client(api_url: str, admin_token: str) -> AdminClient:
        return AdminClient(
            api_url, admin_token, transport=httpx.MockTransport(lambda r: handlers[0](r))
        )

    monkeypatch.setattr(admin_module, "AdminClient", fake_client)
    monkeypatch.delenv("TRUNKLINE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("TRUNKLINE_API_URL", raising=False)
    yield handlers


def run(data: DataDir, *args: str) -> Any:
    return CliRunner().invoke(cli, ["admin", "--data-dir", str(data.root), *args])


def test_accounts_create_prints_sid_and_token(data: DataDir, api: list[Handler]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url == "http://api.test/admin/v1/Accounts"
        assert request.headers["Authorization"] == f"Bearer {data.read_admin_token()}"
        account = {"sid": "AC" + "1" * 32, "auth_token": "tok", "type": "Full", "status": "active"}
        return httpx.Response(201, json=account)

    api.append(handle)
    result = run(data, "accounts", "create", "--name", "Acme", "--type", "Full")
    assert result.exit_code == 0, result.output
    assert "AC" + "1" * 32 in result.output and "tok" in result.output


def test_numbers_list_filters_by_area_code(data: DataDir, api: list[Handler]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.params["AreaCode"] == "415"
        number = {"phone_number": "+14155550100", "owner_phone_number_sid": None}
        return httpx.Response(200, json={"phone_numbers": [number]})

    api.append(handle)
    result = run(data, "--json", "numbers", "list", "--area-code", "415")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["phone_numbers"][0]["phone_number"] == "+14155550100"


def test_an_api_error_is_one_line_and_exits_non_zero(data: DataDir, api: list[Handler]) -> None:
    body = {"code": 20003, "message": "Authenticate", "status": 401}
    api.append(lambda r: httpx.Response(401, json=body))
    result = run(data, "accounts", "list")
    assert result.exit_code == 1
    assert result.output == "Error: GET /admin/v1/Accounts: HTTP 401 (code 20003): Authenticate\n"


def test_import_with_rejected_lines_exits_non_zero(
    data: DataDir, api: list[Handler], tmp_path: Path
) -> None:
    body = {"imported": 1, "skipped": 2, "errors": [{"line": 4, "message": "not E.164"}]}
    api.append(lambda r: httpx.Response(200, json=body))
    csv_file = tmp_path / "numbers.csv"
    csv_file.write_text("phone_number\n+14155550100\n")
    result = run(data, "numbers", "import", str(csv_file))
    assert result.exit_code == 1
    assert "Imported 1, skipped 2 already present, 1 rejected." in result.output
    assert f"{csv_file}:4: not E.164" in result.output


def test_caller_id_numbers_are_normalized_to_e164(data: DataDir, api: list[Handler]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.content == b"PhoneNumber=%2B14155550100"
        return httpx.Response(201, json={"sid": "CA1", "phone_number": "+14155550100"})

    api.append(handle)
    account = "AC" + "2" * 32
    result = run(data, "caller-ids", "verify", "--account", account, "--number", "(415) 555-0100")
    assert result.exit_code == 0, result.output
    assert f"Verified +14155550100 for {account}" in result.output


def test_without_a_platform_it_says_how_to_find_the_api(tmp_path: Path, api: list[Handler]) -> None:
    result = CliRunner().invoke(cli, ["admin", "--data-dir", str(tmp_path), "accounts", "list"])
    assert result.exit_code == 1
    assert "no API URL" in result.output


def test_cnam_import_reports_what_changed(
    data: DataDir, api: list[Handler], tmp_path: Path
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url == "http://api.test/admin/v1/Cnam/Import"
        assert request.headers["Content-Type"] == "text/csv"
        assert request.content == b"number,caller_name\n+14155550100,ACME CORP\n"
        body = {"imported": 1, "updated": 2, "unchanged": 3, "rejected": 0, "errors": []}
        return httpx.Response(200, json=body)

    api.append(handle)
    csv_file = tmp_path / "names.csv"
    csv_file.write_text("number,caller_name\n+14155550100,ACME CORP\n")
    result = run(data, "cnam", "import", str(csv_file))
    assert result.exit_code == 0, result.output
    assert result.output == "Imported 1, updated 2, 3 unchanged.\n"


def test_cnam_import_with_rejected_lines_lists_them_and_exits_non_zero(
    data: DataDir, api: list[Handler], tmp_path: Path
) -> None:
    # What the API answers: a 400 that is a Twilio error and the import report at once.
    body = {
        "code": 20001,
        "message": "2 CSV rows rejected, nothing imported; line 3: ...",
        "status": 400,
        "imported": 0,
        "updated": 0,
        "unchanged": 0,
        "rejected": 2,
        "errors": [
            {"line": 3, "message": "caller_name 'SIXTEEN CHARS NO' is longer than 15 characters"},
            {"line": 5, "message": "number '+4930555777' is not a North American number"},
        ],
    }
    api.append(lambda r: httpx.Response(400, json=body))
    csv_file = tmp_path / "names.csv"
    csv_file.write_text("number,caller_name\n")
    result = run(data, "cnam", "import", str(csv_file))
    assert result.exit_code == 1
    assert "Nothing imported: 2 rejected." in result.output
    assert f"{csv_file}:3: caller_name 'SIXTEEN CHARS NO' is longer" in result.output
    assert f"{csv_file}:5: number '+4930555777' is not a North American" in result.output


def test_cnam_show_and_delete_take_a_north_american_number(
    data: DataDir, api: list[Handler]
) -> None:
    seen: list[tuple[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode()))
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"phone_number": "+14155550100", "caller_name": "ACME"})

    api.append(handle)
    shown = run(data, "cnam", "show", "(415) 555-0100")
    assert shown.exit_code == 0, shown.output
    assert shown.output == "+14155550100  ACME\n"
    deleted = run(data, "cnam", "delete", "+14155550100")
    assert deleted.exit_code == 0, deleted.output
    assert "Deleted the caller name of +14155550100" in deleted.output
    assert seen == [
        ("GET", "/admin/v1/Cnam/%2B14155550100"),
        ("DELETE", "/admin/v1/Cnam/%2B14155550100"),
    ]
    refused = run(data, "cnam", "show", "+4930555777")
    assert refused.exit_code == 2
    assert "not a North American phone number" in refused.output
