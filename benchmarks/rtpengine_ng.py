"""rtpengine as a media relay for benchmarks: the daemon as a child process, its NG protocol.

- `bencode` / `bdecode`: the NG wire format (no bencode library is in the lock; the format
  is four types and these forty lines).
- `NgClient`: NG over UDP, `<cookie> <bencoded dict>` each way. Every request gets a fresh
  cookie, since rtpengine caches replies by cookie (FIELD-NOTES); a retransmission reuses
  its request's cookie, so a lost reply is answered from that cache, not executed twice.
- `Rtpengine`: starts `rtpengine --foreground` in userspace mode (`--table=-1`) on loopback
  with `--config-file=none` (otherwise it loads /etc/rtpengine/rtpengine.conf and listens on
  its HTTP and CLI ports too), logs to a file, and relays calls through offer / answer /
  delete with the interface `media_relay.py` drives.

Installs the Debian package `rtpengine-daemon` when `rtpengine` is not on PATH.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"
# What rtpengine 10.5 offers besides SRTP_SUITE, as it lists them in an RTP/SAVP offer.
OTHER_SDES_SUITES = (
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
)

# --- bencode -------------------------------------------------------------------------------


def bencode(value: Any) -> bytes:
    """Encode str, bytes, int, list and dict (keys sorted, as the format requires)."""
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%b" % (len(value), value)
    if isinstance(value, bool) or not isinstance(value, int | list | tuple | dict):
        raise TypeError(f"cannot bencode {type(value).__name__}")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value; byte strings come back as str (NG speaks ASCII and UTF-8)."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"trailing data after bencoded value at {end}")
    return value


def _decode(data: bytes, i: int) -> tuple[Any, int]:
    lead = data[i : i + 1]
    if lead == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if lead == b"l":
        items, i = [], i + 1
        while data[i : i + 1] != b"e":
            item, i = _decode(data, i)
            items.append(item)
        return items, i + 1
    if lead == b"d":
        result, i = {}, i + 1
        while data[i : i + 1] != b"e":
            key, i = _decode(data, i)
            result[key], i = _decode(data, i)
        return result, i + 1
    if lead.isdigit():
        colon = data.index(b":", i)
        start = colon + 1
        end = start + int(data[i:colon])
        if end > len(data):
            raise ValueError("bencoded string runs past the end")
        return data[start:end].decode("utf-8", "surrogateescape"), end
    raise ValueError(f"bad bencode at {i}: {data[i : i + 10]!r}")


# --- NG client -----------------------------------------------------------------------------


class NgError(RuntimeError):
    pass


class _NgProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[bytes, asyncio.Future[dict[str, Any]]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        cookie, _, body = data.partition(b" ")
        future = self.waiting.pop(cookie, None)
        if future is not None and not future.done():
            try:
                future.set_result(bdecode(body))
            except ValueError as err:
                future.set_exception(NgError(f"bad NG reply {data[:80]!r}: {err}"))

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(exc)
        self.waiting.clear()


class NgClient:
    """Requests over one UDP socket; many may be in flight, matched by cookie."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.address = (host, port)
        self._cookies = itertools.count(1)
        self._prefix = f"{os.getpid()}-{os.urandom(3).hex()}-"
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol = _NgProtocol()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self._protocol, remote_addr=self.address
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def request(
        self, command: str, timeout: float = 2.0, tries: int = 3, **params: Any
    ) -> dict[str, Any]:
        """Send `command` with `params` (underscores in names become dashes); the reply dict.

        Raises NgError when rtpengine answers `result: error` or does not answer."""
        assert self._transport is not None, "open() first"
        cookie = f"{self._prefix}{next(self._cookies)}".encode()
        body = {"command": command, **{k.replace("_", "-"): v for k, v in params.items()}}
        message = cookie + b" " + bencode(body)
        loop = asyncio.get_running_loop()
        for _ in range(tries):
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._protocol.waiting[cookie] = future
            self._transport.sendto(message)
            try:
                reply = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                continue
            finally:
                self._protocol.waiting.pop(cookie, None)
            if reply.get("result") == "error":
                raise NgError(f"{command}: {reply.get('error-reason', reply)}")
            return reply
        raise NgError(f"{command}: no reply from {self.address} after {tries} tries")


# --- the daemon ----------------------------------------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the benchmark dies, even by SIGKILL."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a child that still runs, wait up to `timeout` s for it, then SIGKILL it."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_problems(log: Path, offset: int) -> tuple[int, list[str]]:
    """Lines logged at warning level or worse since byte `offset`: (count, first three)."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return 0, []
    bad = re.compile(r"\] (ERR|CRIT|ALERT|EMERG|WARNING):|\"level\": \"(ERROR|CRITICAL|WARNING)\"")
    lines = [line for line in text.splitlines() if bad.search(line)]
    return len(lines), lines[:3]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def ensure_rtpengine() -> str:
    """The path of `rtpengine`, installing Debian's rtpengine-daemon first if needed."""
    path = shutil.which("rtpengine")
    if path is None:
        from trunkline.harness.component import apt_install

        apt_install(["rtpengine-daemon"])
        path = shutil.which("rtpengine")
    if path is None:
        raise RuntimeError("rtpengine-daemon installed but no rtpengine on PATH")
    return path


def rtpengine_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().removeprefix("Version: ")


class Rtpengine:
    """rtpengine 10.5 in userspace as the relay under test, driven over NG.

    Both legs are asymmetric (rtpengine sends to the SDP address, as the benchmark's
    generator expects; `symmetric=True` leaves rtpengine's default endpoint learning on).
    With `srtp_b` the offer asks rtpengine for `transport-protocol: RTP/SAVP` towards the
    answerer, so it offers SDES keys there and translates SRTP <-> RTP.
    """

    name = "rtpengine"

    def __init__(
        self,
        workdir: Path,
        port_min: int,
        port_max: int,
        *,
        threads: int | None = None,
        log_level: int = 5,
        symmetric: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = ensure_rtpengine()
        self.workdir = workdir
        self.port_min, self.port_max = port_min, port_max
        self.threads = threads
        self.log_level = log_level
        self.symmetric = symmetric
        self.extra_args = extra_args
        self.log = workdir / "rtpengine.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ng: NgClient | None = None
        self.version = rtpengine_version(self.binary)

    def command(self, ng_port: int) -> list[str]:
        command = [
            self.binary,
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            f"--log-level={self.log_level}",
            "--table=-1",
            f"--interface={HOST}",
            f"--listen-ng={HOST}:{ng_port}",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
            # A deleted call is otherwise kept for 30 s, and with it its ports and memory.
            "--delete-delay=0",
            # No media playback in this benchmark: no player threads.
            "--media-num-threads=0",
        ]
        if self.threads:
            command.append(f"--num-threads={self.threads}")
        return command + list(self.extra_args)

    async def start(self) -> None:
        ng_port = free_udp_port()
        self.command_line = self.command(ng_port)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command_line,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=die_with_parent,
            )
        self.ng = NgClient(ng_port)
        await self.ng.open()
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rtpengine exited {self.process.returncode}: {self.tail()}")
            try:
                reply = await self.ng.request("ping", timeout=0.2, tries=1)
            except (NgError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rtpengine not ready: {self.tail()}") from None
                await asyncio.sleep(0.05)
                continue
            if reply.get("result") == "pong":
                return

    async def stop(self) -> None:
        if self.ng is not None:
            self.ng.close()
            self.ng = None
        process, self.process = self.process, None
        await terminate(process, 20)

    def pids(self) -> list[int]:
        # One process; its /proc/<pid>/stat already sums all of its threads.
        return [self.process.pid] if self.process and self.process.poll() is None else []

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _flags(self) -> list[str]:
        return [] if self.symmetric else ["asymmetric"]

    async def offer(self, call_id: str, from_tag: str, sdp: str, *, srtp_b: bool = False) -> str:
        assert self.ng is not None
        params: dict[str, Any] = {
            "call_id": call_id,
            "from_tag": from_tag,
            "sdp": sdp,
            "flags": self._flags(),
            "replace": ["origin", "session-connection"],
            "ICE": "remove",
        }
        if srtp_b:
            params["transport_protocol"] = "RTP/SAVP"
            # Offer the one suite Trunkline is asked for (10.5 has no SDES "only-" option).
            params["SDES"] = [f"no-{suite}" for suite in OTHER_SDES_SUITES]
            params["DTLS"] = "off"
        reply = await self.ng.request("offer", **params)
        return str(reply["sdp"])

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        assert self.ng is not None
        reply = await self.ng.request(
            "answer",
            call_id=call_id,
            from_tag=from_tag,
            to_tag=to_tag,
            sdp=sdp,
            flags=self._flags(),
            replace=["origin", "session-connection"],
            ICE="remove",
        )
        return str(reply["sdp"])

    async def delete(self, call_id: str) -> None:
        assert self.ng is not None
        await self.ng.request("delete", call_id=call_id)

    def info(self) -> dict[str, Any]:
        return {"version": self.version, "command": getattr(self, "command_line", None)}
