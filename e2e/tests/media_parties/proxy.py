"""The signaling stand-in of the media end-to-end tests: a tiny stateless SIP proxy over UDP.

It sits between one caller and one callee on loopback, built on the signaling service's SIP
parser and serializer, and drives the media service the way signaling will:

* the caller's INVITE goes to the callee (Request-URI rewritten to the callee's address),
  its SDP through `Media.Offer` (call_id = Call-ID, from_tag = From tag, the test's leg
  policies); the proxy Record-Routes, so ACK and BYE come back through it;
* the callee's 2xx to the INVITE has its SDP rewritten by `Media.Answer` (to_tag = To tag);
* a BYE from either side triggers `Media.Delete`; the proxy keeps its statistics for the
  test.

Without a media stub it forwards SDP untouched (to test the harness itself). Retransmitted
INVITEs and 2xx are forwarded from a cache, so the media service sees each offer and answer
once. It runs in a thread of the test process.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from trunkline.signaling.sip.message import (
    BRANCH_COOKIE,
    ParseError,
    Request,
    Response,
    make_response,
    parse_message,
)
from trunkline.v1 import media_pb2
from trunkline.v1.media_pb2_grpc import MediaStub

HOST = "127.0.0.1"
Address = tuple[str, int]
RPC_TIMEOUT = 5.0

# The address in o=, c= and a=rtcp lines (RFC 4566 5.2 and 5.7, RFC 3605).
_ADDRESS = re.compile(rb"\bIN IP4 [0-9.]+")


def advertise_address(sdp: bytes, address: str) -> bytes:
    """The SDP with every address replaced by `address`, as a user agent behind a NAT that
    knows only its private address writes it."""
    return _ADDRESS.sub(b"IN IP4 " + address.encode(), sdp)


@dataclass
class SdpExchange:
    """One SDP body as the proxy received it and as it sent it on (empty: not seen)."""

    received: bytes = b""
    sent: bytes = b""


@dataclass
class MediaControl:
    """How the proxy drives the media service: the stub and the two legs' policies."""

    stub: MediaStub
    offerer: media_pb2.LegPolicy = field(default_factory=media_pb2.LegPolicy)
    answerer: media_pb2.LegPolicy = field(default_factory=media_pb2.LegPolicy)


class TestProxy:
    """Relays one call between the caller (whoever sends the INVITE) and `callee`."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        callee: Address,
        media: MediaControl | None = None,
        rewrite_offer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.callee = callee
        self.media = media
        self.rewrite_offer = rewrite_offer
        self.caller: Address | None = None
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((HOST, 0))
        self.socket.settimeout(0.05)
        self.address: Address = (HOST, int(self.socket.getsockname()[1]))
        self.record_route = f"<sip:{HOST}:{self.address[1]};lr>"
        # What the test asserts on (and what explains a failure): the SDP of the offer and
        # of the answer as the proxy got them (after `rewrite_offer`) and as it sent them on.
        self.offer = SdpExchange()
        self.answer = SdpExchange()
        # Media.Delete's statistics by leg role ("offerer", "answerer"); {} if it failed.
        self.deleted: dict[str, media_pb2.LegStatistics] | None = None
        self.trace: list[str] = []
        self.errors: list[str] = []
        # Forwarded INVITEs by incoming branch, rewritten 2xx by (Call-ID, CSeq).
        self._invites: dict[str, bytes] = {}
        self._answers: dict[tuple[str, int], bytes] = {}
        self._rejected: set[str] = set()  # branches of INVITEs the proxy answered itself
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sip-test-proxy", daemon=True)

    @property
    def uri(self) -> str:
        return f"sip:callee@{HOST}:{self.address[1]}"

    def start(self) -> TestProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()

    def __enter__(self) -> TestProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._handle(data, source)
            except Exception as exc:  # a failing test reads these, the loop goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _handle(self, data: bytes, source: Address) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            message = parse_message(data)
        except ParseError as exc:
            self.errors.append(f"unparseable datagram from {source}: {exc.reason}")
            return
        if isinstance(message, Request):
            self.trace.append(f"{source[1]} -> {message.method}")
            self._request(message, source)
        else:
            self.trace.append(f"{source[1]} -> {message.status} {message.cseq.method}")
            self._response(message)

    def _send(self, data: bytes, target: Address) -> None:
        self.socket.sendto(data, target)

    # -- requests -----------------------------------------------------------------------------

    def _request(self, request: Request, source: Address) -> None:
        if request.method == "INVITE" and request.to.tag is None:
            self._initial_invite(request, source)
            return
        if request.method == "ACK" and request.top_via.branch in self._rejected:
            return  # RFC 3261 17.1.1.3: the ACK of our own error response ends here
        target = self._other_party(source)
        if target is None:
            self.errors.append(f"{request.method} from unknown {source}")
            return
        routes = request.headers.get_all("Route")
        if routes and f"{HOST}:{self.address[1]}" in routes[0]:
            request.headers.pop_first("Route")  # RFC 3261 16.4: our own loose route
        if request.method == "BYE":
            self._delete(request.call_id)
        self._forward(request, target)

    def _initial_invite(self, request: Request, source: Address) -> None:
        branch = request.top_via.branch or ""
        cached = self._invites.get(branch)
        if cached is not None:
            self._send(cached, self.callee)  # a retransmission: same bytes, no second Offer
            return
        self.caller = source
        request.uri = f"sip:callee@{self.callee[0]}:{self.callee[1]}"
        request.headers.add("Record-Route", self.record_route, first=True)
        if request.body:
            try:
                request.body = self._offer(request)
            except grpc.RpcError as exc:
                self._reject(request, source, exc)
                return
        self._invites[branch] = self._forward(request, self.callee)

    def _offer(self, request: Request) -> bytes:
        sdp = request.body
        if self.rewrite_offer is not None:
            sdp = self.rewrite_offer(sdp)
        self.offer.received = sdp
        if self.media is None:
            self.offer.sent = sdp
            return sdp
        reply = self.media.stub.Offer(
            media_pb2.OfferRequest(
                call_id=request.call_id,
                from_tag=request.from_.tag or "",
                sdp=sdp,
                offerer=self.media.offerer,
                answerer=self.media.answerer,
            ),
            timeout=RPC_TIMEOUT,
        )
        self.offer.sent = reply.sdp
        return self.offer.sent

    def _reject(self, request: Request, source: Address, exc: grpc.RpcError) -> None:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        self.errors.append(f"Offer failed: {code}: {details}")
        status = 503 if code == grpc.StatusCode.RESOURCE_EXHAUSTED else 488
        response = make_response(request, status, to_tag="proxy")
        self._rejected.add(request.top_via.branch or "")
        self._send(bytes(response), source)

    def _forward(self, request: Request, target: Address) -> bytes:
        # A stateless proxy's branch is a function of the incoming one, so a retransmission
        # gets the same branch (RFC 3261 16.11).
        incoming = request.top_via.branch or ""
        branch = BRANCH_COOKIE + hashlib.sha1(incoming.encode(), usedforsecurity=False).hexdigest()
        request.headers.add(
            "Via", f"SIP/2.0/UDP {HOST}:{self.address[1]};branch={branch}", first=True
        )
        hops = request.max_forwards
        request.headers.set("Max-Forwards", str((70 if hops is None else hops) - 1))
        data = bytes(request)
        self._send(data, target)
        return data

    def _other_party(self, source: Address) -> Address | None:
        if source == self.callee:
            return self.caller
        if source == self.caller:
            return self.callee
        return None

    # -- responses ----------------------------------------------------------------------------

    def _response(self, response: Response) -> None:
        ours = response.headers.pop_first("Via")
        if ours is None or f"{HOST}:{self.address[1]}" not in ours:
            self.errors.append(f"response {response.status} without our Via on top")
            return
        target = self._via_target(response)
        key = (response.call_id, response.cseq.number)
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            cached = self._answers.get(key)
            if cached is None:
                if response.body:
                    response.body = self._answer(response)
                cached = self._answers[key] = bytes(response)
            self._send(cached, target)
            return
        self._send(bytes(response), target)

    def _answer(self, response: Response) -> bytes:
        sdp = self.answer.received = response.body
        if self.media is None:
            self.answer.sent = sdp
            return sdp
        reply = self.media.stub.Answer(
            media_pb2.AnswerRequest(
                call_id=response.call_id,
                from_tag=response.from_.tag or "",
                to_tag=response.to.tag or "",
                sdp=sdp,
            ),
            timeout=RPC_TIMEOUT,
        )
        self.answer.sent = reply.sdp
        return self.answer.sent

    def _via_target(self, response: Response) -> Address:
        """Where the next Via says the response goes (RFC 3261 18.2.2, RFC 3581 4)."""
        via = response.top_via
        host = via.received or via.host
        port = via.rport or via.port or 5060
        return host, int(port)

    # -- media ----------------------------------------------------------------------------

    def _delete(self, call_id: str) -> None:
        if self.media is None or self.deleted is not None:
            return  # no media service, or a retransmitted BYE
        try:
            reply = self.media.stub.Delete(
                media_pb2.DeleteRequest(call_id=call_id), timeout=RPC_TIMEOUT
            )
        except grpc.RpcError as exc:
            # The BYE still goes on: the call ends for the parties whatever the relay says.
            self.errors.append(f"Delete failed: {exc}")
            self.deleted = {}
            return
        self.deleted = {leg.role: leg for leg in reply.legs}
