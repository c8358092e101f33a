"""The relay: UDP sockets for every leg, the per-packet path, media timeouts and events.

One asyncio loop (uvloop in the service) carries both the control API and the packets.
Each leg has an RTP and an RTCP socket on the relay's port pair; uvloop's datagram
transports read and write in C, which measured here at about a third of the per-packet
cost of asyncio's default transport (see benchmarks/media_relay.py). The per-packet path
(`_RtpProtocol.datagram_received`) does, in order: SRTP unprotect (a failed packet is
dropped and counted before it can latch anything), the latching verdict, statistics, the
recording fork, SRTP protect toward the other leg, and one sendto out of the other leg's
socket, so each peer sees one relay address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic

from trunkline.media.call import (
    Call,
    Leg,
    LegPolicy,
    MediaError,
    Reason,
    new_call,
)
from trunkline.media.latching import Address, Verdict
from trunkline.media.ports import PortAllocation, PortAllocator, PortError, PortsExhausted
from trunkline.media.rtp import HEADER_SIZE
from trunkline.media.srtp import SrtpAuthError, SrtpError
from trunkline.media.stats import StatsSnapshot

__all__ = ["Event", "EventKind", "LegReport", "RecordedPacket", "Relay"]

log = logging.getLogger("trunkline.media.relay")

_LATCHED = (Verdict.LATCHED, Verdict.RELATCHED)
_SEQ_TS_SSRC = struct.Struct("!HII").unpack_from
# A busy port (another process holds it) moves the leg to the next free pair; give up only
# when this many in a row are taken.
_BIND_ATTEMPTS = 256
_EVENT_QUEUE = 10_000


class EventKind:
    FIRST_PACKET = "first_packet"
    MEDIA_TIMEOUT = "media_timeout"
    SRTP_AUTH_FAILURE = "srtp_auth_failure"
    LATCHED = "latched"


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    call_id: str
    tag: str
    time: float  # Unix time
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecordedPacket:
    """A decrypted RTP packet of a recorded call, or the end marker of a recording."""

    call_id: str
    tag: str
    role: str
    packet: bytes
    arrival_ns: int
    end: bool = False


@dataclass(frozen=True, slots=True)
class LegReport:
    tag: str
    role: str
    stats: StatsSnapshot
    rtcp_packets: int
    remote_address: str
    local_port: int
    dropped: int


class _RtpProtocol(asyncio.DatagramProtocol):
    """Packets a leg's peer sends to the leg's RTP port (and RTCP, under rtcp-mux)."""

    __slots__ = ("call", "leg", "other", "out", "relay", "symmetric")

    def __init__(self, relay: Relay, call: Call, leg: Leg) -> None:
        self.relay = relay
        self.call = call
        self.leg = leg
        self.other = call.other(leg)
        self.symmetric = leg.policy.symmetric_rtp
        # The other leg's RTP transport: what this leg sends leaves through it.
        self.out: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        leg = self.leg
        if len(data) < HEADER_SIZE or data[0] & 0xC0 != 0x80:
            leg.dropped += 1
            return
        if 64 <= data[1] & 0x7F <= 95:  # RFC 5761 4: RTCP on an rtcp-mux port
            self.relay.rtcp_received(self.call, leg, data, addr)
            return
        now = monotonic()
        if leg.srtp_in is not None:
            try:
                data = leg.srtp_in.unprotect(data)
            except SrtpAuthError:
                self.relay.srtp_failed(self.call, leg)
                return
            except SrtpError:
                leg.dropped += 1
                return
        sequence, timestamp, ssrc = _SEQ_TS_SSRC(data, 2)
        if self.symmetric:
            verdict = leg.latch.on_packet(addr, ssrc, now)
            if verdict is not Verdict.ACCEPTED:
                if verdict not in _LATCHED:
                    leg.dropped += 1
                    return
                self.relay.latched(self.call, leg)
        leg.stats.on_packet(sequence, timestamp, len(data), now)
        leg.last_rtp = now
        if not leg.first_packet_seen:
            self.relay.first_packet(self.call, leg)
        if self.call.recording:
            self.relay.fork(self.call, leg, data)
        other = self.other
        dest = other.dest
        out = self.out
        if dest is None or out is None:
            leg.dropped += 1
            return
        if other.srtp_out is not None:
            try:
                data = other.srtp_out.protect(data)
            except SrtpError:  # too long, or far behind what this SSRC already sent
                leg.dropped += 1
                return
        out.sendto(data, dest)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the media timeout handles it.
        log.debug("media socket error", extra={"call_id": self.call.call_id, "error": str(exc)})


class _RtcpProtocol(asyncio.DatagramProtocol):
    """Packets a leg's peer sends to the leg's RTCP port (RTP port + 1)."""

    __slots__ = ("call", "leg", "relay")

    def __init__(self, relay: Relay, call: Call, leg: Leg) -> None:
        self.relay = relay
        self.call = call
        self.leg = leg

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay.rtcp_received(self.call, self.leg, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("media socket error", extra={"call_id": self.call.call_id, "error": str(exc)})


class Relay:
    """Every call of this media instance, its sockets and its events."""

    def __init__(
        self,
        address: str,
        ports: PortAllocator,
        *,
        bind_address: str | None = None,
        media_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.bind_address = bind_address or address
        self.ports = ports
        self.media_timeout = media_timeout
        self.clock = clock
        self.calls: dict[str, Call] = {}
        self.rtp_transports: dict[Leg, asyncio.DatagramTransport] = {}
        self._rtcp_transports: dict[Leg, asyncio.DatagramTransport] = {}
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._recording: set[asyncio.Queue[RecordedPacket]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # --- control ----------------------------------------------------------------------

    async def offer(
        self,
        call_id: str,
        from_tag: str,
        sdp: bytes,
        policies: tuple[LegPolicy, LegPolicy] = (LegPolicy(), LegPolicy()),
        *,
        media_timeout: float | None = None,
        record: bool = False,
    ) -> bytes:
        if not call_id or not from_tag:
            raise MediaError(Reason.BAD_SDP, "Offer needs a call ID and a from tag")
        offer, index = Call.parse_offer(sdp)
        call = self.calls.get(call_id)
        if call is not None:
            return call.offer(call.leg_by_tag(from_tag), offer, index)
        if offer.media[index].port == 0:
            raise MediaError(Reason.BAD_SDP, "Offer has no active audio stream")
        allocations = await self._allocate_pairs()
        now = self.clock()
        call = new_call(
            call_id,
            from_tag,
            offer,
            index,
            policies,
            allocations,
            address=self.address,
            media_timeout=media_timeout or self.media_timeout,
            now=now,
        )
        try:
            # Sockets first: a busy port moves the leg to another pair before any SDP names it.
            await self._open(call)
            result = call.offer(call.offerer, offer, index)
        except BaseException:
            await self._close(call)
            raise
        call.recording = record
        self.calls[call_id] = call
        self._start_sweeper()
        return result

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> bytes:
        call = self._call(call_id)
        offerer = call.leg_by_tag(from_tag)
        answerer = call.other(offerer)
        if answerer.tag == "":
            answerer.tag = to_tag
        elif answerer.tag != to_tag:
            # A second early dialog (forking): the latest answer owns the leg.
            log.info("answer from a new to-tag", extra={"call_id": call_id})
            answerer.tag = to_tag
        result = call.answer(answerer, sdp)
        now = self.clock()
        for leg in call.legs:
            if not leg.first_packet_seen:
                leg.last_rtp = now  # the media timeout counts from the answer
        return result

    async def delete(self, call_id: str) -> list[LegReport]:
        call = self._call(call_id)
        reports = self.query(call_id)
        del self.calls[call_id]
        if call.recording:
            self._end_recording(call)
        await self._close(call)
        return reports

    def query(self, call_id: str) -> list[LegReport]:
        call = self._call(call_id)
        return [_report(leg) for leg in call.legs]

    def set_recording(self, call_id: str, on: bool) -> bool:
        call = self._call(call_id)
        if call.recording and not on:
            self._end_recording(call)
        call.recording = on
        return on

    def subscribe(self) -> asyncio.Queue[Event]:
        """A queue that receives every event from now on; `unsubscribe` to detach it."""
        queue: asyncio.Queue[Event] = asyncio.Queue(_EVENT_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    def recordings(self) -> asyncio.Queue[RecordedPacket]:
        """A queue that receives every recorded packet; `stop_recordings` to detach it."""
        queue: asyncio.Queue[RecordedPacket] = asyncio.Queue()
        self._recording.add(queue)
        return queue

    def stop_recordings(self, queue: asyncio.Queue[RecordedPacket]) -> None:
        self._recording.discard(queue)

    async def close(self) -> None:
        for call_id in list(self.calls):
            await self.delete(call_id)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    # --- packet path callbacks (rare events) ---------------------------------------------

    def rtcp_received(self, call: Call, leg: Leg, data: bytes, addr: Address) -> None:
        leg.rtcp_packets += 1
        if leg.srtp_in is not None:
            try:
                data = leg.srtp_in.unprotect_rtcp(data)
            except SrtpAuthError:
                self.srtp_failed(call, leg)
                return
            except SrtpError:
                leg.dropped += 1
                return
        other = call.other(leg)
        dest = other.rtcp_dest
        if dest is None:
            return
        if other.srtp_out is not None:
            try:
                data = other.srtp_out.protect_rtcp(data)
            except SrtpError:
                leg.dropped += 1
                return
        transport = (self.rtp_transports if other.rtcp_mux else self._rtcp_transports).get(other)
        if transport is not None:
            transport.sendto(data, dest)

    def srtp_failed(self, call: Call, leg: Leg) -> None:
        leg.stats.on_srtp_auth_failure()
        if not leg.srtp_failure_reported:
            leg.srtp_failure_reported = True
            self._emit(EventKind.SRTP_AUTH_FAILURE, call, leg, "SRTP authentication failed")

    def latched(self, call: Call, leg: Leg) -> None:
        leg.refresh_dest()
        latched = leg.latch.latched
        detail = "" if latched is None else f"{latched[0]}:{latched[1]}"
        self._emit(EventKind.LATCHED, call, leg, detail)

    def first_packet(self, call: Call, leg: Leg) -> None:
        leg.first_packet_seen = True
        self._emit(EventKind.FIRST_PACKET, call, leg)

    def fork(self, call: Call, leg: Leg, packet: bytes) -> None:
        if not self._recording:
            return
        recorded = RecordedPacket(call.call_id, leg.tag, leg.role.value, packet, time.time_ns())
        for queue in self._recording:
            queue.put_nowait(recorded)

    # --- internals ----------------------------------------------------------------------

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise MediaError(Reason.NOT_FOUND, f"No media session for call {call_id}")
        return call

    async def _allocate_pairs(self) -> tuple[PortAllocation, PortAllocation]:
        try:
            first = self.ports.allocate(self.clock())
        except PortsExhausted as error:
            raise MediaError(Reason.NO_PORTS, "No free media ports") from error
        try:
            second = self.ports.allocate(self.clock())
        except PortsExhausted as error:
            self.ports.release(first, self.clock())
            raise MediaError(Reason.NO_PORTS, "No free media ports") from error
        return first, second

    async def _open(self, call: Call) -> None:
        loop = asyncio.get_running_loop()
        for leg in call.legs:
            for attempt in range(_BIND_ATTEMPTS):
                try:
                    rtp, _ = await loop.create_datagram_endpoint(
                        lambda leg=leg: _RtpProtocol(self, call, leg),  # type: ignore[misc]
                        local_addr=(self.bind_address, leg.allocation.rtp),
                    )
                except OSError:
                    rtp = None
                if rtp is not None and leg.allocation.rtcp is not None:
                    try:
                        rtcp, _ = await loop.create_datagram_endpoint(
                            lambda leg=leg: _RtcpProtocol(self, call, leg),  # type: ignore[misc]
                            local_addr=(self.bind_address, leg.allocation.rtcp),
                        )
                    except OSError:
                        rtp.close()
                        rtp = None
                    else:
                        self._rtcp_transports[leg] = rtcp
                if rtp is not None:
                    self.rtp_transports[leg] = rtp
                    break
                # Another process holds the port: skip the pair (it stays quarantined).
                log.warning("media port busy", extra={"port": leg.allocation.rtp})
                if attempt == _BIND_ATTEMPTS - 1:
                    raise MediaError(Reason.NO_PORTS, "No bindable media ports")
                self.ports.release(leg.allocation, self.clock())
                leg.allocation = await self._allocate_one()
        for leg in call.legs:
            protocol = self.rtp_transports[leg].get_protocol()
            assert isinstance(protocol, _RtpProtocol)
            protocol.out = self.rtp_transports[call.other(leg)]

    async def _allocate_one(self) -> PortAllocation:
        try:
            return self.ports.allocate(self.clock())
        except PortsExhausted as error:
            raise MediaError(Reason.NO_PORTS, "No free media ports") from error

    async def _close(self, call: Call) -> None:
        """Close the call's sockets and release its ports; the ports are free on return."""
        now = self.clock()
        closing = []
        for leg in call.legs:
            for table in (self.rtp_transports, self._rtcp_transports):
                transport = table.pop(leg, None)
                if transport is not None:
                    closing.append(transport.get_extra_info("socket"))
                    transport.close()
            with contextlib.suppress(PortError):
                self.ports.release(leg.allocation, now)
        # A transport closes its socket in a callback of the next loop iteration; wait for
        # it, so that a Delete reply means the ports can be bound again.
        for _ in range(100):
            if all(sock is None or sock.fileno() == -1 for sock in closing):
                break
            await asyncio.sleep(0)

    def _end_recording(self, call: Call) -> None:
        for leg in call.legs:
            marker = RecordedPacket(
                call.call_id, leg.tag, leg.role.value, b"", time.time_ns(), end=True
            )
            for queue in self._recording:
                queue.put_nowait(marker)

    def _emit(self, kind: str, call: Call, leg: Leg, detail: str = "") -> None:
        event = Event(kind, call.call_id, leg.tag, time.time(), detail)
        log.info(
            "media event",
            extra={"call_id": call.call_id, "event": kind, "tag": leg.tag, "detail": detail},
        )
        for queue in self._subscribers:
            if queue.full():
                log.error("media event subscriber too slow; event dropped", extra={"event": kind})
                continue
            queue.put_nowait(event)

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Raise MEDIA_TIMEOUT for legs that should send and have not for the timeout."""
        while True:
            await asyncio.sleep(min(1.0, self.media_timeout / 4))
            self.check_timeouts()

    def check_timeouts(self) -> None:
        now = self.clock()
        for call in list(self.calls.values()):
            if not call.answered:
                continue
            for leg in call.legs:
                silent = now - leg.last_rtp
                if leg.timed_out:
                    if silent < call.media_timeout:
                        leg.timed_out = False  # media resumed; arm again
                    continue
                if leg.sends and silent >= call.media_timeout:
                    leg.timed_out = True
                    self._emit(
                        EventKind.MEDIA_TIMEOUT,
                        call,
                        leg,
                        f"No RTP for {silent:.1f} s (media timeout {call.media_timeout:g} s)",
                    )


def _report(leg: Leg) -> LegReport:
    dest = leg.dest
    return LegReport(
        tag=leg.tag,
        role=leg.role.value,
        stats=leg.stats.snapshot(),
        rtcp_packets=leg.rtcp_packets,
        remote_address="" if dest is None else f"{dest[0]}:{dest[1]}",
        local_port=leg.allocation.rtp,
        dropped=leg.dropped,
    )
