"""The platform operator's admin API: its token, accounts and the number inventory."""

from __future__ import annotations

import httpx

from trunkline.api.testing import LiveApi


def test_admin_api_needs_its_bearer_token(live_api: LiveApi) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        resp = httpx.get(f"{live_api.url}/admin/v1/Accounts", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["code"] == 20003
    # An account's own credentials do not open the admin API either.
    sid, token = live_api.new_account()
    resp = httpx.get(f"{live_api.url}/admin/v1/Accounts", auth=(sid, token))
    assert resp.status_code == 401


def test_create_and_list_accounts(live_api: LiveApi) -> None:
    resp = live_api.admin.post(
        "/admin/v1/Accounts", data={"FriendlyName": "Tenant", "Type": "Trial"}
    )
    assert resp.status_code == 201
    body = resp.json()
    assert body["type"] == "Trial" and body["auth_token"]
    listed = live_api.admin.get("/admin/v1/Accounts", params={"PageSize": 1000}).json()
    row = next(a for a in listed["accounts"] if a["sid"] == body["sid"])
    assert row["auth_token"] is None
    bad = live_api.admin.post("/admin/v1/Accounts", data={"Type": "Gold"})
    assert bad.status_code == 400 and "FriendlyName" in bad.json()["message"]


def csv(*rows: str) -> str:
    return "phone_number,iso_country,number_type,locality,region\n" + "\n".join(rows) + "\n"


def test_number_import_is_all_or_nothing_and_skips_known(live_api: LiveApi) -> None:
    headers = {"Content-Type": "text/csv"}
    bad = live_api.admin.post(
        "/admin/v1/PhoneNumbers/Import",
        content=csv(
            "+19095550190,US,local,Ontario,CA", "9095550191,US,local,,", "+19095550192,USA,local,,"
        ),
        headers=headers,
    )
    assert bad.status_code == 400
    assert [e["line"] for e in bad.json()["errors"]] == [3, 4]
    listed = live_api.admin.get("/admin/v1/PhoneNumbers", params={"AreaCode": "909"}).json()
    assert listed["phone_numbers"] == []  # nothing of the bad file was loaded

    good = live_api.admin.post(
        "/admin/v1/PhoneNumbers/Import",
        content=csv("+19095550190,US,local,Ontario,CA", "+19095550191,US,tollfree,,"),
        headers=headers,
    )
    assert good.json() == {"imported": 2, "skipped": 0, "errors": []}
    again = live_api.admin.post(
        "/admin/v1/PhoneNumbers/Import",
        content=csv("+19095550190,US,local,Ontario,CA", "+19095550193,US,local,,"),
        headers=headers,
    )
    assert again.json() == {"imported": 1, "skipped": 1, "errors": []}
    numbers = live_api.admin.get(
        "/admin/v1/PhoneNumbers", params={"AreaCode": "909", "PageSize": 2}
    ).json()
    assert numbers["meta"]["next_page_url"] is not None  # the area's own partition is paged
    numbers["phone_numbers"] += live_api.admin.get(numbers["meta"]["next_page_url"]).json()[
        "phone_numbers"
    ]
    assert [n["phone_number"] for n in numbers["phone_numbers"]] == [
        "+19095550190",
        "+19095550191",
        "+19095550193",
    ]
    first = numbers["phone_numbers"][0]
    assert (first["locality"], first["region"], first["friendly_name"]) == (
        "Ontario",
        "CA",
        "(909) 555-0190",
    )


def test_import_without_header_is_refused(live_api: LiveApi) -> None:
    resp = live_api.admin.post(
        "/admin/v1/PhoneNumbers/Import",
        content="+19095550199,US\n",
        headers={"Content-Type": "text/csv"},
    )
    assert resp.status_code == 400
    assert "phone_number" in resp.json()["message"]
