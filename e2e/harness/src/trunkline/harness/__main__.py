from trunkline.harness.cli import cli

cli()
