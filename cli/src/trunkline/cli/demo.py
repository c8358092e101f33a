"""`trunkline demo on-net`: two trunks on the running platform, ready for two softphones.

The second of the two commands a newcomer runs (after `make up`): it configures, through the
platform's Twilio-compatible API with the bootstrap account, what an operator would with the
SDK — an IP access control list for 127.0.0.1, trunks `demo-a` and `demo-b` that use it, a
number on each, and trunk B's origination URL pointing at softphone B — and prints how to
set up the two softphones. Softphone A then calls B's number through trunk A; the platform
routes it on-net to trunk B, which rings softphone B. Running it again reuses what exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx

from trunkline.cli.datadir import DataDir
from trunkline.cli.options import data_dir_option

LOOPBACK = "127.0.0.1"


class Api:
    """Just the REST calls the demo needs, with the bootstrap account's credentials."""

    def __init__(self, url: str, account_sid: str, auth_token: str) -> None:
        self.account = account_sid
        self.http = httpx.Client(base_url=url, auth=(account_sid, auth_token), timeout=10)

    def get(self, path: str, **params: str) -> Any:
        return self._check(self.http.get(path, params=params))

    def post(self, path: str, **form: str) -> Any:
        return self._check(self.http.post(path, data=form))

    @staticmethod
    def _check(answer: httpx.Response) -> Any:
        if answer.status_code >= 400:
            body = (
                answer.json()
                if answer.headers.get("content-type", "").startswith("application/json")
                else {"message": answer.text}
            )
            raise click.ClickException(f"{answer.request.url.path}: {body.get('message')}")
        return answer.json()

    def v2010(self, path: str) -> str:
        return f"/2010-04-01/Accounts/{self.account}{path}"


def _acl(api: Api) -> str:
    lists = api.get(api.v2010("/SIP/IpAccessControlLists.json"))["ip_access_control_lists"]
    found = next((a for a in lists if a["friendly_name"] == "demo-loopback"), None)
    if found is not None:
        return str(found["sid"])
    acl = api.post(api.v2010("/SIP/IpAccessControlLists.json"), FriendlyName="demo-loopback")
    api.post(
        api.v2010(f"/SIP/IpAccessControlLists/{acl['sid']}/IpAddresses.json"),
        FriendlyName="this machine",
        IpAddress=LOOPBACK,
    )
    return str(acl["sid"])


def _trunk(api: Api, name: str, zone: str, acl_sid: str) -> dict[str, Any]:
    domain = f"{name}.pstn.{zone}"
    trunks = api.get("/v1/Trunks", PageSize="1000")["trunks"]
    trunk = next((t for t in trunks if t["domain_name"] == domain), None)
    if trunk is None:
        trunk = api.post("/v1/Trunks", FriendlyName=name, DomainName=domain)
        api.post(f"/v1/Trunks/{trunk['sid']}/IpAccessControlLists", IpAccessControlListSid=acl_sid)
    return dict(trunk)


def _number(api: Api, trunk_sid: str) -> str:
    owned = api.get(api.v2010("/IncomingPhoneNumbers.json"), PageSize="1000")
    on_trunk = [n for n in owned["incoming_phone_numbers"] if n.get("trunk_sid") == trunk_sid]
    if on_trunk:
        return str(on_trunk[0]["phone_number"])
    available = api.get(api.v2010("/AvailablePhoneNumbers/US/Local.json"), PageSize="1")
    number = available["available_phone_numbers"][0]["phone_number"]
    api.post(api.v2010("/IncomingPhoneNumbers.json"), PhoneNumber=number, TrunkSid=trunk_sid)
    return str(number)


def _origination_url(api: Api, trunk_sid: str, sip_url: str) -> None:
    urls = api.get(f"/v1/Trunks/{trunk_sid}/OriginationUrls")["origination_urls"]
    if any(u["sip_url"] == sip_url for u in urls):
        return
    api.post(
        f"/v1/Trunks/{trunk_sid}/OriginationUrls",
        FriendlyName="softphone B",
        SipUrl=sip_url,
        Priority="10",
        Weight="10",
        Enabled="true",
    )


@click.group()
def demo() -> None:
    """Set up a demonstration on the running platform."""


@demo.command("on-net")
@data_dir_option
@click.option("--zone", default="trunkline.local", show_default=True, help="The platform's zone.")
@click.option(
    "--softphone-port",
    type=click.IntRange(1, 65535),
    default=5090,
    show_default=True,
    help="UDP port softphone B listens on (trunk B's origination URL).",
)
def on_net(data_dir: Path, zone: str, softphone_port: int) -> None:
    """Two trunks for two softphones on this machine, calling each other on-net."""
    data = DataDir.at(data_dir)
    bootstrap = data.read_bootstrap()
    if not bootstrap or "api_url" not in bootstrap:
        raise click.ClickException(f"no running platform in {data.root}: run `make up` first")
    api = Api(bootstrap["api_url"], bootstrap["account_sid"], bootstrap["auth_token"])
    endpoints = data.read_endpoints() or {}
    sip = str(endpoints.get("sip_address", f"{LOOPBACK}:5060"))
    acl = _acl(api)
    a = _trunk(api, "demo-a", zone, acl)
    b = _trunk(api, "demo-b", zone, acl)
    number_a, number_b = _number(api, a["sid"]), _number(api, b["sid"])
    _origination_url(api, b["sid"], f"sip:{LOOPBACK}:{softphone_port}")
    click.echo(
        f"""Trunk A {a["domain_name"]} (number {number_a}) and trunk B {b["domain_name"]}
(number {number_b}), both admitting calls from {LOOPBACK}.

Softphone B: listen on UDP {LOOPBACK}:{softphone_port}, no registration (trunk B's
  origination URL points there).
Softphone A: no registration; outbound proxy / SIP server {sip} (UDP); identity
  sip:{number_a}@{a["domain_name"]}; dial {number_b}, i.e. sip:{number_b}@{a["domain_name"]}.

The call goes PBX A -> trunk A -> on-net -> trunk B -> softphone B, with its audio through
the platform's media relay. Without softphones, these two pjsua2 processes do the same:
  .venv/bin/python e2e/tests/media_parties/party.py --role callee --tone-hz 440 \\
      --record b.wav --sip-port {softphone_port}
  .venv/bin/python e2e/tests/media_parties/party.py --role caller --tone-hz 1000 \\
      --record a.wav --proxy "sip:{sip};lr" --id-uri sip:{number_a}@{a["domain_name"]} \\
      --call sip:{number_b}@{a["domain_name"]}"""
    )
