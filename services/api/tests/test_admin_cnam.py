"""The platform operator's CNAM table through the admin API: CSV import (all or nothing, the
15-character rule, North American numbers only), fetch and delete."""

from __future__ import annotations

import httpx

from trunkline.api.testing import LiveApi

CSV = {"Content-Type": "text/csv"}


def csv(*rows: str) -> str:
    return "number,caller_name\n" + "\n".join(rows) + "\n"


def fetch(live_api: LiveApi, number: str) -> httpx.Response:
    return live_api.admin.get(f"/admin/v1/Cnam/{number}")


def test_a_good_file_is_imported_and_a_later_one_updates_it(live_api: LiveApi) -> None:
    good = live_api.admin.post(
        "/admin/v1/Cnam/Import",
        content=csv("+14085550100,ACME CORP", " +14085550101 , SMITH JOHN ", "+14085550102,X"),
        headers=CSV,
    )
    assert good.status_code == 200
    assert good.json() == {
        "imported": 3,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "errors": [],
    }
    entry = fetch(live_api, "+14085550101").json()
    assert (entry["phone_number"], entry["caller_name"]) == ("+14085550101", "SMITH JOHN")
    assert entry["date_created"].endswith("+00:00") or entry["date_created"].endswith("Z")

    again = live_api.admin.post(
        "/admin/v1/Cnam/Import",
        content=csv("+14085550100,ACME CORP", "+14085550101,SMITH JANE", "+14085550103,NEW"),
        headers=CSV,
    )
    assert again.json() == {
        "imported": 1,
        "updated": 1,
        "unchanged": 1,
        "rejected": 0,
        "errors": [],
    }
    updated = fetch(live_api, "+14085550101").json()
    assert updated["caller_name"] == "SMITH JANE"
    assert updated["date_created"] == entry["date_created"]


def test_a_file_with_bad_rows_imports_nothing_and_names_their_lines(live_api: LiveApi) -> None:
    bad = live_api.admin.post(
        "/admin/v1/Cnam/Import",
        content=csv(
            "+15105550100,FIRST GOOD",
            "5105550101,NO PLUS",
            "+4930555777,BERLIN",
            "+15105550102,FIFTEEN CHARS X",
            "+15105550103,SIXTEEN CHARS NO",
            "+15105550104,",
            "+15105550100,TWICE",
            "+15105550105,CAF\u00c9",
        ),
        headers=CSV,
    )
    assert bad.status_code == 400
    body = bad.json()
    assert [(e["line"], e["message"].split(" ")[0]) for e in body["errors"]] == [
        (3, "number"),
        (4, "number"),
        (6, "caller_name"),
        (7, "caller_name"),
        (8, "number"),
        (9, "caller_name"),
    ]
    assert "not E.164" in body["errors"][0]["message"]
    assert "not a North American number" in body["errors"][1]["message"]
    assert "longer than 15 characters" in body["errors"][2]["message"]
    assert "listed twice (first on line 2)" in body["errors"][4]["message"]
    assert (body["imported"], body["rejected"]) == (0, 6)
    # A Twilio-style error too, whose message names the first bad line.
    assert (body["code"], body["status"]) == (20001, 400)
    assert body["message"].startswith("6 CSV rows rejected, nothing imported; line 3: number")
    for number in ("+15105550100", "+15105550102"):
        assert fetch(live_api, number).status_code == 404  # nothing of the file was loaded

    fixed = live_api.admin.post(
        "/admin/v1/Cnam/Import",
        content=csv("+15105550100,FIRST GOOD", "+15105550102,FIFTEEN CHARS X"),
        headers=CSV,
    )
    assert fixed.json()["imported"] == 2
    assert fetch(live_api, "+15105550102").json()["caller_name"] == "FIFTEEN CHARS X"


def test_a_file_without_the_header_is_refused(live_api: LiveApi) -> None:
    resp = live_api.admin.post(
        "/admin/v1/Cnam/Import", content="+16505550100,NO HEADER\n", headers=CSV
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == 20001
    assert "number, caller_name" in resp.json()["message"]


def test_an_entry_is_fetched_and_deleted(live_api: LiveApi) -> None:
    live_api.admin.post(
        "/admin/v1/Cnam/Import", content=csv("+17075550100,GONE SOON"), headers=CSV
    ).raise_for_status()
    assert live_api.admin.get("/admin/v1/Cnam/%2B17075550100").json()["caller_name"] == "GONE SOON"
    assert live_api.admin.delete("/admin/v1/Cnam/+17075550100").status_code == 204
    missing = fetch(live_api, "+17075550100")
    assert (missing.status_code, missing.json()["code"]) == (404, 20404)
    assert live_api.admin.delete("/admin/v1/Cnam/+17075550100").status_code == 404
    assert fetch(live_api, "+4930555777").status_code == 404


def test_the_cnam_table_needs_the_admin_token(live_api: LiveApi) -> None:
    sid, token = live_api.new_account()
    for auth in (None, (sid, token)):
        resp = httpx.post(
            f"{live_api.url}/admin/v1/Cnam/Import",
            content=csv("+17075550199,INTRUDER"),
            headers=CSV,
            auth=auth,
        )
        assert resp.status_code == 401
