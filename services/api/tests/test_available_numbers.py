"""2010-04-01 AvailablePhoneNumbers through the official twilio package.

The inventory is shared by every test of the session, so each test stocks numbers in an area
code no other test has used (lines 555-0100 on, the range reserved for fiction) and searches
within it, or filters on values only its own numbers carry.
"""

from __future__ import annotations

import random
import uuid

import httpx
import pytest
from twilio.rest import Client

from trunkline.api.testing import LiveApi, fails

COLUMNS = ("phone_number", "iso_country", "number_type", "locality", "region", "postal_code",
           "rate_center", "lata")  # fmt: skip


def import_rows(live_api: LiveApi, rows: list[dict[str, str]]) -> dict[str, int]:
    lines = [",".join(COLUMNS)]
    lines += [",".join(row.get(c, "") for c in COLUMNS) for row in rows]
    resp = live_api.admin.post(
        "/admin/v1/PhoneNumbers/Import",
        content="\n".join(lines) + "\n",
        headers={"Content-Type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def stock(live_api: LiveApi, *rows: dict[str, str], number_type: str = "local") -> list[str]:
    """One new free US number per row (columns override the defaults), all in an area code no
    other test has stocked; every test starts at line 0100, so a used area code shows up as a
    skipped first line."""
    for _ in range(100):
        npa = str(random.randint(200, 999))
        numbers = [f"+1{npa}55501{i:02d}" for i in range(len(rows))]
        result = import_rows(
            live_api,
            [
                {"iso_country": "US", "number_type": number_type, **row, "phone_number": number}
                for number, row in zip(numbers, rows, strict=True)
            ],
        )
        if result["skipped"] == 0:
            return numbers
    raise AssertionError("no unused area code found in 100 tries")


def npa(number: str) -> str:
    return number[2:5]


def test_local_search_by_area_code_shows_twilio_fields(client: Client, live_api: LiveApi) -> None:
    columns = {
        "locality": "Hilo",
        "region": "HI",
        "postal_code": "96720",
        "rate_center": "HILO",
        "lata": "834",
    }
    numbers = stock(live_api, columns, columns, columns)
    found = client.available_phone_numbers("US").local.list(area_code=npa(numbers[0]))
    assert [n.phone_number for n in found] == numbers
    first = found[0]
    assert first.friendly_name == f"({npa(numbers[0])}) 555-0100"
    assert (first.locality, first.region, first.postal_code) == ("Hilo", "HI", "96720")
    assert (first.rate_center, first.lata, first.iso_country) == ("HILO", "834", "US")
    assert first.address_requirements == "none" and first.beta is False
    assert first.capabilities == {"voice": True, "SMS": True, "MMS": True, "fax": False}
    assert first.latitude is None and first.longitude is None


def test_search_response_has_the_twilio_shape(account: tuple[str, str], live_api: LiveApi) -> None:
    numbers = stock(live_api, {})
    sid, token = account
    resp = httpx.get(
        f"{live_api.url}/2010-04-01/Accounts/{sid}/AvailablePhoneNumbers/US/Local.json",
        params={"AreaCode": npa(numbers[0])},
        auth=(sid, token),
    )
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"available_phone_numbers", "uri"}
    assert body["uri"] == f"/2010-04-01/Accounts/{sid}/AvailablePhoneNumbers/US/Local.json"
    assert set(body["available_phone_numbers"][0]) == {
        "friendly_name", "phone_number", "lata", "locality", "rate_center", "latitude",
        "longitude", "region", "postal_code", "iso_country", "address_requirements", "beta",
        "capabilities",
    }  # fmt: skip


def test_search_filters(client: Client, live_api: LiveApi) -> None:
    town = f"Town-{uuid.uuid4().hex[:8]}"
    numbers = stock(
        live_api,
        {"locality": town, "region": "CA", "postal_code": "94105", "lata": "722",
         "rate_center": "SNFC"},
        {"locality": town, "region": "CA", "postal_code": "94107", "lata": "722",
         "rate_center": "OKLD"},
        {"locality": town, "region": "NV", "postal_code": "89501", "lata": "720",
         "rate_center": "RENO"},
    )  # fmt: skip
    area = npa(numbers[0])
    local = client.available_phone_numbers("US").local

    def found(**filters: object) -> list[str]:
        return [n.phone_number for n in local.list(area_code=area, **filters)]

    assert found(in_region="CA") == numbers[:2]
    assert found(in_region="ca") == numbers[:2]  # case does not matter
    assert found(in_postal_code="94107") == [numbers[1]]
    assert found(in_locality=town.lower()) == numbers
    assert found(in_lata="722", in_rate_center="OKLD") == [numbers[1]]
    assert found(in_lata="720") == [numbers[2]]
    assert found(in_region=numbers[2]) == [numbers[2]]  # "the same region as that number"
    assert found(voice_enabled=True, sms_enabled=True) == numbers
    assert found(fax_enabled=True) == []
    assert found(fax_enabled=False) == numbers
    assert found(exclude_all_address_required=True, beta=False) == numbers
    assert found(page_size=2) == numbers[:2]
    # Filters alone (no AreaCode) search the whole country's stock.
    assert [n.phone_number for n in local.list(in_locality=town, in_region="NV")] == [numbers[2]]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("55501**", [0, 1, 2]),
        ("0101", [1]),
        ("+1{npa}5550102", [2]),
        ("+1{npa}555%", [0, 1, 2]),
        ("JKL01", [0, 1, 2]),  # keypad letters: J, K and L are all 5
        ("0*02$", [2]),
        ("0100$", [0]),
        ("+5550100", []),  # + anchors at the start of the E.164 number
    ],
)
def test_contains_patterns(
    client: Client, live_api: LiveApi, pattern: str, expected: list[int]
) -> None:
    numbers = stock(live_api, {}, {}, {})
    area = npa(numbers[0])
    found = client.available_phone_numbers("US").local.list(
        area_code=area, contains=pattern.format(npa=area)
    )
    assert [n.phone_number for n in found] == [numbers[i] for i in expected]


@pytest.mark.parametrize("code", ["12", "1234", "abc", "055", "155"])
def test_invalid_area_code_is_21451(client: Client, code: str) -> None:
    message = fails(
        lambda: client.available_phone_numbers("US").local.list(area_code=code), 400, 21451
    )
    assert "AreaCode" in message


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"contains": "5"}, "Contains"),
        ({"contains": "55-01"}, "Contains"),
        ({"contains": "**"}, "Contains"),
        ({"contains": "1" * 17}, "Contains"),
        ({"in_rate_center": "SNFC"}, "InRateCenter"),
        ({"in_region": "+1555"}, "InRegion"),
        ({"near_number": "+14155550100"}, "NearNumber"),
        ({"sms_enabled": "maybe"}, "SmsEnabled"),
        ({"page_size": 1001}, "PageSize"),
    ],
)
def test_invalid_search_parameters_are_400_naming_them(
    client: Client, params: dict[str, object], parameter: str
) -> None:
    message = fails(lambda: client.available_phone_numbers("US").local.list(**params), 400, 20001)
    assert parameter in message


def test_each_type_searches_only_its_own_numbers(client: Client, live_api: LiveApi) -> None:
    local = stock(live_api, {})
    toll_free = stock(live_api, {}, number_type="tollfree")
    mobile = stock(live_api, {}, number_type="mobile")
    country = client.available_phone_numbers("US")
    assert [n.phone_number for n in country.toll_free.list(area_code=npa(toll_free[0]))] == (
        toll_free
    )
    assert [n.phone_number for n in country.mobile.list(area_code=npa(mobile[0]))] == mobile
    assert country.local.list(area_code=npa(toll_free[0])) == []
    assert country.toll_free.list(area_code=npa(local[0])) == []


def test_countries_list_and_country_resource(
    client: Client, account: tuple[str, str], live_api: LiveApi
) -> None:
    block = random.randint(0, 99)
    result = import_rows(
        live_api,
        [
            {"phone_number": f"+44207946{block:02d}{i}", "iso_country": "GB",
             "number_type": "local", "locality": "London"}
            for i in range(2)
        ]
        + [{"phone_number": f"+447700900{block:02d}0", "iso_country": "GB",
            "number_type": "mobile"}],
    )  # fmt: skip
    assert result["imported"] + result["skipped"] == 3
    sid, _ = account
    base = f"/2010-04-01/Accounts/{sid}/AvailablePhoneNumbers"

    countries = {c.country_code: c for c in client.available_phone_numbers.list()}
    assert {"GB", "US"} <= set(countries)
    gb = countries["GB"]
    assert gb.country == "United Kingdom" and gb.beta is False
    assert gb.uri == f"{base}/GB.json"
    assert gb.subresource_uris == {
        "local": f"{base}/GB/Local.json",
        "mobile": f"{base}/GB/Mobile.json",
    }

    fetched = client.available_phone_numbers("GB").fetch()
    assert fetched.country_code == "GB" and fetched.subresource_uris == gb.subresource_uris
    london = client.available_phone_numbers("GB").local.list(in_locality="London")
    assert london and all(n.iso_country == "GB" for n in london)
    assert client.available_phone_numbers("US").fetch().country == "United States"

    for call in (
        lambda: client.available_phone_numbers("XX").fetch(),
        lambda: client.available_phone_numbers("XX").local.list(),
        lambda: client.available_phone_numbers("USA").fetch(),
    ):
        fails(call, 404, 20404)


def test_another_accounts_path_is_404(client: Client, other_client: Client) -> None:
    other_sid = other_client.username
    for call in (
        lambda: client.api.v2010.accounts(other_sid).available_phone_numbers.list(),
        lambda: client.api.v2010.accounts(other_sid).available_phone_numbers("US").fetch(),
        lambda: client.api.v2010.accounts(other_sid).available_phone_numbers("US").local.list(),
    ):
        fails(call, 404, 20404)


def test_search_needs_credentials(live_api: LiveApi) -> None:
    sid, _ = live_api.new_account()
    resp = httpx.get(
        f"{live_api.url}/2010-04-01/Accounts/{sid}/AvailablePhoneNumbers/US/Local.json"
    )
    assert resp.status_code == 401 and resp.json()["code"] == 20003
