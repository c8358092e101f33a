"""Options that several commands share."""

from __future__ import annotations

from pathlib import Path

import click

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    envvar="TRUNKLINE_DATA_DIR",
    show_default=True,
    show_envvar=True,
    help="Where the platform keeps its database, NATS store, logs and credentials.",
)
