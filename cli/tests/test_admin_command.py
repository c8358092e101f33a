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
