"""`trunkline-harness up|down|status`: the tests' real infrastructure, by hand."""

from __future__ import annotations

import json
import sys

import click

from trunkline.harness import registry
from trunkline.harness.component import NotReady, cache_dir, run_dir


def chosen(names: tuple[str, ...]) -> list[str]:
    wanted = list(names) or [n for n in registry.NAMES if n not in registry.disabled()]
    unknown = [n for n in wanted if n not in registry.NAMES]
    if unknown:
        raise click.BadParameter(f"unknown component(s) {', '.join(unknown)}")
    return wanted


@click.group(help=__doc__)
def cli() -> None:
    pass


@cli.command(help="Install (once, cached) and start components; all when none are named.")
@click.argument("names", nargs=-1)
def up(names: tuple[str, ...]) -> None:
    for name in chosen(names):
        click.echo(f"{name}: starting ...", err=True)
        try:
            endpoints, started = registry.up(name)
        except NotReady as err:
            click.echo(f"{name}: {err}", err=True)
            sys.exit(1)
        verb = "started" if started else "already running"
        click.echo(f"{name}: {verb} {json.dumps(dict(endpoints))}")


@cli.command(help="Stop components; all when none are named.")
@click.argument("names", nargs=-1)
def down(names: tuple[str, ...]) -> None:
    for name in reversed(chosen(names)):
        click.echo(f"{name}: {'stopped' if registry.down(name) else 'not running'}")


@cli.command(help="Show which components run and their endpoints; exit 1 if any is down.")
@click.argument("names", nargs=-1)
def status(names: tuple[str, ...]) -> None:
    click.echo(f"cache: {cache_dir()}  run: {run_dir()}")
    all_up = True
    for name in chosen(names):
        endpoints = registry.running(name)
        all_up &= endpoints is not None
        shown = json.dumps(dict(endpoints)) if endpoints else "down"
        click.echo(f"{name}: {shown}")
    sys.exit(0 if all_up else 1)


if __name__ == "__main__":
    cli()
