"""The `trunkline` command."""

from __future__ import annotations

import click

from trunkline.cli.admin import admin
from trunkline.cli.demo import demo
from trunkline.cli.status import status
from trunkline.cli.up import up


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Trunkline: open elastic SIP trunking with a Twilio-compatible API."""


cli.add_command(up)
cli.add_command(status)
cli.add_command(admin)
cli.add_command(demo)

if __name__ == "__main__":
    cli(prog_name="trunkline")
