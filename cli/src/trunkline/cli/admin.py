"""`trunkline admin`: operator commands against the API's admin endpoints."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from trunkline.cli.admin_client import AdminClient, AdminError
from trunkline.cli.datadir import DataDir
from trunkline.cli.options import data_dir_option
from trunkline.domain.numbers import is_nanp, normalize
from trunkline.domain.sid import is_sid

ADMIN_TOKEN_ENV = "TRUNKLINE_ADMIN_TOKEN"  # noqa: S105 (a variable name, not a secret)


@dataclass(frozen=True)
class AdminContext:
    api_url: str
    admin_token: str
    as_json: bool

    def call(self, request: Callable[[AdminClient], Any]) -> Any:
        try:
            with AdminClient(self.api_url, self.admin_token) as client:
                return request(client)
        except AdminError as error:
            raise click.ClickException(str(error)) from error

    def show(self, value: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(value, indent=2))
        else:
            human()


def resolve_api_url(option: str | None, data: DataDir) -> str:
    if option:
        return option
    # The running platform's endpoints, else the URL of the last start.
    for source in (data.read_endpoints(), data.read_bootstrap()):
        if source and source.get("api_url"):
            return str(source["api_url"])
    raise click.ClickException(
        f"no API URL: pass --api-url (or set TRUNKLINE_API_URL), or run `trunkline up` "
        f"with --data-dir {data.root}"
    )


def resolve_admin_token(data: DataDir) -> str:
    token = os.environ.get(ADMIN_TOKEN_ENV) or data.read_admin_token()
    if not token:
        raise click.ClickException(
            f"no admin token: set {ADMIN_TOKEN_ENV}, or use the --data-dir `trunkline up` ran on"
        )
    return token


@click.group()
@data_dir_option
@click.option(
    "--api-url",
    envvar="TRUNKLINE_API_URL",
    show_envvar=True,
    help="The API to talk to.  [default: the one `trunkline up` runs for the data dir]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answers as they are.")
@click.pass_context
def admin(ctx: click.Context, data_dir: Path, api_url: str | None, as_json: bool) -> None:
    """Operator commands: accounts, phone-number inventory, verified caller IDs, CNAM.

    The admin token comes from $TRUNKLINE_ADMIN_TOKEN or from the data dir (never from the
    command line, where other users could read it in the process list).
    """
    data = DataDir.at(data_dir)
    # Resolved lazily so that `--help` on a subcommand works without a platform.
    ctx.obj = lambda: AdminContext(
        resolve_api_url(api_url, data), resolve_admin_token(data), as_json
    )


def _context() -> AdminContext:
    factory: Callable[[], AdminContext] = click.get_current_context().obj
    return factory()


@admin.group()
def accounts() -> None:
    """Create and list accounts."""


@accounts.command("create")
@click.option("--name", required=True, help="The account's friendly name.")
@click.option(
    "--type",
    "account_type",
    type=click.Choice(["Trial", "Full"]),
    default=None,
    help="Trial or Full.  [default: the API's]",
)
def accounts_create(name: str, account_type: str | None) -> None:
    """Create an account and print its SID and auth token.

    The auth token is shown only this once.
    """
    admin = _context()
    account = admin.call(lambda client: client.create_account(name, account_type))

    def human() -> None:
        click.echo(f"Account SID  {account.get('sid')}")
        click.echo(f"Auth token   {account.get('auth_token')}")
        click.echo(f"Name         {account.get('friendly_name')}")
        click.echo(f"Type         {account.get('type')}")
        click.echo(f"Status       {account.get('status')}")

    admin.show(account, human)


@accounts.command("list")
def accounts_list() -> None:
    """List every account (without credentials)."""
    admin = _context()
    rows = admin.call(lambda client: client.list_accounts())

    def human() -> None:
        click.echo(f"{'SID':<34}  {'TYPE':<5}  {'STATUS':<9}  NAME")
        for row in rows:
            click.echo(
                f"{row.get('sid', ''):<34}  {row.get('type') or '':<5}  "
                f"{row.get('status') or '':<9}  {row.get('friendly_name') or ''}"
            )

    admin.show({"accounts": rows}, human)


@admin.group()
def numbers() -> None:
    """Manage the inventory of phone numbers that accounts can buy."""


@numbers.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def numbers_import(csv_file: Path) -> None:
    """Add the numbers of a CSV file to the inventory.

    The first line names the columns: phone_number, iso_country, number_type, locality,
    region, postal_code, rate_center, lata (number_type is local, tollfree or mobile).
    Numbers already present are skipped. Exits 1 when some lines were rejected.
    """
    admin = _context()
    text = csv_file.read_text(encoding="utf-8")
    result = admin.call(lambda client: client.import_numbers(text))
    errors = result.get("errors") or []

    def human() -> None:
        click.echo(
            f"Imported {result.get('imported', 0)}, skipped {result.get('skipped', 0)} "
            f"already present, {len(errors)} rejected."
        )
        for error in errors:
            click.echo(f"{csv_file}:{error.get('line')}: {error.get('message')}", err=True)

    admin.show(result, human)
    if errors:
        raise SystemExit(1)


@numbers.command("list")
@click.option("--area-code", help="Only numbers in this area code, e.g. 415.")
@click.option("--country", help="Only numbers of this ISO country, e.g. US.")
def numbers_list(area_code: str | None, country: str | None) -> None:
    """List the inventory and who owns each number."""
    filters = {"IsoCountry": country, "AreaCode": area_code}
    admin = _context()
    rows = admin.call(
        lambda client: client.list_numbers({k: v for k, v in filters.items() if v is not None})
    )

    def human() -> None:
        click.echo(f"{'NUMBER':<16}  {'TYPE':<8}  {'LOCALITY':<22}  OWNER")
        for row in rows:
            owner = row.get("owner_phone_number_sid") or "available"
            locality = ", ".join(p for p in (row.get("locality"), row.get("region")) if p)
            click.echo(
                f"{row.get('phone_number', ''):<16}  {row.get('number_type') or '':<8}  "
                f"{locality:<22}  {owner}"
            )

    admin.show({"phone_numbers": rows}, human)


@admin.group("caller-ids")
def caller_ids() -> None:
    """Mark caller IDs verified, so an account may present them on outbound calls."""


@caller_ids.command("verify")
@click.option("--account", "account_sid", required=True, help="The account SID (AC...).")
@click.option("--number", required=True, help="The phone number, e.g. +14155550100.")
@click.option("--name", "friendly_name", help="A friendly name for the caller ID.")
def caller_ids_verify(account_sid: str, number: str, friendly_name: str | None) -> None:
    """Mark a phone number as a verified caller ID of an account."""
    if not is_sid(account_sid, "AC"):
        raise click.BadParameter(f"{account_sid!r} is not an account SID", param_hint="--account")
    e164 = normalize(number)
    if e164 is None:
        raise click.BadParameter(f"{number!r} is not a phone number", param_hint="--number")
    admin = _context()
    caller_id = admin.call(lambda client: client.verify_caller_id(account_sid, e164, friendly_name))

    def human() -> None:
        click.echo(
            f"Verified {caller_id.get('phone_number', e164)} for {account_sid}"
            + (f" ({caller_id['sid']})" if caller_id.get("sid") else "")
        )

    admin.show(caller_id, human)


@admin.group()
def cnam() -> None:
    """Manage the caller names (CNAM) of North American numbers."""


@cnam.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def cnam_import(csv_file: Path) -> None:
    """Load caller names from a CSV file into the CNAM table.

    The first line names the columns number and caller_name; each number is E.164 and North
    American (+1 NPA NXX XXXX), each name at most 15 characters of printable ASCII. A name
    replaces the number's earlier one. All or nothing: if any line is rejected, nothing is
    loaded, the rejected lines are listed and the command exits 1.
    """
    admin = _context()
    text = csv_file.read_text(encoding="utf-8")
    result = admin.call(lambda client: client.import_cnam(text))
    errors = result.get("errors") or []

    def human() -> None:
        if errors:
            click.echo(f"Nothing imported: {result.get('rejected', len(errors))} rejected.")
        else:
            click.echo(
                f"Imported {result.get('imported', 0)}, updated {result.get('updated', 0)}, "
                f"{result.get('unchanged', 0)} unchanged."
            )
        for error in errors:
            click.echo(f"{csv_file}:{error.get('line')}: {error.get('message')}", err=True)

    admin.show(result, human)
    if errors:
        raise SystemExit(1)


def _nanp_number(number: str) -> str:
    e164 = normalize(number)
    if e164 is None or not is_nanp(e164):
        raise click.BadParameter(f"{number!r} is not a North American phone number")
    return e164


@cnam.command("show")
@click.argument("number")
def cnam_show(number: str) -> None:
    """Show the caller name of a number in the CNAM table."""
    e164 = _nanp_number(number)
    admin = _context()
    entry = admin.call(lambda client: client.fetch_cnam(e164))
    admin.show(
        entry, lambda: click.echo(f"{entry.get('phone_number')}  {entry.get('caller_name')}")
    )


@cnam.command("delete")
@click.argument("number")
def cnam_delete(number: str) -> None:
    """Remove a number from the CNAM table."""
    e164 = _nanp_number(number)
    admin = _context()
    admin.call(lambda client: client.delete_cnam(e164))
    admin.show({"deleted": e164}, lambda: click.echo(f"Deleted the caller name of {e164}"))
