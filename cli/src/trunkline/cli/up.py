"""`trunkline up`: the embedded platform, every service supervised by supervisord."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import click

from trunkline.cli.admin_client import AdminClient, AdminError
from trunkline.cli.banner import BannerFacts, render_banner
from trunkline.cli.datadir import MAX_SOCKET_PATH, DataDir, write_private
from trunkline.cli.options import data_dir_option
from trunkline.cli.programs import (
    NatsServerNotFound,
    Platform,
    Program,
    build_programs,
    sip_certificate_names,
)
from trunkline.cli.readiness import Interrupted, NotReady, wait_until_ready
from trunkline.cli.seed import seed_csv
from trunkline.cli.supervisor_rpc import Supervisor, SupervisorUnavailable
from trunkline.cli.supervisord_conf import STOP_WAIT_SECONDS, render

BOOTSTRAP_ACCOUNT_NAME = "Bootstrap account"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# The conventional NATS monitoring port (8222) is the client port (4222) plus this.
MONITOR_PORT_OFFSET = 4000


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask for an orderly stop; a second one asks to hurry."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.count = 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.requested.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def busy_addresses(programs: Sequence[Program]) -> list[str]:
    """The listen addresses some other process already holds."""
    busy = []
    seen: set[tuple[str, int]] = set()
    for program in programs:
        for host, port in program.listens:
            if (host, port) in seen:
                continue
            seen.add((host, port))
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                # As servers do, so that sockets in TIME_WAIT after a restart do not count.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError as error:
                    busy.append(f"{host}:{port} ({program.name}: {error.strerror})")
    return busy


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when `trunkline up` dies, even by SIGKILL.

    Then supervisord still stops its programs in order instead of leaving them orphaned,
    holding their ports. PR_SET_PDEATHSIG exists on Linux only.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_supervisord(data: DataDir) -> subprocess.Popen[bytes]:
    # Fixed argv: this interpreter, supervisord's module and our own config file.
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(data.supervisord_conf)],
        cwd=data.root,
        stdin=subprocess.DEVNULL,
        # Its own process group: a Ctrl-C in the terminal reaches only `trunkline up`, which
        # then stops supervisord, which stops the programs in reverse start order.
        process_group=0,
        preexec_fn=_terminate_with_parent if sys.platform == "linux" else None,
    )


def stop_supervisord(
    proc: subprocess.Popen[bytes], supervisor: Supervisor, signals: StopSignals, grace: float
) -> bool:
    """Stop supervisord and its programs; False when they had to be killed."""
    if proc.poll() is not None:
        return True
    try:
        pids = [info.pid for info in supervisor.processes() if info.pid]
    except SupervisorUnavailable:
        pids = []
    hurry_after = signals.count + 1
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and signals.count < hurry_after:
        try:
            proc.wait(timeout=0.2)
            return True
        except subprocess.TimeoutExpired:
            continue
    # supervisord did not finish in time (or the user insisted): kill what it supervised
    # (each program leads its own process group) and then supervisord itself.
    for pid in [*pids, proc.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    proc.wait()
    return False


def seed_inventory(client: AdminClient, data: DataDir, state: dict[str, Any]) -> None:
    """Import the fictional numbers once; a platform without them is still worth running."""
    try:
        result = client.import_numbers(seed_csv())
    except AdminError as error:
        # Not recorded as seeded, so the next start tries again.
        click.echo(f"Warning: could not seed the phone-number inventory: {error}", err=True)
        return
    errors = result.get("errors") or []
    if errors:
        first = errors[0]
        click.echo(
            f"Warning: {len(errors)} seed numbers were rejected "
            f"(line {first.get('line')}: {first.get('message')})",
            err=True,
        )
    state["numbers_seeded"] = True
    data.write_bootstrap(state)


def ensure_bootstrap(data: DataDir, platform: Platform) -> tuple[dict[str, Any], bool]:
    """The bootstrap account (created on the first start) and whether it was created now."""
    state = data.read_bootstrap()
    created = state is None
    with AdminClient(platform.api_url, platform.admin_token) as client:
        if state is None:
            account = client.create_account(BOOTSTRAP_ACCOUNT_NAME, "Full")
            state = {
                "account_sid": account["sid"],
                "auth_token": account["auth_token"],
                "api_url": platform.api_url,
                "friendly_name": account.get("friendly_name", BOOTSTRAP_ACCOUNT_NAME),
                "date_created": account.get("date_created") or dt.datetime.now(dt.UTC).isoformat(),
                "numbers_seeded": False,
            }
            # Saved before seeding, so a failure below never leads to a second account.
            data.write_bootstrap(state)
        if not state.get("numbers_seeded"):
            seed_inventory(client, data, state)
    if state.get("api_url") != platform.api_url:
        # A restart on other ports: keep the file's URL the one that works.
        state["api_url"] = platform.api_url
        data.write_bootstrap(state)
    return state, created


def ensure_sip_certificate(data: DataDir, platform: Platform) -> None:
    """The signaling service's TLS certificate: made on the first start, kept afterwards
    while it is valid for the zone and host, replaced (and said so) when it is not."""
    names = sip_certificate_names(platform.zone, platform.host)
    try:
        reason = data.load_or_create_sip_certificate(names)
    except OSError as error:
        raise click.ClickException(f"could not write the SIP TLS certificate: {error}") from error
    if reason is not None:
        click.echo(
            f"Made a self-signed SIP TLS certificate for {names.dns[0]} in "
            f"{data.sip_tls_cert} ({reason})."
        )


@click.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every service binds.")
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port of the REST API and console.",
)
@click.option(
    "--media-port",
    type=click.IntRange(1, 65535),
    default=7100,
    show_default=True,
    help="Port of the media service's gRPC control API (RTP uses UDP 10000-60000).",
)
@click.option(
    "--auth-port",
    type=click.IntRange(1, 65535),
    default=7200,
    show_default=True,
    help="Port of the auth service's gRPC API.",
)
@click.option(
    "--cnam-port",
    type=click.IntRange(1, 65535),
    default=7300,
    show_default=True,
    help="Port of the CNAM service's gRPC API.",
)
@click.option(
    "--sip-port",
    type=click.IntRange(1, 65535),
    default=5060,
    show_default=True,
    help="SIP port (UDP and TCP) of the signaling service.",
)
@click.option(
    "--sip-tls-port",
    type=click.IntRange(1, 65535),
    default=5061,
    show_default=True,
    help="SIP over TLS port of the signaling service (a self-signed certificate for the "
    "zone's trunk domains is made in the data dir on the first start).",
)
@click.option(
    "--carriers",
    "carriers_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="TRUNKLINE_CARRIERS_FILE",
    default=None,
    help="TOML file of the carrier gateways termination calls go to "
    "(see README).  [env TRUNKLINE_CARRIERS_FILE]",
)
@click.option(
    "--nats-port",
    type=click.IntRange(1, 65535),
    default=4222,
    show_default=True,
    help="Port of the embedded NATS server.",
)
@click.option(
    "--nats-monitor-port",
    type=click.IntRange(1, 65535),
    default=None,
    help=f"Port of NATS monitoring (/healthz).  [default: NATS port + {MONITOR_PORT_OFFSET}]",
)
@click.option(
    "--zone",
    default="trunkline.local",
    show_default=True,
    help="DNS zone the platform names its domains in.",
)
@click.option(
    "--store",
    envvar="TRUNKLINE_STORE",
    default=None,
    help="Store URL: cassandra://host:port/keyspace[?dc=NAME&rf=N] to keep configuration "
    "in Cassandra.  [default: SQLite in the data dir; env TRUNKLINE_STORE]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for every service to become ready.",
)
def up(
    data_dir: Path,
    host: str,
    api_port: int,
    media_port: int,
    auth_port: int,
    cnam_port: int,
    sip_port: int,
    sip_tls_port: int,
    carriers_file: Path | None,
    nats_port: int,
    nats_monitor_port: int | None,
    zone: str,
    store: str | None,
    timeout: float,
) -> None:
    """Run the whole platform on this machine until Ctrl-C.

    In the foreground, supervisord starts each service (NATS, the API, ...) as its own
    process and restarts it if it dies. The first start creates a bootstrap account and a
    stock of fictional phone numbers; later starts on the same data dir reuse everything.
    """
    data = DataDir.at(data_dir)
    if len(str(data.supervisord_socket)) > MAX_SOCKET_PATH:
        raise click.ClickException(
            f"the data dir path is too long for supervisord's unix socket "
            f"({data.supervisord_socket}); choose a shorter --data-dir"
        )
    if sip_tls_port == sip_port:
        # TCP and TLS would both bind that TCP port.
        raise click.ClickException(f"--sip-tls-port must differ from --sip-port ({sip_port})")
    monitor_port = nats_monitor_port or nats_port + MONITOR_PORT_OFFSET
    if monitor_port > 65535:
        raise click.ClickException(
            f"NATS port {nats_port} + {MONITOR_PORT_OFFSET} is not a port; pass --nats-monitor-port"
        )
    data.create()
    supervisor = Supervisor(data.supervisord_socket)
    if supervisor.is_running():
        raise click.ClickException(
            f"Trunkline is already running on {data.root} (supervisord pid {supervisor.pid()}); "
            "see `trunkline status`"
        )
    admin_token, _ = data.load_or_create_admin_token()
    platform = Platform(
        data=data,
        host=host,
        api_port=api_port,
        nats_port=nats_port,
        nats_monitor_port=monitor_port,
        zone=zone,
        admin_token=admin_token,
        store_url=store or f"sqlite:///{data.database}",
        media_port=media_port,
        auth_port=auth_port,
        cnam_port=cnam_port,
        sip_port=sip_port,
        sip_tls_port=sip_tls_port,
        sip_tls_cert=str(data.sip_tls_cert),
        sip_tls_key=str(data.sip_tls_key),
        carriers_file=str(carriers_file.resolve()) if carriers_file else "",
        nonce_secret=data.load_or_create_nonce_secret(),
    )
    try:
        programs = build_programs(platform)
    except NatsServerNotFound as error:
        raise click.ClickException(str(error)) from error
    busy = busy_addresses(programs)
    if busy:
        hint = ""
        if data.endpoints_file.exists():
            # Removed on every orderly stop: its presence means the last run was killed.
            hint = (
                "; the last `trunkline up` on this data dir did not stop cleanly, "
                "so its services may still be running"
            )
        raise click.ClickException("address already in use: " + ", ".join(busy) + hint)
    ensure_sip_certificate(data, platform)
    # The config carries the admin token in the api's environment, hence 0600.
    write_private(data.supervisord_conf, render(data, programs))

    click.echo(f"Starting Trunkline in {data.root} ...")
    signals = StopSignals()
    grace = STOP_WAIT_SECONDS * len(programs) + 5.0
    with signals.installed():
        proc = start_supervisord(data)
        try:
            failure = _run(data, platform, programs, supervisor, proc, signals, timeout)
        finally:
            click.echo("Stopping Trunkline ...")
            clean = stop_supervisord(proc, supervisor, signals, grace)
            with contextlib.suppress(FileNotFoundError):
                data.endpoints_file.unlink()
    if failure is not None:
        raise click.ClickException(failure)
    if not clean:
        raise click.ClickException("supervisord did not stop in time; its programs were killed")
    click.echo("Stopped.")


def _run(
    data: DataDir,
    platform: Platform,
    programs: Sequence[Program],
    supervisor: Supervisor,
    proc: subprocess.Popen[bytes],
    signals: StopSignals,
    timeout: float,
) -> str | None:
    """Bring the platform up and serve until asked to stop; the failure message, if any."""
    try:
        wait_until_ready(data, programs, supervisor, proc, timeout, signals.requested)
        if signals.requested.is_set():
            return None
        bootstrap, created = ensure_bootstrap(data, platform)
    except Interrupted:
        return None
    except NotReady as error:
        return str(error)
    except AdminError as error:
        return f"could not bootstrap the platform: {error}"
    if signals.requested.is_set():
        return None
    data.write_endpoints(
        {
            "api_url": platform.api_url,
            "console_url": platform.console_url,
            "nats_url": platform.nats_url,
            "nats_monitor_url": platform.nats_monitor_url,
            "media_address": platform.media_address,
            "sip_address": platform.sip_address,
            "sip_tls_address": platform.sip_tls_address,
            "sip_tls_certificate": str(data.sip_tls_cert),
            "pid": os.getpid(),
            "supervisord_pid": proc.pid,
        }
    )
    facts = BannerFacts(
        api_url=platform.api_url,
        console_url=platform.console_url,
        nats_url=platform.nats_url,
        nats_monitor_url=platform.nats_monitor_url,
        data_dir=data.root,
        bootstrap_file=data.bootstrap_file,
        admin_token_file=data.admin_token_file,
        account_sid=bootstrap.get("account_sid"),
        auth_token=bootstrap.get("auth_token") if created else None,
        media_address=platform.media_address,
        sip_addresses=(
            f"udp:{platform.sip_address}",
            f"tcp:{platform.sip_address}",
            f"tls:{platform.sip_tls_address}",
        ),
        sip_tls_certificate=data.sip_tls_cert,
    )
    click.echo(render_banner(facts), nl=False)
    sys.stdout.flush()
    while not signals.requested.wait(0.5):
        if proc.poll() is not None:
            return f"supervisord exited unexpectedly with status {proc.returncode}; see {data.logs}"
    return None
