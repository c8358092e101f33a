"""Helpers of the termination end-to-end tests (test_termination.py): the real `trunkline up`
with two carrier gateways, trunks made with the official `twilio` SDK, sipp as the PBX and
as the carriers, and the SIP messages sipp traced (-trace_msg), parsed for assertions.

Loaded by path (pytest's importlib mode puts nothing on sys.path). Every sipp runs with a
global -timeout and is waited for (or killed) before its test ends: none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import random
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.rest import Client

from trunkline.cli.datadir import DataDir
from trunkline.cli.testing import Launcher, RunningPlatform, free_ports
from trunkline.signaling.testing import write_self_signed

HOST = "127.0.0.1"
ZONE = "trunkline.local"
SIPP_DIR = Path(__file__).resolve().parents[1] / "sipp"
DESTINATION = "+15108675309"  # not a number of the platform: leaves for the carriers
ERROR_HEADER = "X-Trunkline-Error-Code"
NOT_A_HEADER = "X-Trunkline-E2e: 1"  # what -set extra carries when a test adds nothing
FINAL_CALL_STATUSES = ("completed", "failed", "busy", "no-answer", "canceled")

# sipp 3.6 stamps its trace entries `2026-01-31 12:00:00.123456`, sipp 3.8 `...T12:00:00.123456Z`.
_TRACE_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d[T \t]\d\d:\d\d:\d\d\.\d+Z?)\s*$", re.M)
_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "x": "session-expires",
}


# --- SIP messages as sipp traced them ------------------------------------------------------


@dataclass(frozen=True)
class SipMessage:
    direction: str  # "sent" or "received"
    stamp: str  # sipp's wall-clock time of the trace entry
    text: str

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        return int(self.start_line.split()[1]) if self.is_response else None

    @property
    def reason(self) -> str:
        return self.start_line.split(" ", 2)[2] if self.is_response else ""

    @property
    def method(self) -> str:
        if self.is_response:
            cseq = self.header("CSeq") or ""
            return cseq.split()[-1] if cseq else ""
        return self.start_line.split()[0]

    @property
    def request_uri(self) -> str:
        return "" if self.is_response else self.start_line.split()[1]

    def _parts(self) -> tuple[list[str], str]:
        head, _, body = self.text.partition("\n\n")
        return head.split("\n")[1:], body

    def headers(self, name: str) -> list[str]:
        """Values of every line of header `name` (compact forms too), in order."""
        wanted = name.lower()
        values = []
        for line in self._parts()[0]:
            written, colon, value = line.partition(":")
            if not colon:
                continue
            key = written.strip().lower()
            if _COMPACT.get(key, key) == wanted:
                values.append(value.strip())
        return values

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    @property
    def header_names(self) -> list[str]:
        names = []
        for line in self._parts()[0]:
            written, colon, _ = line.partition(":")
            if colon:
                key = written.strip().lower()
                names.append(_COMPACT.get(key, key))
        return names

    @property
    def body(self) -> str:
        return self._parts()[1].strip()

    @property
    def seconds(self) -> float:
        """The trace time as seconds (for the delays between two messages of one trace)."""
        clock = self.stamp.replace("T", " ").rstrip("Z").split()[-1]
        hours, minutes, seconds = clock.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_trace(text: str) -> list[SipMessage]:
    """The messages of a sipp -trace_msg file, in order."""
    messages = []
    pieces = _TRACE_SEPARATOR.split(text)
    # [before, stamp1, entry1, stamp2, entry2, ...]
    for stamp, entry in zip(pieces[1::2], pieces[2::2], strict=True):
        entry = entry.replace("\r\n", "\n").lstrip("\n")
        title, _, message = entry.partition("\n")
        if " message sent" in title:
            direction = "sent"
        elif " message received" in title:
            direction = "received"
        else:
            continue
        message = message.lstrip("\n").rstrip()
        if message:
            messages.append(SipMessage(direction, stamp.replace("\t", " "), message))
    return messages


# --- sipp ------------------------------------------------------------------------------------


@dataclass
class SippRun:
    """One sipp process (finished): its exit code, output and traced messages."""

    name: str
    command: list[str]
    returncode: int | None
    trace_file: Path
    error_file: Path
    output_file: Path

    @property
    def messages(self) -> list[SipMessage]:
        if not self.trace_file.exists():
            return []
        return parse_trace(self.trace_file.read_text(errors="replace"))

    def received(self, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        return _select(self.messages, "received", method, status)

    def sent(self, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        return _select(self.messages, "sent", method, status)

    def requests_received(self, method: str) -> list[SipMessage]:
        return [m for m in self.received(method) if not m.is_response]

    def responses_received(self, status: int | None = None) -> list[SipMessage]:
        return [m for m in self.received(status=status) if m.is_response]

    def final_response(self) -> SipMessage:
        finals = [m for m in self.responses_received() if (m.status or 0) >= 200]
        assert finals, f"{self.name}: no final response received\n{self.describe()}"
        return finals[-1]

    def describe(self) -> str:
        def read(path: Path, limit: int = 12000) -> str:
            if not path.exists():
                return "(none)"
            text = path.read_text(errors="replace")
            return text if len(text) <= limit else "...\n" + text[-limit:]

        return (
            f"--- sipp {self.name}: exit {self.returncode}\n$ {' '.join(self.command)}\n"
            f"--- errors ({self.error_file.name})\n{read(self.error_file)}\n"
            f"--- messages ({self.trace_file.name})\n{read(self.trace_file)}\n"
            f"--- output\n{read(self.output_file, 3000)}"
        )


def _select(
    messages: Sequence[SipMessage], direction: str, method: str | None, status: int | None
) -> list[SipMessage]:
    return [
        m
        for m in messages
        if m.direction == direction
        and (method is None or m.method == method)
        and (status is None or m.status == status)
    ]


def udp_port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
        return False


def quiet_udp_ports(count: int, low: int = 32000, high: int = 32767) -> list[int]:
    """Free UDP ports below the kernel's ephemeral range (32768+ here), so that no socket of
    another process bound to port 0 takes one while the module runs."""
    ports: list[int] = []
    for port in random.sample(range(low, high), high - low):
        if not udp_port_in_use(port) and port not in ports:
            ports.append(port)
            if len(ports) == count:
                return ports
    raise AssertionError(f"no {count} free UDP ports in {low}-{high}")


SIPP_TRANSPORTS = {"udp": "u1", "tcp": "t1", "tls": "l1"}  # sipp -t: one socket per peer


def listening(port: int, transport: str = "udp", host: str = HOST) -> bool:
    """Whether something listens on `port` for `transport`: a bound UDP socket, or a TCP
    socket in LISTEN (read from /proc, so that no probe connects to a TLS server and fails
    its handshake)."""
    if transport == "udp":
        return udp_port_in_use(port, host)
    address = "".join(f"{int(octet):02X}" for octet in reversed(host.split(".")))
    wanted = f"{address}:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: TCP_LISTEN
            return True
    return False


def free_transport_ports(count: int, transport: str = "udp") -> list[int]:
    """Free ports on loopback for a sipp of `transport` (UDP or TCP ports)."""
    return free_udp_ports(count) if transport == "udp" else free_ports(count)


def free_udp_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Carrier:
    """A sipp carrier gateway started in the background for one test; `.run` once done."""

    def __init__(self, run: SippRun, process: subprocess.Popen[bytes]) -> None:
        self.run = run
        self.process = process

    def finish(self, wait: float) -> SippRun:
        """Wait up to `wait` s for sipp to end on its own (its -m calls done), else stop it
        (SIGUSR1 is sipp's soft exit, then SIGKILL); the run with its exit code."""
        try:
            self.run.returncode = self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.run.returncode = None  # did not finish its calls by itself
        return self.run


@dataclass
class Sipp:
    """Runs sipp scenarios of e2e/sipp with traces into `workdir`.

    Over TLS it runs the harness's TLS-capable sipp with `certificate` (cert, key): the one
    the platform was told to trust (TRUNKLINE_SIP_TLS_CA_FILE), and the platform's
    `sip_tls_port` is the one a sipp UAC calls."""

    binary: str
    workdir: Path
    sip_port: int
    sip_tls_port: int = 0
    certificate: tuple[Path, Path] | None = None
    count: int = 0

    def _transport_args(self, transport: str) -> tuple[str | None, list[str]]:
        """The sipp binary (None: the usual one) and options for `transport`."""
        args = ["-t", SIPP_TRANSPORTS[transport]]
        if transport != "tls":
            return None, args
        from trunkline.harness.components.sip import install_sipp_tls

        assert self.certificate is not None, "TLS needs the certificate the platform trusts"
        cert, key = self.certificate
        return str(install_sipp_tls()), [*args, "-tls_cert", str(cert), "-tls_key", str(key)]

    def _files(self, name: str) -> tuple[str, Path, Path, Path]:
        self.count += 1
        stem = f"{self.count:02d}-{name}"
        return (
            stem,
            self.workdir / f"{stem}.messages.log",
            self.workdir / f"{stem}.errors.log",
            self.workdir / f"{stem}.out",
        )

    def _command(
        self,
        scenario: str,
        *,
        local: str,
        port: int,
        trace: Path,
        errors: Path,
        timeout: float,
        calls: int,
        variables: Mapping[str, str],
        args: Sequence[str],
    ) -> list[str]:
        command = [
            self.binary,
            "-sf", str(SIPP_DIR / scenario),
            "-i", local,
            "-p", str(port),
            "-m", str(calls),
            "-timeout", f"{timeout:g}s",
            "-nostdin",
            "-trace_msg", "-message_file", str(trace),
            "-trace_err", "-error_file", str(errors),
        ]  # fmt: skip
        for key, value in variables.items():
            command += ["-set", key, value]
        return [*command, *args]

    def pbx(
        self,
        scenario: str,
        *,
        domain: str,
        caller: str = "",
        service: str = DESTINATION,
        source: str = HOST,
        max_forwards: int = 70,
        extra: Sequence[str] = (),
        variables: Mapping[str, str] | None = None,
        calls: int = 1,
        rate: float | None = None,
        pause_ms: int = 200,
        timeout: float = 12.0,
        args: Sequence[str] = (),
        binary: str | None = None,
        local_port: int | None = None,
        transport: str = "udp",
    ) -> SippRun:
        """Run a PBX scenario in the foreground against the platform's SIP port (with another
        sipp `binary` if given: the harness's 3.8 computes SHA-256 digests, 3.6 only MD5),
        over `transport` (TLS to the platform's SIP TLS port)."""
        stem, trace, errors, output = self._files(Path(scenario).stem)
        if variables is None:
            variables = {
                "domain": domain,
                "caller": caller,
                "maxfwd": str(max_forwards),
                "extra": "\r\n".join(extra) if extra else NOT_A_HEADER,
            }
        more = ["-s", service, "-d", str(pause_ms)]
        if rate is not None:
            more += ["-r", f"{rate:g}", "-rp", "1000"]
        # A carrier sends from its gateway port (over UDP: over TCP only its address counts).
        port = local_port or free_transport_ports(1, transport)[0]
        transport_binary, transport_args = self._transport_args(transport)
        target = self.sip_tls_port if transport == "tls" else self.sip_port
        command = self._command(
            scenario,
            local=source,
            port=port,
            trace=trace,
            errors=errors,
            timeout=timeout,
            calls=calls,
            variables=variables,
            args=[*more, *transport_args, *args, f"{HOST}:{target}"],
        )
        if binary is not None or transport_binary is not None:
            command[0] = binary or transport_binary or command[0]
        with output.open("wb") as out:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout + 15,
                check=False,
            )
        return SippRun(stem, command, done.returncode, trace, errors, output)

    @contextlib.contextmanager
    def carrier(
        self,
        scenario: str,
        port: int,
        *,
        calls: int = 1,
        variables: Mapping[str, str] | None = None,
        timeout: float = 20.0,
        wait: float = 8.0,
        transport: str = "udp",
    ) -> Iterator[Carrier]:
        """A carrier gateway or PBX (sipp UAS) on `port` of `transport` for the block; it is
        waited for (up to `wait` s after the block) and never outlives it. Read `.run`
        afterwards."""
        stem, trace, errors, output = self._files(Path(scenario).stem)
        transport_binary, transport_args = self._transport_args(transport)
        command = self._command(
            scenario,
            local=HOST,
            port=port,
            trace=trace,
            errors=errors,
            timeout=timeout,
            calls=calls,
            variables=variables or {},
            args=transport_args,
        )
        command[0] = transport_binary or command[0]
        with output.open("wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        carrier = Carrier(SippRun(stem, command, None, trace, errors, output), process)
        try:
            deadline = time.monotonic() + 10
            while not listening(port, transport):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"carrier sipp did not start\n{carrier.run.describe()}")
                time.sleep(0.02)
            yield carrier
        finally:
            carrier.finish(wait)


class UdpSink:
    """A UDP socket that answers nothing and records what arrives (a gateway that must not be
    tried, or one that only receives)."""

    def __init__(self, port: int) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((HOST, port))
        self.socket.setblocking(False)
        self.datagrams: list[bytes] = []

    def drain(self) -> list[bytes]:
        while True:
            try:
                self.datagrams.append(self.socket.recv(65535))
            except BlockingIOError:
                return self.datagrams

    def close(self) -> None:
        self.drain()
        self.socket.close()


@contextlib.contextmanager
def udp_sink(port: int) -> Iterator[UdpSink]:
    sink = UdpSink(port)
    try:
        yield sink
    finally:
        sink.close()


# --- the platform ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trunk:
    sid: str
    name: str
    domain: str

    def host(self, edge: str | None = None) -> str:
        """The Request-URI host: `<name>.pstn.<zone>`, or localized `<name>.pstn.<edge>.<zone>`."""
        return self.domain if edge is None else f"{self.name}.pstn.{edge}.{ZONE}"


@dataclass
class Termination:
    """The running platform of one test module and what its tests share."""

    launcher: Launcher
    platform: RunningPlatform
    client: Client
    account_sid: str
    caller: str  # a number the account bought: a valid caller ID
    primary_port: int  # carrier gateway tried first (priority 10)
    secondary_port: int  # then this one (priority 20)
    sipp_binary: str
    # A PBX's TLS certificate and key, which the platform trusts (TRUNKLINE_SIP_TLS_CA_FILE).
    certificate: tuple[Path, Path] | None = None
    trunks: list[Trunk] = field(default_factory=list)

    @property
    def sip_port(self) -> int:
        return self.launcher.sip_port

    def sipp(self, workdir: Path) -> Sipp:
        return Sipp(
            self.sipp_binary,
            workdir,
            self.sip_port,
            sip_tls_port=self.launcher.sip_tls_port,
            certificate=self.certificate,
        )

    def trunk(
        self,
        prefix: str,
        *,
        acl: Sequence[str] | None = (f"{HOST}/32",),
        credentials: tuple[str, str] | None = None,
    ) -> Trunk:
        """A new trunk `<prefix>-<random>.pstn.<zone>`; with an IP ACL of the CIDR blocks in
        `acl` (None: no ACL) and a credential list holding `credentials` (user, password)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        domain = f"{name}.pstn.{ZONE}"
        trunking = self.client.trunking.v1
        sip = self.client.api.v2010.account.sip
        created = trunking.trunks.create(friendly_name=name, domain_name=domain)
        if acl is not None:
            listed = sip.ip_access_control_lists.create(friendly_name=f"{name}-acl")
            for block in acl:
                address, _, prefix_length = block.partition("/")
                sip.ip_access_control_lists(listed.sid).ip_addresses.create(
                    friendly_name=address.replace(".", "-"),
                    ip_address=address,
                    cidr_prefix_length=int(prefix_length or 32),
                )
            trunking.trunks(created.sid).ip_access_control_lists.create(
                ip_access_control_list_sid=listed.sid
            )
        if credentials is not None:
            credential_list = sip.credential_lists.create(friendly_name=f"{name}-users")
            sip.credential_lists(credential_list.sid).credentials.create(
                username=credentials[0], password=credentials[1]
            )
            trunking.trunks(created.sid).credentials_lists.create(
                credential_list_sid=credential_list.sid
            )
        trunk = Trunk(created.sid, name, domain)
        self.trunks.append(trunk)
        return trunk

    def buy_number(self, area_code: str, trunk_sid: str | None = None) -> str:
        available = self.client.available_phone_numbers("US").local.list(
            area_code=area_code, limit=1
        )
        assert available, f"no available number in area code {area_code}"
        number = available[0].phone_number
        if trunk_sid is None:
            self.client.incoming_phone_numbers.create(phone_number=number)
        else:
            self.client.incoming_phone_numbers.create(phone_number=number, trunk_sid=trunk_sid)
        return str(number)

    def call_record(self, call_sid: str, *, final: bool = True, timeout: float = 10.0) -> Any:
        """The Call resource from the API; with `final`, once it has a final status."""
        calls = self.client.api.v2010.accounts(self.account_sid).calls
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                last = calls(call_sid).fetch()
                if not final or last.status in FINAL_CALL_STATUSES:
                    return last
            time.sleep(0.2)
        raise AssertionError(
            f"call {call_sid} has no final record within {timeout}s (last: "
            f"{getattr(last, 'status', None)})\n{self.diagnostics()}"
        )

    def calls_of(self, trunk_sid: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """The Call resources of a trunk (newest first), once `count` of them are final."""
        calls = self.client.api.v2010.accounts(self.account_sid).calls
        deadline = time.monotonic() + timeout
        found: list[Any] = []
        while time.monotonic() < deadline:
            found = [c for c in calls.list(limit=1000) if c.trunk_sid == trunk_sid]
            final = [c for c in found if c.status in FINAL_CALL_STATUSES]
            if len(final) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(
            f"trunk {trunk_sid}: {count} final calls expected within {timeout}s, got "
            f"{[(c.sid, c.status) for c in found]}\n{self.diagnostics()}"
        )

    def diagnostics(self) -> str:
        return self.platform.diagnostics()


def call_sid_of(run: SippRun) -> str:
    """The platform's Call SID as leg A shows it: the user of its Contact (sip:CA...@)."""
    for message in run.responses_received():
        for contact in message.headers("Contact"):
            found = re.search(r"sip:(CA[0-9a-f]{32})@", contact)
            if found:
                return found.group(1)
    raise AssertionError(f"no Call SID in a Contact the PBX received\n{run.describe()}")


# --- digest (RFC 7616), for a PBX that answers a challenge it read itself ---------------------


def parse_challenge(value: str) -> dict[str, str]:
    """The parameters of a `Digest k=v, k="v"` challenge (names lower case)."""
    scheme, _, rest = value.partition(" ")
    assert scheme.lower() == "digest", value
    found = re.findall(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)', rest)
    return {name.lower(): raw.strip('"') for name, raw in found}


def digest_authorization(
    challenge: Mapping[str, str],
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str = "e2e0cnonce",
    nc: str = "00000001",
) -> str:
    """A Proxy-Authorization value answering `challenge` (qop=auth), computed with hashlib."""
    algorithm = challenge.get("algorithm", "MD5")
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm.upper()]

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = h(f"{username}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    parts = [
        f'Digest username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
        f"algorithm={algorithm}",
        f'cnonce="{cnonce}"',
        "qop=auth",
        f"nc={nc}",
    ]
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return ", ".join(parts)


# --- platform operator ---------------------------------------------------------------------------


def import_cnam(running: RunningPlatform, rows: str) -> None:
    """The platform operator imports caller names (admin API, as `trunkline admin cnam`);
    `rows` are CSV lines `number,caller_name`."""
    token = running.data.admin_token_file.read_text().strip()
    answer = httpx.post(
        f"{running.api_url}/admin/v1/Cnam/Import",
        content=f"number,caller_name\n{rows}".encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def pbx_url(port: int, transport: str = "udp", scheme: str = "sip") -> str:
    """An origination URL for a PBX on loopback (UDP unless the URL says otherwise)."""
    suffix = "" if transport == "udp" or scheme == "sips" else f";transport={transport}"
    return f"{scheme}:{HOST}:{port}{suffix}"


# --- call events on NATS ----------------------------------------------------------------------


def call_events(nats_url: str, account_sid: str, call_sid: str, timeout: float = 10.0) -> dict:
    """The last CALLS event of each kind of one call, {kind: CallEvent}, once `ended` is in."""
    import nats
    import nats.js.errors

    from trunkline.events.subjects import CALL_EVENT_KINDS, CALLS_STREAM, call_subject
    from trunkline.v1.calls_pb2 import CallEvent

    async def fetch() -> dict[str, Any]:
        connection = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            js = connection.jetstream()
            deadline = time.monotonic() + timeout
            while True:
                found: dict[str, Any] = {}
                for kind in CALL_EVENT_KINDS:
                    subject = call_subject(account_sid, call_sid, kind)
                    try:
                        message = await js.get_last_msg(CALLS_STREAM, subject)
                    except nats.js.errors.NotFoundError:
                        continue
                    found[kind] = CallEvent.FromString(message.data)
                if "ended" in found or time.monotonic() > deadline:
                    return found
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def start_termination(
    tmp_path_factory: pytest.TempPathFactory,
    sipp_binary: str,
    environment: Mapping[str, str] | None = None,
) -> Iterator[Termination]:
    """`trunkline up` with two carrier gateways (priority 10 and 20 on free UDP ports), the
    bootstrap account's SDK client and a caller ID it bought; stopped afterwards. The
    platform trusts a self-signed certificate the tests' TLS PBXs present.
    The gateways' ports are below the ephemeral range and the media relay's ports in a
    window of their own below them, so that nothing else on the machine takes them."""
    root = tmp_path_factory.mktemp("term")
    (root / "pbx-tls").mkdir()
    certificate = write_self_signed(root / "pbx-tls")
    environment = {"TRUNKLINE_SIP_TLS_CA_FILE": str(certificate[0]), **(environment or {})}
    primary, secondary = quiet_udp_ports(2)
    carriers = root / "carriers.toml"
    carriers.write_text(
        "[[gateway]]\n"
        f'name = "carrier-a"\naddress = "{HOST}:{primary}"\npriority = 10\n\n'
        "[[gateway]]\n"
        f'name = "carrier-b"\naddress = "{HOST}:{secondary}"\npriority = 20\n'
    )
    api_port, nats_port, monitor_port = free_ports(3)
    launcher = Launcher(
        DataDir.at(root / "data"),
        api_port,
        nats_port,
        monitor_port,
        extra_args=("--carriers", str(carriers)),
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            # The media service's RTP ports: its own window, below the kernel's ephemeral
            # range (sipp's ports), not the default 10000-60000 another platform on this
            # machine may be using (the relay gives up after 16 busy ports in a row).
            # `trunkline up` has no option for it; supervisord passes its environment on.
            low = random.randrange(20000, 29000, 2)
            env.setenv("TRUNKLINE_MEDIA_PORT_MIN", str(low))
            env.setenv("TRUNKLINE_MEDIA_PORT_MAX", str(low + 1999))
            for name, value in environment.items():
                env.setenv(
                    name, value
                )  # platform settings a test needs (supervisord passes them on)
            platform = launcher.start()
        state = json.loads(platform.data.bootstrap_file.read_text())
        client = Client(state["account_sid"], state["auth_token"])
        client.trunking.base_url = client.api.base_url = platform.api_url
        termination = Termination(
            launcher=launcher,
            platform=platform,
            client=client,
            account_sid=state["account_sid"],
            caller="",
            primary_port=primary,
            secondary_port=secondary,
            sipp_binary=sipp_binary,
            certificate=certificate,
        )
        termination.caller = termination.buy_number("201")
        yield termination
    finally:
        launcher.cleanup()
