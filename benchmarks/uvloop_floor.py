"""The floor of a Python media relay on uvloop: forward each packet and do nothing else.

A relay for `media_relay.py --relays uvloop-floor`, not a product: per call two UDP sockets
on uvloop datagram transports, exactly as the media service opens them, and a per-packet
callback that only sends the packet out of the other leg's socket to that leg's SDP
address; with `"srtp": true` in the offer, leg B speaks SDES-SRTP AES_CM_128_HMAC_SHA1_80
and the callback also unprotects what B sends and protects what goes to B, with
pylibsrtp as the media service does. No latching, statistics, RTCP, timeouts or recording
fork. Whatever a relay built on uvloop transports (and pylibsrtp) adds per packet comes on
top of this, so the largest N this relay carries bounds what any such relay can carry on
the same machine in the same run.

Control: one JSON object per line over TCP on `--control`, answered with one line:
`{"op": "offer" | "answer", "call_id", "sdp", "srtp"?}` -> `{"sdp"}` (the SDP with this
relay's address, the port the other side should send to and, toward an SRTP leg B, the
relay's `a=crypto`), `{"op": "delete", "call_id"}` -> `{}`; `{"error"}` for anything else.
RTP ports are taken in order from `--port-min` (even ports, stepping by 2) to `--port-max`.

    python benchmarks/uvloop_floor.py --control 127.0.0.1:PORT --address 127.0.0.1
        --port-min 20000 --port-max 25999
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import signal
from collections.abc import Callable

import uvloop
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

_M_AUDIO = re.compile(r"^m=audio (\d+)", re.MULTILINE)
_C_LINE = re.compile(r"^c=IN IP4 (\S+)", re.MULTILINE)
_CRYPTO = re.compile(
    r"^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 inline:([A-Za-z0-9+/=]+)", re.MULTILINE
)


def _session(key: bytes, ssrc_type: int) -> Session:
    return Session(Policy(key=key, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                          ssrc_type=ssrc_type))  # fmt: skip


class _Leg(asyncio.DatagramProtocol):
    """One side of a call: what its peer sends arrives here and leaves by `other`."""

    __slots__ = ("dest", "other", "protect", "transport", "unprotect")

    def __init__(self) -> None:
        self.dest: tuple[str, int] | None = None
        self.other: _Leg | None = None
        self.transport: asyncio.DatagramTransport | None = None
        # SRTP (leg B only): what its peer sends is unprotected, what goes to it protected.
        self.unprotect: Callable[[bytes], bytes] | None = None
        self.protect: Callable[[bytes], bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        other = self.other
        if other is None or other.dest is None or other.transport is None:
            return
        try:
            if self.unprotect is not None:
                data = self.unprotect(data)
            if other.protect is not None:
                data = other.protect(data)
        except SrtpError:
            return
        other.transport.sendto(data, other.dest)


def _media(sdp: str) -> tuple[str, int]:
    host, port = _C_LINE.search(sdp), _M_AUDIO.search(sdp)
    if host is None or port is None:
        raise ValueError("SDP without c=IN IP4 or m=audio")
    return host.group(1), int(port.group(1))


def _rewrite(sdp: str, address: str, port: int) -> str:
    sdp = _C_LINE.sub(f"c=IN IP4 {address}", sdp)
    sdp = re.sub(r"^o=(\S+ \S+ \S+) IN IP4 \S+", rf"o=\1 IN IP4 {address}", sdp, flags=re.M)
    return _M_AUDIO.sub(f"m=audio {port}", sdp, count=1)


class Floor:
    def __init__(self, address: str, port_min: int, port_max: int) -> None:
        self.address = address
        self.next_port = port_min + port_min % 2
        self.port_max = port_max
        self.calls: dict[str, tuple[_Leg, _Leg]] = {}  # (offerer's side, answerer's side)

    async def _open(self, leg: _Leg) -> int:
        loop = asyncio.get_running_loop()
        while self.next_port <= self.port_max:
            port, self.next_port = self.next_port, self.next_port + 2
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: leg, local_addr=(self.address, port)
                )
            except OSError:
                continue  # busy: take the next one
            leg.transport = transport
            return port
        raise ValueError("no free ports")

    async def handle(self, request: dict[str, str]) -> dict[str, str]:
        op, call_id = request["op"], request["call_id"]
        if op == "offer":
            a, b = _Leg(), _Leg()
            a.other, b.other = b, a
            a.dest = _media(request["sdp"])
            await self._open(a)
            port_b = await self._open(b)
            self.calls[call_id] = (a, b)
            sdp = _rewrite(request["sdp"], self.address, port_b)
            if request.get("srtp"):
                key = os.urandom(30)
                b.protect = _session(key, Policy.SSRC_ANY_OUTBOUND).protect
                inline = base64.b64encode(key).decode()
                sdp = sdp.replace(" RTP/AVP ", " RTP/SAVP ", 1).replace(
                    "a=sendrecv\r\n",
                    f"a=sendrecv\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n",
                )
            return {"sdp": sdp}
        if op == "answer":
            a, b = self.calls[call_id]
            b.dest = _media(request["sdp"])
            if b.protect is not None:
                crypto = _CRYPTO.search(request["sdp"])
                if crypto is None:
                    raise ValueError("SRTP leg B answered without AES_CM_128_HMAC_SHA1_80")
                key = base64.b64decode(crypto.group(1))
                b.unprotect = _session(key, Policy.SSRC_ANY_INBOUND).unprotect
            assert a.transport is not None
            port_a = a.transport.get_extra_info("sockname")[1]
            return {"sdp": _rewrite(request["sdp"], self.address, port_a)}
        if op == "delete":
            for leg in self.calls.pop(call_id):
                if leg.transport is not None:
                    leg.transport.close()
            return {}
        raise ValueError(f"unknown op {op!r}")

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                reply = await self.handle(json.loads(line))
            except (KeyError, ValueError, SrtpError) as error:
                reply = {"error": f"{type(error).__name__}: {error}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        writer.close()


async def main(args: argparse.Namespace) -> None:
    floor = Floor(args.address, args.port_min, args.port_max)
    host, port = args.control.rsplit(":", 1)
    server = await asyncio.start_server(floor.serve, host, int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--control", required=True, help="host:port of the control socket")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port-min", type=int, required=True)
    parser.add_argument("--port-max", type=int, required=True)
    uvloop.run(main(parser.parse_args()))
