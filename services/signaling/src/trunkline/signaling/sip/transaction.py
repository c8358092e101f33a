"""SIP transactions (RFC 3261 section 17, with the RFC 6026 Accepted state), without I/O.

A `TransactionLayer` takes parsed messages, the caller's clock and TU commands, and returns
a list of outputs: `Send` actions for the transport and events for the transaction user
(TU). It never reads a clock, opens a socket or sleeps; the adapter calls `tick(now)` at
`next_deadline()`. Every method that takes `now` also fires the timers due by then.

    layer = TransactionLayer()
    outputs = layer.receive(parse_message(datagram), Peer("UDP", ip, port), now=clock())
    outputs += layer.respond(key, make_response(request, 180, to_tag=tag), now=clock())
    outputs += layer.tick(now=clock())

RFC 6026 replaces the Terminated transition on a 2xx to INVITE with an Accepted state
(timers L and M, 64*T1): without it a retransmitted INVITE that arrives after the 2xx would
start a second call, and a 2xx retransmitted by another fork would reach no one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from trunkline.signaling.sip.message import (
    Headers,
    Request,
    Response,
    Via,
    make_response,
    new_tag,
)
from trunkline.signaling.sip.timers import Timer, TimerConfig, TimerQueue

__all__ = [
    "MAGIC_COOKIE",
    "Event",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "MessageDiscarded",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "Output",
    "Peer",
    "RequestReceived",
    "ResponseReceived",
    "Role",
    "Send",
    "ServerTransactionRejected",
    "Transaction",
    "TransactionError",
    "TransactionKey",
    "TransactionLayer",
    "TransactionState",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportError",
    "build_ack",
    "build_cancel",
    "client_key",
    "response_destination",
    "response_key",
    "server_key",
]

# RFC 3261 8.1.1.7: a branch from an RFC 3261 element starts with this; one that does not
# comes from an RFC 2543 element and is matched by the 17.2.3 fallback instead.
MAGIC_COOKIE = "z9hG4bK"


class TransactionError(Exception):
    """The TU asked for something the layer cannot do: an unknown transaction, a response
    in a state that admits none, a request without a usable branch. Received messages never
    raise it; they produce events."""


class Role(StrEnum):
    CLIENT = "client"
    SERVER = "server"


class TransactionState(StrEnum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026
    TERMINATED = "Terminated"


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to. The layer only asks whether the transport is
    reliable; the transport adapter maps a Peer back to its socket or connection."""

    transport: str  # "UDP", "TCP", "TLS", "WS", "WSS", "SCTP"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport.upper() != "UDP"


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """What identifies a transaction (RFC 3261 17.1.3 for clients, 17.2.3 for servers).

    Client keys are (branch, method). Server keys are (branch, sent-by, method) when the
    branch carries the magic cookie, else `rfc2543` holds the fallback identity (Request-URI,
    To tag, From tag, Call-ID, CSeq number, top Via) and `branch` is "". An ACK is keyed
    under INVITE, the method of the transaction it belongs to; a CANCEL has its own key.
    """

    role: Role
    method: str
    branch: str
    sent_by: str = ""
    rfc2543: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.rfc2543:
            return f"{self.role}/{self.method}/rfc2543:{'|'.join(self.rfc2543)}"
        via = f"@{self.sent_by}" if self.sent_by else ""
        return f"{self.role}/{self.method}/{self.branch}{via}"


# ---- outputs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Action: write `data` (the serialized `message`) to `destination`. `key` names the
    transaction it belongs to, so a failed write can be reported with `transport_error`."""

    data: bytes
    destination: Peer
    message: Request | Response
    key: TransactionKey | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU. `key` is the server transaction to `respond` on; it is
    None for an ACK, which never has one (17). `invite_key` names, for a CANCEL, the INVITE
    server transaction it cancels (9.2) and, for an ACK to a 2xx, the INVITE it
    acknowledges; None when there is none."""

    request: Request
    source: Peer
    key: TransactionKey | None
    invite_key: TransactionKey | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU. `key` is None for a response that matched no client
    transaction (18.1.2: passed to the core, e.g. a 2xx retransmitted after Timer M)."""

    response: Response
    source: Peer
    key: TransactionKey | None


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """A timer ended the transaction without the exchange completing. For client
    transactions `response` is the final response the TU should act on: 408 for timers B
    and F (17.1.1.2, 17.1.2.2, 8.1.3.1) and 487 when a CANCEL got no final within 64*T1
    (9.1). For server transactions it is None: Timer H means the ACK to a non-2xx never
    came (17.2.1), Timer L that the ACK to a 2xx never came (13.3.1.4)."""

    key: TransactionKey
    timer: Timer
    response: Response | None


@dataclass(frozen=True, slots=True)
class TransportError:
    """`transport_error` was reported (17.1.4, 17.2.4); the transaction is terminated. For a
    client transaction still waiting for a final response, `response` is a synthesized 503
    (8.1.3.1)."""

    key: TransactionKey
    reason: str
    response: Response | None


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction reached Terminated and has been forgotten."""

    key: TransactionKey


@dataclass(frozen=True, slots=True)
class ServerTransactionRejected:
    """A request that would have started a server transaction beyond the configured cap;
    the layer answered it statelessly with 503 (RFC 3261 21.5.4)."""

    request: Request
    source: Peer
    reason: str


@dataclass(frozen=True, slots=True)
class MessageDiscarded:
    """A parsed message whose Via, CSeq, From or To cannot be used for matching; dropped."""

    message: Request | Response
    source: Peer
    reason: str


Event: TypeAlias = (
    RequestReceived
    | ResponseReceived
    | TransactionTimeout
    | TransportError
    | TransactionTerminated
    | ServerTransactionRejected
    | MessageDiscarded
)
Output: TypeAlias = Send | Event


# ---- matching --------------------------------------------------------------------------


def _sent_by(via: Via) -> str:
    # 17.2.3 compares sent-by; an absent port means the transport's default (18.1.1).
    port = via.port if via.port is not None else (5061 if via.transport.upper() == "TLS" else 5060)
    return f"{via.host.lower()}:{port}"


def _rfc2543_identity(request: Request, to_tag: str | None) -> tuple[str, ...]:
    # 17.2.3: Request-URI, To tag, From tag, Call-ID, CSeq (number; the method is the key's)
    # and the top Via. ACK matching substitutes the To tag of the response (see receive).
    return (
        request.uri,
        to_tag or "",
        request.from_.tag or "",
        request.call_id,
        str(request.cseq.number),
        str(request.top_via),
    )


def server_key(request: Request) -> TransactionKey:
    """The server transaction a received request belongs to (RFC 3261 17.2.3).

    Raises ValueError (ParseError) when the top Via, CSeq, From or To is malformed."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return TransactionKey(Role.SERVER, method, branch, _sent_by(via))
    return TransactionKey(Role.SERVER, method, "", "", _rfc2543_identity(request, request.to.tag))


def client_key(request: Request) -> TransactionKey:
    """The client transaction a request we send creates (RFC 3261 17.1.3): its top Via
    branch and its method. Raises TransactionError without an RFC 3261 branch (8.1.1.7)."""
    try:
        branch = request.top_via.branch
    except ValueError as exc:
        raise TransactionError(f"request has no usable top Via: {exc}") from exc
    if not branch or not branch.startswith(MAGIC_COOKIE):
        raise TransactionError(
            f"the top Via branch must start with {MAGIC_COOKIE} (RFC 3261 8.1.1.7), got {branch!r}"
        )
    return TransactionKey(Role.CLIENT, request.method, branch)


def response_key(response: Response) -> TransactionKey | None:
    """The client transaction a received response matches (RFC 3261 17.1.3: top Via branch
    and CSeq method), or None when the top Via has no branch. Raises ValueError when the top
    Via or CSeq is malformed."""
    branch = response.top_via.branch
    if not branch:
        return None
    return TransactionKey(Role.CLIENT, response.cseq.method, branch)


def response_destination(request: Request, source: Peer) -> Peer:
    """Where responses to `request` go (RFC 3261 18.2.2 with RFC 3581 rport).

    Over a reliable transport: back on the connection the request came in on. Over UDP: to
    the Via's maddr if any; to the source address and port when the client asked for rport;
    otherwise to the source address (the `received` address) and the sent-by port."""
    if source.reliable:
        return source
    via = request.top_via
    default_port = 5060
    maddr = via.params.get("maddr")
    if maddr:
        return Peer(source.transport, maddr, via.port or default_port)
    if via.rport is not None:
        return source
    return Peer(source.transport, source.host, via.port or default_port)


def _to_tag(message: Request | Response) -> str | None:
    try:
        return message.to.tag
    except ValueError:
        return None


def _header(message: Request | Response, name: str) -> str:
    value = message.headers.get(name)
    if value is None:
        raise ValueError(f"Missing {name} header")
    return value


def build_ack(request: Request, response: Response) -> Request:
    """The ACK an INVITE client transaction sends for a 300-699 response (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID and From as the INVITE, To from the response (with its tag),
    CSeq number of the INVITE with method ACK, a single Via equal to the INVITE's top Via
    (so the branch matches the server transaction) and the INVITE's Route headers. Raises
    ValueError when the response has no To header."""
    headers = Headers()
    headers.add("Via", _header(request, "Via"))
    headers.add("Max-Forwards", "70")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", _header(request, "From"))
    headers.add("To", _header(response, "To"))
    headers.add("Call-ID", _header(request, "Call-ID"))
    headers.add("CSeq", f"{request.cseq.number} ACK")
    return Request("ACK", request.uri, headers)


def build_cancel(request: Request, reason: str | None = None) -> Request:
    """A CANCEL for a request we sent (RFC 3261 9.1): same Request-URI, Call-ID, To, From,
    CSeq number, a single Via equal to the request's top Via (same branch, so the server
    matches it to the INVITE) and the same Route headers. `reason` is an optional RFC 3326
    Reason header value, e.g. 'SIP;cause=480;text="No answer"'."""
    headers = Headers()
    headers.add("Via", _header(request, "Via"))
    headers.add("Max-Forwards", "70")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", _header(request, "From"))
    headers.add("To", _header(request, "To"))
    headers.add("Call-ID", _header(request, "Call-ID"))
    headers.add("CSeq", f"{request.cseq.number} CANCEL")
    if reason is not None:
        headers.add("Reason", reason)
    return Request("CANCEL", request.uri, headers)


# ---- the four state machines -----------------------------------------------------------


class Transaction:
    """State shared by the four machines. The layer owns the timer queue and calls `fire`
    when one of this transaction's timers is due."""

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        reliable: bool,
        config: TimerConfig,
        queue: TimerQueue[tuple[TransactionKey, Timer]],
    ) -> None:
        self.key = key
        self.request = request
        self.peer = peer  # requests go there (client) or responses (server)
        self.reliable = reliable
        self.state = TransactionState.TERMINATED
        self.last_response: Response | None = None
        self._config = config
        self._queue = queue
        self._timers: dict[Timer, int] = {}
        self._interval = config.t1

    @property
    def terminated(self) -> bool:
        return self.state is TransactionState.TERMINATED

    def deadline(self, timer: Timer) -> float | None:
        """When `timer` fires, or None if it is not running."""
        handle = self._timers.get(timer)
        return None if handle is None else self._queue.deadline(handle)

    @property
    def running_timers(self) -> frozenset[Timer]:
        return frozenset(self._timers)

    def fire(self, timer: Timer, now: float) -> list[Output]:
        raise NotImplementedError

    def timer_fired(self, timer: Timer) -> None:
        self._timers.pop(timer, None)

    def terminate(self) -> list[Output]:
        for handle in self._timers.values():
            self._queue.cancel(handle)
        self._timers.clear()
        self.state = TransactionState.TERMINATED
        return [TransactionTerminated(self.key)]

    def _start(self, timer: Timer, now: float, delay: float) -> None:
        self._stop(timer)
        self._timers[timer] = self._queue.schedule(now + delay, (self.key, timer))

    def _stop(self, *timers: Timer) -> None:
        for timer in timers:
            handle = self._timers.pop(timer, None)
            if handle is not None:
                self._queue.cancel(handle)

    def _send(self, data: bytes, message: Request | Response) -> Send:
        return Send(data, self.peer, message, self.key)


class InviteClientTransaction(Transaction):
    """RFC 3261 17.1.1 (figure 5), with RFC 6026's Accepted state."""

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        reliable: bool,
        config: TimerConfig,
        queue: TimerQueue[tuple[TransactionKey, Timer]],
    ) -> None:
        super().__init__(key, request, peer, reliable, config, queue)
        self.state = TransactionState.CALLING
        self._data = bytes(request)
        self._ack: tuple[Request, bytes] | None = None
        # 9.1: a CANCEL asked for before any provisional response waits for one.
        self.cancel_requested = False
        self.cancel_reason: str | None = None  # its RFC 3326 Reason header, if any
        self.cancel_sent = False

    @property
    def ack(self) -> Request | None:
        """The ACK sent for a non-2xx final response, once there is one."""
        return None if self._ack is None else self._ack[0]

    def start(self, now: float) -> list[Output]:
        if not self.reliable:
            # 17.1.1.2: Timer A only on unreliable transports, first at T1.
            self._start(Timer.A, now, self._interval)
        self._start(Timer.B, now, self._config.timeout)
        return [self._send(self._data, self.request)]

    def on_response(self, response: Response, source: Peer, now: float) -> list[Output]:
        status = response.status
        state = self.state
        if state is TransactionState.CALLING or state is TransactionState.PROCEEDING:
            if status < 200:
                # 17.1.1.2: a provisional response stops retransmission (A) and Timer B.
                self.state = TransactionState.PROCEEDING
                self._stop(Timer.A, Timer.B)
                return [ResponseReceived(response, source, self.key)]
            if status < 300:
                # RFC 6026 8.4: Accepted, so 2xx retransmissions and other forks' 2xx still
                # reach the TU, which acknowledges them end to end (13.2.2.4).
                self._stop(Timer.A, Timer.B, Timer.CANCEL)
                self.last_response = response
                self.state = TransactionState.ACCEPTED
                self._data = b""  # never retransmitted again: not kept for Timer M's 32 s
                self._start(Timer.M, now, self._config.timeout)
                return [ResponseReceived(response, source, self.key)]
            try:
                ack = build_ack(self.request, response)
            except ValueError as exc:
                return [MessageDiscarded(response, source, f"cannot acknowledge: {exc}")]
            self._stop(Timer.A, Timer.B, Timer.CANCEL)
            self.last_response = response
            self.state = TransactionState.COMPLETED
            self._ack = (ack, bytes(ack))
            # 17.1.1.2: Timer D absorbs retransmitted finals; zero on reliable transports.
            self._start(Timer.D, now, self._config.timer_d(self.reliable))
            return [self._send(self._ack[1], ack), ResponseReceived(response, source, self.key)]
        if state is TransactionState.COMPLETED and status >= 300 and self._ack is not None:
            # 17.1.1.2: a retransmitted final is answered with the ACK again, not passed up.
            return [self._send(self._ack[1], self._ack[0])]
        if state is TransactionState.ACCEPTED and 200 <= status < 300:
            return [ResponseReceived(response, source, self.key)]
        return []

    def cancel_started(self, now: float) -> None:
        self.cancel_sent = True
        # 9.1: without a final response 64*T1 after the CANCEL, consider the INVITE
        # cancelled and destroy its client transaction.
        self._start(Timer.CANCEL, now, self._config.timeout)

    def fire(self, timer: Timer, now: float) -> list[Output]:
        state = self.state
        if timer is Timer.A and state is TransactionState.CALLING:
            # 17.1.1.2: Timer A doubles each time, with no T2 cap for INVITE.
            self._interval = self._config.doubled(self._interval, cap_at_t2=False)
            self._start(Timer.A, now, self._interval)
            return [self._send(self._data, self.request)]
        if timer is Timer.B and state is TransactionState.CALLING:
            self._stop(Timer.A)
            timeout = make_response(self.request, 408)
            return [TransactionTimeout(self.key, Timer.B, timeout), *self.terminate()]
        if timer is Timer.CANCEL and state is TransactionState.PROCEEDING:
            cancelled = make_response(self.request, 487)
            return [TransactionTimeout(self.key, Timer.CANCEL, cancelled), *self.terminate()]
        if timer is Timer.D and state is TransactionState.COMPLETED:
            return self.terminate()
        if timer is Timer.M and state is TransactionState.ACCEPTED:
            return self.terminate()
        return []


class NonInviteClientTransaction(Transaction):
    """RFC 3261 17.1.2 (figure 6)."""

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        reliable: bool,
        config: TimerConfig,
        queue: TimerQueue[tuple[TransactionKey, Timer]],
    ) -> None:
        super().__init__(key, request, peer, reliable, config, queue)
        self.state = TransactionState.TRYING
        self._data = bytes(request)

    def start(self, now: float) -> list[Output]:
        if not self.reliable:
            # 17.1.2.2: Timer E only on unreliable transports, first at T1.
            self._start(Timer.E, now, self._interval)
        self._start(Timer.F, now, self._config.timeout)
        return [self._send(self._data, self.request)]

    def on_response(self, response: Response, source: Peer, now: float) -> list[Output]:
        state = self.state
        if state is not TransactionState.TRYING and state is not TransactionState.PROCEEDING:
            return []  # 17.1.2.2: Completed absorbs retransmitted responses
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
            return [ResponseReceived(response, source, self.key)]
        self._stop(Timer.E, Timer.F)
        self.last_response = response
        self.state = TransactionState.COMPLETED
        # 17.1.2.2: Timer K is T4 on unreliable transports and zero on reliable ones.
        self._start(Timer.K, now, self._config.timer_k(self.reliable))
        return [ResponseReceived(response, source, self.key)]

    def fire(self, timer: Timer, now: float) -> list[Output]:
        state = self.state
        if timer is Timer.E and state is TransactionState.TRYING:
            # 17.1.2.2: E doubles until T2 while Trying.
            self._interval = self._config.doubled(self._interval, cap_at_t2=True)
            self._start(Timer.E, now, self._interval)
            return [self._send(self._data, self.request)]
        if timer is Timer.E and state is TransactionState.PROCEEDING:
            # 17.1.2.2: once a provisional arrived, E is reset to T2 each time.
            self._interval = self._config.t2
            self._start(Timer.E, now, self._interval)
            return [self._send(self._data, self.request)]
        if timer is Timer.F and state in (TransactionState.TRYING, TransactionState.PROCEEDING):
            self._stop(Timer.E)
            timeout = make_response(self.request, 408)
            return [TransactionTimeout(self.key, Timer.F, timeout), *self.terminate()]
        if timer is Timer.K and state is TransactionState.COMPLETED:
            return self.terminate()
        return []


class _ServerTransaction(Transaction):
    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        reliable: bool,
        config: TimerConfig,
        queue: TimerQueue[tuple[TransactionKey, Timer]],
    ) -> None:
        super().__init__(key, request, peer, reliable, config, queue)
        self._provisional: tuple[Response, bytes] | None = None
        self._final: tuple[Response, bytes] | None = None
        self._kept_tag: str | None = None  # to_tag once the responses are let go

    @property
    def to_tag(self) -> str | None:
        """The To tag the TU put in its responses (9.2, 17.2.3), final before provisional.
        Looked up on demand: most transactions never need it, and parsing To costs."""
        for sent in (self._final, self._provisional):
            if sent is not None:
                tag = _to_tag(sent[0])
                if tag:
                    return tag
        return self._kept_tag

    def _record(self, response: Response, data: bytes) -> None:
        self.last_response = response
        if response.status < 200:
            self._provisional = (response, data)
        else:
            self._final = (response, data)

    def start(self, now: float) -> list[Output]:
        return []

    def on_request(self, request: Request, now: float) -> list[Output]:
        raise NotImplementedError

    def send_response(self, response: Response, now: float) -> list[Output]:
        raise NotImplementedError


class InviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.1 (figure 7), with RFC 6026's Accepted state. In Accepted it also
    retransmits the 2xx until the ACK arrives (13.3.1.4: a UAS core duty, kept here because
    the transaction already holds the response, its destination and the clock)."""

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        reliable: bool,
        config: TimerConfig,
        queue: TimerQueue[tuple[TransactionKey, Timer]],
    ) -> None:
        super().__init__(key, request, peer, reliable, config, queue)
        self.state = TransactionState.PROCEEDING
        self.ack_received = False
        self.accepted_ref: tuple[str, int, str] | None = None  # the layer's 2xx ACK index

    def start(self, now: float) -> list[Output]:
        # 17.2.1: 100 Trying unless the TU is known to answer within 200 ms (policy).
        delay = self._config.trying_delay
        if delay is None:
            return []
        if delay == 0:
            return self._send_trying()
        self._start(Timer.TRYING, now, delay)
        return []

    def _send_trying(self) -> list[Output]:
        trying = make_response(self.request, 100)
        # 8.2.6.1: a 100 copies the request's Timestamp so the client can measure RTT.
        timestamp = self.request.headers.get("Timestamp")
        if timestamp is not None:
            trying.headers.set("Timestamp", timestamp)
        data = bytes(trying)
        self._record(trying, data)
        return [self._send(data, trying)]

    def on_request(self, request: Request, now: float) -> list[Output]:
        # 17.2.1: a retransmitted INVITE gets the last provisional (Proceeding) or the final
        # response (Completed) again; Confirmed and Accepted (RFC 6026 8.7) absorb it.
        if self.state is TransactionState.PROCEEDING and self._provisional is not None:
            return [self._send(self._provisional[1], self._provisional[0])]
        if self.state is TransactionState.COMPLETED and self._final is not None:
            return [self._send(self._final[1], self._final[0])]
        return []

    def on_ack(self, now: float) -> list[Output]:
        """An ACK matched by 17.2.3, i.e. for our non-2xx final; absorbed here."""
        if self.state is TransactionState.COMPLETED:
            self._stop(Timer.G, Timer.H)
            self.state = TransactionState.CONFIRMED
            # 17.2.1: Timer I absorbs ACK retransmissions; zero on reliable transports.
            self._start(Timer.I, now, self._config.timer_i(self.reliable))
        return []

    def on_2xx_ack(self) -> None:
        """The ACK for our 2xx reached the TU: stop retransmitting the 2xx (13.3.1.4).

        Nothing is sent again after that (Accepted absorbs retransmitted INVITEs), so the
        responses are let go, their To tag kept: the transaction waits out Timer L (32 s)
        for every answered call, and holding its 2xx and provisional cost ~2 KiB a call."""
        self.ack_received = True
        self._stop(Timer.RETRANSMIT_2XX)
        self._kept_tag = self.to_tag
        self._provisional = self._final = None
        self.last_response = None

    def send_response(self, response: Response, now: float) -> list[Output]:
        status = response.status
        if self.state is TransactionState.PROCEEDING:
            self._stop(Timer.TRYING)
            data = bytes(response)
            self._record(response, data)
            if status < 200:
                return [self._send(data, response)]
            if status < 300:
                # RFC 6026 8.7 (replacing 17.2.1's Terminated): Accepted for 64*T1 (L).
                self.state = TransactionState.ACCEPTED
                self._start(Timer.L, now, self._config.timeout)
                if not self.reliable or self._config.retransmit_2xx_on_reliable:
                    self._interval = self._config.t1
                    self._start(Timer.RETRANSMIT_2XX, now, self._interval)
                return [self._send(data, response)]
            self.state = TransactionState.COMPLETED
            if not self.reliable:
                # 17.2.1: Timer G only on unreliable transports, first at T1.
                self._interval = self._config.t1
                self._start(Timer.G, now, self._interval)
            self._start(Timer.H, now, self._config.timeout)
            return [self._send(data, response)]
        if self.state is TransactionState.ACCEPTED and 200 <= status < 300:
            # RFC 6026 8.7: further 2xx from the TU (e.g. its own retransmissions) are sent.
            data = bytes(response)
            self._record(response, data)
            return [self._send(data, response)]
        raise TransactionError(
            f"cannot send {status} on {self.key}: INVITE server transaction is {self.state}"
        )

    def fire(self, timer: Timer, now: float) -> list[Output]:
        state = self.state
        if timer is Timer.TRYING and state is TransactionState.PROCEEDING:
            return [] if self._provisional is not None else self._send_trying()
        if timer is Timer.G and state is TransactionState.COMPLETED and self._final is not None:
            # 17.2.1: G doubles until T2.
            self._interval = self._config.doubled(self._interval, cap_at_t2=True)
            self._start(Timer.G, now, self._interval)
            return [self._send(self._final[1], self._final[0])]
        if timer is Timer.H and state is TransactionState.COMPLETED:
            self._stop(Timer.G)
            return [TransactionTimeout(self.key, Timer.H, None), *self.terminate()]
        if timer is Timer.I and state is TransactionState.CONFIRMED:
            return self.terminate()
        if (
            timer is Timer.RETRANSMIT_2XX
            and state is TransactionState.ACCEPTED
            and not self.ack_received
            and self._final is not None
        ):
            # 13.3.1.4: the 2xx interval starts at T1 and doubles until T2.
            self._interval = self._config.doubled(self._interval, cap_at_t2=True)
            self._start(Timer.RETRANSMIT_2XX, now, self._interval)
            return [self._send(self._final[1], self._final[0])]
        if timer is Timer.L and state is TransactionState.ACCEPTED:
            if self.ack_received:
                return self.terminate()
            # 13.3.1.4: 64*T1 without an ACK; the TU should end the session with BYE.
            return [TransactionTimeout(self.key, Timer.L, None), *self.terminate()]
        return []


class NonInviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.2 (figure 8)."""

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Peer,
        reliable: bool,
        config: TimerConfig,
        queue: TimerQueue[tuple[TransactionKey, Timer]],
    ) -> None:
        super().__init__(key, request, peer, reliable, config, queue)
        self.state = TransactionState.TRYING

    def on_request(self, request: Request, now: float) -> list[Output]:
        # 17.2.2: Trying discards retransmissions; Proceeding and Completed replay the last
        # response sent.
        if self.state is TransactionState.PROCEEDING and self._provisional is not None:
            return [self._send(self._provisional[1], self._provisional[0])]
        if self.state is TransactionState.COMPLETED and self._final is not None:
            return [self._send(self._final[1], self._final[0])]
        return []

    def send_response(self, response: Response, now: float) -> list[Output]:
        if self.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            raise TransactionError(
                f"cannot send {response.status} on {self.key}: transaction is {self.state}"
            )
        data = bytes(response)
        self._record(response, data)
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
        else:
            self.state = TransactionState.COMPLETED
            # 17.2.2: Timer J is 64*T1 on unreliable transports, zero on reliable ones.
            self._start(Timer.J, now, self._config.timer_j(self.reliable))
        return [self._send(data, response)]

    def fire(self, timer: Timer, now: float) -> list[Output]:
        if timer is Timer.J and self.state is TransactionState.COMPLETED:
            return self.terminate()
        return []


ClientTransaction: TypeAlias = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction: TypeAlias = InviteServerTransaction | NonInviteServerTransaction


# ---- the layer -------------------------------------------------------------------------


class TransactionLayer:
    """Every live transaction of one SIP endpoint, matched and timed (RFC 3261 17).

    `max_server_transactions` bounds the memory a flood of requests can take: a request
    that would start one more is answered 503 statelessly and reported with
    `ServerTransactionRejected`. Terminated transactions are forgotten at once.
    """

    def __init__(
        self,
        config: TimerConfig | None = None,
        *,
        max_server_transactions: int = 65536,
    ) -> None:
        if max_server_transactions < 1:
            raise ValueError("max_server_transactions must be at least 1")
        self.config = config if config is not None else TimerConfig()
        self.max_server_transactions = max_server_transactions
        self._queue: TimerQueue[tuple[TransactionKey, Timer]] = TimerQueue()
        self._client: dict[TransactionKey, ClientTransaction] = {}
        self._server: dict[TransactionKey, ServerTransaction] = {}
        # (Call-ID, CSeq number, From tag) of INVITE server transactions in Accepted, so an
        # ACK for a 2xx, which carries a new branch (13.2.2.4), stops 2xx retransmission.
        self._accepted: dict[tuple[str, int, str], TransactionKey] = {}

    # -- inspection

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    @property
    def server_count(self) -> int:
        return len(self._server)

    @property
    def timer_count(self) -> int:
        return len(self._queue)

    @property
    def timer_heap_size(self) -> int:
        return self._queue.heap_size

    @property
    def accepted_index_size(self) -> int:
        return len(self._accepted)

    def get(self, key: TransactionKey) -> Transaction | None:
        if key.role is Role.CLIENT:
            return self._client.get(key)
        return self._server.get(key)

    def transactions(self) -> Iterator[Transaction]:
        yield from self._client.values()
        yield from self._server.values()

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do, or None when no timer runs."""
        return self._queue.next_deadline()

    # -- inputs

    def receive(self, message: Request | Response, source: Peer, now: float) -> list[Output]:
        """A parsed message from the transport. Never raises for any parsed message."""
        if isinstance(message, Request):
            out = self._receive_request(message, source, now)
        else:
            out = self._receive_response(message, source, now)
        out.extend(self.tick(now))
        return out

    def send_request(
        self,
        request: Request,
        destination: Peer,
        now: float,
        *,
        reliable: bool | None = None,
    ) -> list[Output]:
        """Start a client transaction for `request` (its key is `client_key(request)`).
        `reliable` defaults to the destination's transport. ACK is not a transaction (17):
        send an ACK for a 2xx with `send_stateless`."""
        if request.method == "ACK":
            raise TransactionError(
                "ACK does not start a transaction (RFC 3261 17); use send_stateless"
            )
        key = client_key(request)
        if key in self._client:
            raise TransactionError(f"client transaction {key} already exists")
        is_reliable = destination.reliable if reliable is None else reliable
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(
                key, request, destination, is_reliable, self.config, self._queue
            )
        else:
            txn = NonInviteClientTransaction(
                key, request, destination, is_reliable, self.config, self._queue
            )
        self._client[key] = txn
        out = txn.start(now)
        out.extend(self.tick(now))
        return out

    def send_stateless(self, message: Request | Response, destination: Peer) -> list[Output]:
        """A message outside any transaction: the ACK for a 2xx (13.2.2.4), a UAS core's own
        2xx retransmission, a stateless response."""
        return [Send(bytes(message), destination, message, None)]

    def respond(self, key: TransactionKey, response: Response, now: float) -> list[Output]:
        """Send `response` on the server transaction `key` (17.2.1, 17.2.2)."""
        txn = self._server.get(key) if key.role is Role.SERVER else None
        if txn is None:
            raise TransactionError(f"no server transaction {key}")
        if not 100 <= response.status <= 699:
            raise TransactionError(f"status {response.status} is not a SIP status code")
        out = txn.send_response(response, now)
        if (
            isinstance(txn, InviteServerTransaction)
            and txn.state is TransactionState.ACCEPTED
            and txn.accepted_ref is None
        ):
            try:
                ref = (txn.request.call_id, txn.request.cseq.number, txn.request.from_.tag or "")
            except ValueError:
                ref = None
            if ref is not None:
                txn.accepted_ref = ref
                self._accepted[ref] = key
        self._reap(txn)
        out.extend(self.tick(now))
        return out

    def cancel(self, key: TransactionKey, now: float, *, reason: str | None = None) -> list[Output]:
        """Cancel the INVITE client transaction `key` (RFC 3261 9.1).

        Before any provisional response the CANCEL waits for one (9.1 forbids sending it
        earlier); after a final response it has no effect and nothing is sent. The CANCEL
        runs as its own non-INVITE client transaction, key `client_key(CANCEL)`; responses
        to it and the INVITE's 487 reach the TU as usual."""
        txn = self._client.get(key) if key.role is Role.CLIENT else None
        if not isinstance(txn, InviteClientTransaction):
            raise TransactionError(f"no INVITE client transaction {key}")
        out: list[Output] = []
        if not txn.cancel_requested and txn.state in (
            TransactionState.CALLING,
            TransactionState.PROCEEDING,
        ):
            txn.cancel_requested = True
            txn.cancel_reason = reason
            out.extend(self._after_invite_client(txn, now))
        out.extend(self.tick(now))
        return out

    def answer_cancel(self, cancel_key: TransactionKey, now: float) -> list[Output]:
        """Answer a received CANCEL (RFC 3261 9.2): 200 to the CANCEL and, if the INVITE has
        no final response yet, 487 to the INVITE, both with the To tag the TU already used
        in a provisional (or a new one); 481 when no INVITE transaction matches."""
        txn = self._server.get(cancel_key) if cancel_key.role is Role.SERVER else None
        if txn is None or txn.request.method != "CANCEL":
            raise TransactionError(f"no CANCEL server transaction {cancel_key}")
        invite = self._server.get(dataclasses.replace(cancel_key, method="INVITE"))
        if not isinstance(invite, InviteServerTransaction):
            return self.respond(cancel_key, make_response(txn.request, 481, to_tag=new_tag()), now)
        tag = invite.to_tag or new_tag()
        out = self.respond(cancel_key, make_response(txn.request, 200, to_tag=tag), now)
        if invite.state is TransactionState.PROCEEDING:
            out.extend(
                self.respond(invite.key, make_response(invite.request, 487, to_tag=tag), now)
            )
        return out

    def forget(self, key: TransactionKey) -> None:
        """Drop a server transaction without answering it, e.g. for a source the TU has
        decided to ignore (a locked-out address: any answer would help an attacker). A
        retransmission of the request then starts a new transaction, which the TU drops
        again. Unknown keys are ignored."""
        txn = self._server.get(key) if key.role is Role.SERVER else None
        if txn is not None:
            txn.terminate()
            self._reap(txn)

    def transport_error(
        self, key: TransactionKey, now: float, reason: str = "transport error"
    ) -> list[Output]:
        """The transport could not deliver a `Send` of transaction `key` (17.1.4, 17.2.4):
        the transaction is terminated and the TU told. Unknown keys are ignored, since a
        failure can be reported after the transaction ended."""
        txn = self.get(key)
        if txn is None:
            return []
        out = self._fail(txn, reason)
        out.extend(self.tick(now))
        return out

    def transport_error_to(
        self, peer: Peer, now: float, reason: str = "transport error"
    ) -> list[Output]:
        """Every transaction sending to `peer` failed at once (a refused or lost connection)."""
        out: list[Output] = []
        for txn in [t for t in self.transactions() if t.peer == peer]:
            out.extend(self._fail(txn, reason))
        out.extend(self.tick(now))
        return out

    def tick(self, now: float) -> list[Output]:
        """Fire every timer due at or before `now`, earliest first."""
        out: list[Output] = []
        while (due := self._queue.pop_due(now)) is not None:
            key, timer = due[2]
            txn = self.get(key)
            if txn is None:
                continue
            txn.timer_fired(timer)
            out.extend(txn.fire(timer, now))
            self._reap(txn)
        return out

    # -- internals

    def _receive_request(self, request: Request, source: Peer, now: float) -> list[Output]:
        try:
            key = server_key(request)
        except ValueError as exc:
            return [MessageDiscarded(request, source, f"cannot match request: {exc}")]
        if request.method == "ACK":
            return self._receive_ack(request, source, key, now)
        existing = self._server.get(key)
        if existing is not None:
            return existing.on_request(request, now)
        invite_key: TransactionKey | None = None
        if request.method == "CANCEL":
            # 9.2: the CANCEL matches the INVITE by 17.2.3 with the method set aside.
            target = self._server.get(dataclasses.replace(key, method="INVITE"))
            if isinstance(target, InviteServerTransaction):
                invite_key = target.key
        if len(self._server) >= self.max_server_transactions:
            return self._reject(request, source)
        destination = response_destination(request, source)  # server_key parsed the top Via
        txn: ServerTransaction
        if request.method == "INVITE":
            txn = InviteServerTransaction(
                key, request, destination, source.reliable, self.config, self._queue
            )
        else:
            txn = NonInviteServerTransaction(
                key, request, destination, source.reliable, self.config, self._queue
            )
        self._server[key] = txn
        out = txn.start(now)
        out.append(RequestReceived(request, source, key, invite_key))
        return out

    def _receive_ack(
        self, ack: Request, source: Peer, key: TransactionKey, now: float
    ) -> list[Output]:
        txn = self._server.get(key)
        if txn is None and key.rfc2543 and key.rfc2543[1]:
            # 17.2.3 (RFC 2543): the ACK's To tag is the one our response added, so look
            # the INVITE up by its own (empty) To tag and compare with the response's.
            candidate = self._server.get(
                dataclasses.replace(key, rfc2543=_with_to_tag(key.rfc2543, ""))
            )
            if candidate is not None and candidate.to_tag == key.rfc2543[1]:
                txn = candidate
        if isinstance(txn, InviteServerTransaction):
            if txn.state is TransactionState.ACCEPTED:
                # RFC 6026 8.7: in Accepted an ACK (here one reusing the INVITE's branch,
                # as RFC 2543 clients do) goes to the TU.
                txn.on_2xx_ack()
                return [RequestReceived(ack, source, None, txn.key)]
            return txn.on_ack(now)
        # 13.2.2.4 / 17: an ACK for a 2xx is its own transaction-less request for the TU.
        invite_key: TransactionKey | None = None
        try:
            ref = (ack.call_id, ack.cseq.number, ack.from_.tag or "")
        except ValueError as exc:
            return [MessageDiscarded(ack, source, f"cannot match ACK: {exc}")]
        accepted_key = self._accepted.get(ref)
        accepted = self._server.get(accepted_key) if accepted_key is not None else None
        if isinstance(accepted, InviteServerTransaction) and (
            accepted.to_tag is None or accepted.to_tag == _to_tag(ack)
        ):
            accepted.on_2xx_ack()
            invite_key = accepted.key
        return [RequestReceived(ack, source, None, invite_key)]

    def _receive_response(self, response: Response, source: Peer, now: float) -> list[Output]:
        if not 100 <= response.status <= 699:
            return [MessageDiscarded(response, source, f"status {response.status} out of range")]
        try:
            key = response_key(response)
        except ValueError as exc:
            return [MessageDiscarded(response, source, f"cannot match response: {exc}")]
        txn = self._client.get(key) if key is not None else None
        if txn is None:
            # 18.1.2: a response matching no transaction goes to the core.
            return [ResponseReceived(response, source, None)]
        out = txn.on_response(response, source, now)
        if isinstance(txn, InviteClientTransaction):
            out.extend(self._after_invite_client(txn, now))
        self._reap(txn)
        return out

    def _after_invite_client(self, txn: InviteClientTransaction, now: float) -> list[Output]:
        # 9.1: a CANCEL goes out once the INVITE is Proceeding; one asked for while Calling
        # goes out with the first provisional response.
        if (
            txn.cancel_requested
            and not txn.cancel_sent
            and txn.state is TransactionState.PROCEEDING
        ):
            return self._send_cancel(txn, now)
        return []

    def _send_cancel(self, txn: InviteClientTransaction, now: float) -> list[Output]:
        try:
            cancel = build_cancel(txn.request, txn.cancel_reason)
        except ValueError:
            # A TU-built INVITE whose CSeq does not parse cannot be cancelled (9.1 copies
            # it); nothing is sent and the INVITE ends by its own timers.
            return []
        key = dataclasses.replace(txn.key, method="CANCEL")
        txn.cancel_started(now)
        if key in self._client:
            return []
        cancel_txn = NonInviteClientTransaction(
            key, cancel, txn.peer, txn.reliable, self.config, self._queue
        )
        self._client[key] = cancel_txn
        return cancel_txn.start(now)

    def _reject(self, request: Request, source: Peer) -> list[Output]:
        reason = f"more than {self.max_server_transactions} server transactions"
        response = make_response(request, 503, to_tag=new_tag())
        # 21.5.4: Retry-After tells the client when to come back instead of at once.
        response.headers.set("Retry-After", "5")
        destination = response_destination(request, source)
        return [
            Send(bytes(response), destination, response, None),
            ServerTransactionRejected(request, source, reason),
        ]

    def _fail(self, txn: Transaction, reason: str) -> list[Output]:
        if txn.terminated:
            return []
        response: Response | None = None
        waiting = txn.state in (
            TransactionState.CALLING,
            TransactionState.TRYING,
            TransactionState.PROCEEDING,
        )
        if txn.key.role is Role.CLIENT and waiting:
            response = make_response(txn.request, 503)
        out: list[Output] = [TransportError(txn.key, reason, response), *txn.terminate()]
        self._reap(txn)
        return out

    def _reap(self, txn: Transaction) -> None:
        if not txn.terminated:
            return
        if txn.key.role is Role.CLIENT:
            if self._client.get(txn.key) is txn:
                del self._client[txn.key]
        elif self._server.get(txn.key) is txn:
            del self._server[txn.key]
        if isinstance(txn, InviteServerTransaction) and txn.accepted_ref is not None:
            if self._accepted.get(txn.accepted_ref) == txn.key:
                del self._accepted[txn.accepted_ref]
            txn.accepted_ref = None


def _with_to_tag(identity: tuple[str, ...], to_tag: str) -> tuple[str, ...]:
    return (identity[0], to_tag, *identity[2:])
