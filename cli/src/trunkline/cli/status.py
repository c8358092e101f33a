"""`trunkline status`: what supervisord says about each program, and the API's health."""

from __future__ import annotations

from pathlib import Path

import click
import httpx

from trunkline.cli.datadir import DataDir
from trunkline.cli.options import data_dir_option
from trunkline.cli.supervisor_rpc import Supervisor, SupervisorUnavailable

EXIT_NOT_RUNNING = 1
EXIT_DEGRADED = 2


def api_health(api_url: str) -> tuple[bool, str]:
    try:
        response = httpx.get(f"{api_url}/healthz", timeout=3.0)
    except httpx.HTTPError as error:
        return False, f"unreachable ({error})"
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}"
    return True, "ok"


@click.command()
@data_dir_option
def status(data_dir: Path) -> None:
    """Show each program's state and pid, and the API's health.

    Asks the supervisord of the data dir's platform. Exits 1 when the platform is not
    running, 2 when it runs but a program is not RUNNING or the API is not healthy, 0 when all
    is well.
    """
    data = DataDir.at(data_dir)
    supervisor = Supervisor(data.supervisord_socket)
    try:
        supervisord_pid = supervisor.pid()
        processes = supervisor.processes()
    except SupervisorUnavailable:
        click.echo(f"Trunkline is not running (data dir {data.root}).")
        raise SystemExit(EXIT_NOT_RUNNING) from None
    healthy = all(info.running for info in processes)
    click.echo(f"{'supervisord':<12} {'RUNNING':<9} pid {supervisord_pid}")
    for info in processes:
        pid = f"pid {info.pid}" if info.pid else "-"
        # supervisord describes a running program as "pid N, uptime H:MM:SS".
        detail = info.description
        if info.running and detail.startswith("pid "):
            detail = detail.partition(", ")[2]
        click.echo(f"{info.name:<12} {info.state:<9} {pid:<10} {detail}".rstrip())
    endpoints = data.read_endpoints()
    if endpoints is None:
        # `trunkline up` writes the endpoints once every service is ready.
        click.echo("API         starting (not ready yet)")
        healthy = False
    else:
        api_url = str(endpoints["api_url"])
        ok, detail = api_health(api_url)
        click.echo(f"{'API':<12} {detail} ({api_url}/healthz)")
        healthy = healthy and ok
    if not healthy:
        raise SystemExit(EXIT_DEGRADED)
