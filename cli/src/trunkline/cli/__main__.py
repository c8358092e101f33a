"""`python -m trunkline.cli` runs the same command as the `trunkline` console script."""

from trunkline.cli.main import cli

cli(prog_name="trunkline")
