"""The back-to-back user agent: one call is two dialogs, the customer's leg and the far leg.

Leg A is the dialog with the side that sent the INVITE (the PBX on termination); leg B is
the dialog this B2BUA opens toward the destination (a carrier gateway). Nothing passes
from one leg to the other unchanged: each leg has its own Call-ID, tags, CSeq space and
Contact, and every SDP goes through the media service (the relay anchors the audio), so
the customer never sees the carrier's addresses and back.

Each call is an actor: the SIP events of both legs and the timers go into its queue and
one task handles them in order, so a BYE that arrives while the media service is still
answering an offer waits its turn instead of racing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trunkline.digest.sip import DigestClient, DigestError, parse_challenge
from trunkline.signaling.disaster_recovery import CallStatus as DrStatus
from trunkline.signaling.disaster_recovery import DialResult, DialStatus, Ending, EndKind
from trunkline.signaling.sip.dialog import Dialog, DialogError, DialogLayer
from trunkline.signaling.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    make_response,
    new_tag,
)
from trunkline.signaling.sip.transaction import (
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionError,
    TransactionKey,
    TransactionTimeout,
    TransportError,
)
from trunkline.signaling.sip.transport import Endpoint
from trunkline.signaling.sip.uri import SipUri, parse_uri
from trunkline.signaling.twiml import DialTarget
from trunkline.signaling.twiml import Number as DrNumber

__all__ = [
    "Call",
    "CallHooks",
    "CallState",
    "Destination",
    "LinkedCall",
    "Media",
    "MediaRefused",
    "Reject",
]

log = logging.getLogger("trunkline.signaling.b2bua")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY"
ERROR_HEADER = "X-Trunkline-Error-Code"
# Headers a B2BUA never copies from one leg to the other: they describe the leg itself.
_LEG_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "from",
        "to",
        "call-id",
        "cseq",
        "max-forwards",
        "content-length",
        "content-type",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "supported",
        "require",
        "session-expires",
        "min-se",
        "allow",
        "x-trunkline-error-code",
    }
)


@dataclass(frozen=True)
class Reject:
    """A refusal with a SIP status, a reason phrase that says what is wrong and the Twilio
    error code for X-Trunkline-Error-Code (0: none)."""

    status: int
    reason: str
    code: int = 0


class MediaRefused(Exception):
    def __init__(self, reject: Reject) -> None:
        super().__init__(reject.reason)
        self.reject = reject


class Media(Protocol):
    """What a call needs of the media service (see clients.MediaClient)."""

    async def offer(self, call_id: str, from_tag: str, sdp: bytes, **policy: Any) -> bytes: ...

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> bytes: ...

    async def delete(self, call_id: str) -> None: ...

    async def start_recording(self, call_id: str) -> None: ...


@dataclass(frozen=True)
class LinkedCall:
    """The origination side of an on-net call: its own Call SID, account and trunk."""

    sid: str
    account_sid: str
    trunk_sid: str


@dataclass(frozen=True)
class Destination:
    """One attempt of leg B: where to send the INVITE and what it says."""

    peer: Peer
    request_uri: str
    name: str = ""
    # Fail over to the next destination on no response within this many seconds.
    no_response_timeout: float = 4.0
    # Digest username and password, when the carrier challenges (RFC 3261 22.2).
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    # Headers this attempt adds (an origination URL's X- headers).
    headers: tuple[tuple[str, str], ...] = ()
    # What a redirect of this attempt is judged against (origination.OriginationTarget).
    target: Any = None


class CallHooks(Protocol):
    """Lifecycle callbacks: events and CDRs (the service publishes them)."""

    def started(self, call: Call) -> None: ...

    def ringing(self, call: Call) -> None: ...

    def answered(self, call: Call) -> None: ...

    def ended(self, call: Call) -> None: ...


class CallState(enum.Enum):
    ROUTING = "routing"  # leg B attempts in progress, nothing final yet
    EARLY = "early"  # leg B sent a provisional with a To tag
    ANSWERED = "answered"
    ENDED = "ended"


_END_STATUS = {
    486: "busy",
    600: "busy",
    408: "no-answer",
    480: "no-answer",
    487: "canceled",
}


@dataclass
class Call:
    """One B2BUA call. Built by the service once the INVITE is admitted and routed."""

    sid: str
    endpoint: Endpoint
    dialogs: DialogLayer
    media: Media
    hooks: CallHooks
    a_request: Request
    a_key: TransactionKey
    a_source: Peer
    destinations: list[Destination]
    b_from: str  # From URI of leg B (the caller ID at the platform)
    b_headers: list[tuple[str, str]] = field(default_factory=list)  # extra headers for B
    media_policy: dict[str, Any] = field(default_factory=dict)
    max_duration: float = 86400.0
    on_done: Callable[[Call], None] = lambda call: None
    # Called with each Call-ID leg B uses, so the service routes its messages here.
    on_call_id: Callable[[str, Call], None] = lambda call_id, call: None
    # Called with the key of each client transaction the call starts (see on_call_id).
    on_key: Callable[[TransactionKey, Call], None] = lambda key, call: None
    keys: list[TransactionKey] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)  # of leg B's attempts and transfers
    # -- what the events and the CDR say about the call
    account_sid: str = ""
    trunk_sid: str = ""
    edge: str = ""
    direction: str = "trunking-terminating"
    from_number: str = ""
    to_number: str = ""
    # -- blind transfer (REFER, RFC 3515) per the trunk's transfer settings
    transfer_mode: str = "disable-all"  # disable-all | enable-all | sip-only
    transfer_caller_id: str = "from-transferee"  # from-transferee | from-transferor
    zone: str = ""
    holds_concurrency: bool = False  # released when the call ends
    # The caller's name (CNAM) for the display names of leg B's From, Contact and
    # P-Asserted-Identity; None: no name.
    b_display_name: str | None = None
    # An on-net call is also an origination call at the called number's trunk (its CDR).
    linked: LinkedCall | None = None
    # Where a 3xx of leg B sends the call (origination: one 302, judged by the service):
    # the next destinations, or the refusal to answer leg A with. None: 3xx is final.
    redirect: Callable[[Response, Destination], Awaitable[list[Destination] | Reject]] | None = None
    # Disaster recovery (origination): when no destination answered, this runs the trunk's
    # TwiML with the call as its CallControl (`dial`, `pause`); None: no recovery.
    recover: Callable[[Call], Awaitable[Ending]] | None = None
    # Which final answers of leg B move the call to the next destination (termination:
    # 408 and 5xx; origination has its own list).
    fails_over: Callable[[int], bool] = field(default=lambda status: _fails_over(status))
    # Destinations (carrier attempts) for a PSTN number, for transfers to numbers.
    route_number: Callable[[str], list[Destination]] = lambda number: []
    # The trunk's recording: started when the call rings ("ringing") or is answered
    # ("answer"), on the call's media session, which redirects and failover keep.
    record_from: str = ""
    _recording: bool = False
    # -- state
    state: CallState = CallState.ROUTING
    a_tag: str = field(default_factory=new_tag)
    a_dialog: Dialog | None = None
    b_request: Request | None = None
    b_key: TransactionKey | None = None
    b_peer: Peer | None = None
    b_dialog: Dialog | None = None
    b_destination: Destination | None = None
    b_got_response: bool = False
    last_failure: Response | None = None
    created: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    final_status: int = 0
    end_reason: str = ""
    ended_by: str = ""
    error_code: int = 0
    status: str = "queued"
    reinvite: _ReInvite | None = None
    _sdp_for_b: bytes = b""
    _b_sdp: bytes = b""  # leg B's last SDP, which a transfer re-offers to the new party
    _a_call_id: str = ""  # leg A's Call-ID, the transfer target's once a transfer completes
    _a_media_tag: str = ""
    transfer: _Transfer | None = None
    _recovery: asyncio.Task[None] | None = None
    _dial: asyncio.Future[DialResult] | None = None
    _challenged_attempt: str = ""
    _b_ack: Request | None = None
    # Every INVITE leg B sent, by transaction key: a late 2xx from an abandoned attempt is
    # acknowledged and hung up with the dialog it creates.
    _attempts: dict[TransactionKey, tuple[Request, Peer]] = field(default_factory=dict)
    # The actor's mailbox: a list and a future made only while the actor waits, instead of
    # an asyncio.Queue (four deques and an Event: ~3.5 KiB per call, measured with
    # tracemalloc while 1,000 calls were up).
    _jobs: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _wakeup: asyncio.Future[None] | None = None
    _task: asyncio.Task[None] | None = None
    _timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _offered: bool = False
    _cancelled: bool = False

    # --- the actor ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"call-{self.sid}")
        self.submit(self._begin)

    def submit(self, job: Callable[[], Awaitable[None]]) -> None:
        if self.state is not CallState.ENDED or job == self._cleanup:
            self._jobs.append(job)
            wakeup = self._wakeup
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

    async def _run(self) -> None:
        while True:
            while not self._jobs:
                self._wakeup = asyncio.get_running_loop().create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
            job = self._jobs.pop(0)
            try:
                await job()
            except Exception:
                log.exception("call handler failed", extra={"call_sid": self.sid})
                await self._fail_everything()
            if self.state is CallState.ENDED and not self._jobs:
                break
        self._cancel_timers()
        self.on_done(self)

    # --- events from the service ----------------------------------------------------------

    @property
    def a_call_id(self) -> str:
        return self._a_call_id or self.a_request.call_id

    @property
    def a_from_tag(self) -> str:
        """The media service's tag for leg A (the transfer target's once it has replaced A)."""
        return self._a_media_tag or self.a_request.from_.tag or ""

    def on_event(
        self, event: RequestReceived | ResponseReceived | TransactionTimeout | TransportError
    ) -> None:
        if self.state is CallState.ENDED and self._task is not None and self._task.done():
            # The call is over but its attempts' Call-IDs still lead here for a while.
            if isinstance(event, ResponseReceived):
                self._stray_response(event.response, event.key)
            elif isinstance(event, RequestReceived) and event.key is not None:
                with contextlib.suppress(TransactionError):
                    self.endpoint.respond(event.key, make_response(event.request, 481))
            return
        if isinstance(event, ResponseReceived):
            self.submit(lambda: self._response(event.response, event.key))
        elif isinstance(event, RequestReceived):
            self.submit(lambda: self._request(event))
        else:
            self.submit(lambda: self._transaction_failed(event))

    # --- leg A ----------------------------------------------------------------------------

    def respond_a(
        self,
        status: int,
        reason: str | None = None,
        *,
        body: bytes = b"",
        code: int = 0,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        response = make_response(
            self.a_request, status, reason, to_tag=self.a_tag if status > 100 else None
        )
        if 100 < status < 300:
            response.headers.add("Contact", self._contact(self.a_source.transport))
            response.headers.add("Allow", ALLOW)
        if code:
            response.headers.add(ERROR_HEADER, str(code))
        for name, value in headers:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        try:
            self.endpoint.respond(self.a_key, response)
        except TransactionError:
            return  # leg A's transaction already ended (CANCEL, transport failure)
        if status > 100:
            secure = self.a_source.transport.upper() == "TLS"
            try:
                dialog = self.dialogs.on_response_sent(
                    self.a_request, response, secure_transport=secure
                )
            except DialogError:
                dialog = None
            if dialog is not None:
                self.a_dialog = dialog

    # --- leg B ----------------------------------------------------------------------------

    async def _begin(self) -> None:
        self.hooks.started(self)
        try:
            offer = await self.media.offer(
                self.sid, self.a_from_tag, self.a_request.body, **self.media_policy
            )
        except MediaRefused as refused:
            self._end_with(refused.reject, by="platform")
            return
        self._offered = True
        self._sdp_for_b = offer
        await self._next_destination()

    async def _next_destination(self) -> None:
        self._cancel_timer("no-response")
        if self._cancelled:
            return
        if not self.destinations:
            if self._dial is not None:
                self._dial_done(_dial_result(self.last_failure))
                return
            if self.recover is not None and self._recovery is None:
                self._recovery = asyncio.get_running_loop().create_task(self._recover())
                return
            failure = self.last_failure
            if failure is not None:
                self._end_with(Reject(failure.status, failure.reason), by="callee")
            else:
                self._end_with(
                    Reject(503, "Service Unavailable: no destination answered", 0),
                    by="platform",
                )
            return
        destination = self.destinations.pop(0)
        self.b_destination = destination
        self.b_got_response = False
        transport = destination.peer.transport.upper()
        headers = Headers()
        headers.add("Via", self.endpoint.via(transport))
        max_forwards = self.a_request.max_forwards
        headers.add("Max-Forwards", str((max_forwards if max_forwards is not None else 70) - 1))
        display = _display_name(self.b_display_name)
        headers.add("From", f"{display}<{self.b_from}>;tag={new_tag()}")
        headers.add("To", f"<{_strip_params(destination.request_uri)}>")
        headers.add("Call-ID", f"{new_tag()}{new_tag()}")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", display + self._contact(transport))
        if display:
            headers.add("P-Asserted-Identity", f"{display}<{self.b_from}>")
        headers.add("Allow", ALLOW)
        for name, value in (*self.b_headers, *destination.headers):
            headers.add(name, value)
        headers.add("Content-Type", "application/sdp")
        request = Request("INVITE", destination.request_uri, headers, self._sdp_for_b)
        self.b_request = request
        self.b_peer = destination.peer
        self.b_dialog = None
        self.on_call_id(request.call_id, self)
        try:
            self.b_key = self._start_transaction(request, destination.peer)
            self._attempts[self.b_key] = (request, destination.peer)
        except Exception as error:  # an unroutable transport, a refused connection
            log.warning(
                "carrier unreachable",
                extra={"call_sid": self.sid, "gateway": destination.name, "error": str(error)},
            )
            await self._next_destination()
            return
        self._timer("no-response", destination.no_response_timeout, self._no_response)

    async def _no_response(self) -> None:
        if self.state is not CallState.ROUTING or self.b_got_response:
            return
        log.info("carrier gateway silent; trying the next", extra={"call_sid": self.sid})
        self.b_key = None  # its transaction times out on its own; its responses are ignored
        await self._next_destination()

    async def _response(self, response: Response, key: TransactionKey | None) -> None:
        method = response.cseq.method
        transfer = self.transfer
        if transfer is not None and response.call_id == transfer.request.call_id:
            if method == "INVITE":
                await self._transfer_response(response, key)
            return
        if method == "INVITE" and self.b_request is not None and self._is_attempt(response):
            if self.reinvite is not None and self.reinvite.to_b and key == self.reinvite.client_key:
                await self._reinvite_response(response)
                return
            await self._b_invite_response(response, key)
        elif method == "INVITE" and self.reinvite is not None and key == self.reinvite.client_key:
            await self._reinvite_response(response)
        # Responses to BYE, NOTIFY, the CANCEL: nothing more to do.

    async def _b_invite_response(self, response: Response, key: TransactionKey | None) -> None:
        status = response.status
        if key != self.b_key and (key is not None or response.call_id != self._b_call_id):
            self._stray_response(response, key)
            return
        if key is None and 200 <= status < 300:
            # A 2xx retransmission (18.1.2: after the transaction ended): ACK it again.
            if self.b_dialog is not None and self._b_ack is not None and self.b_peer is not None:
                self.endpoint.send_stateless(
                    self._b_ack, self._dialog_peer(self.b_dialog, self.b_peer)
                )
            return
        self.b_got_response = True
        if status == 100:
            return
        assert self.b_request is not None
        dialog = self.dialogs.on_response(
            self.b_request,
            response,
            secure_transport=self.b_peer is not None and self.b_peer.transport == "TLS",
        )
        if status < 200:
            self._cancel_timer("no-response")
            if self.state is CallState.ROUTING:
                self.state = CallState.EARLY
                self.status = "ringing"
                self.hooks.ringing(self)
            early = b""
            if response.body and status == 183:
                answered = await self._answer_from_b(response)
                if answered is None:
                    return
                early = answered
            if self._cancelled:
                return
            self.respond_a(status, response.reason, body=early)
            if self.record_from == "ringing":
                await self._start_recording()
            return
        if status < 300:
            self._cancel_timer("no-response")
            if dialog is not None:
                self.b_dialog = dialog
            self._ack_b()
            if self._cancelled or self.state is CallState.ENDED:
                self._bye_b()
                return
            final = await self._answer_from_b(response) if response.body else None
            if final is None:
                if not self.ended:
                    self._bye_b()
                    self._end_with(
                        Reject(
                            488,
                            "Not Acceptable Here: the far end's answer has no usable SDP",
                            32102,
                        ),
                        by="platform",
                    )
                return
            self.respond_a(200, "OK", body=final)
            self.state = CallState.ANSWERED
            self.status = "in-progress"
            self.answered_at = time.time()
            self.hooks.answered(self)
            self._timer("max-duration", self.max_duration, self._max_duration)
            if self.record_from:
                await self._start_recording()
            return
        # A final failure of this attempt.
        self._cancel_timer("no-response")
        if status in (401, 407) and not self._cancelled and self._answer_challenge(response):
            return
        if (
            status == 302
            and self.redirect is not None
            and self.b_destination is not None
            and not self._cancelled
        ):
            followed = await self.redirect(response, self.b_destination)
            if isinstance(followed, Reject):
                self._end_with(followed, by="platform")
                return
            self.destinations[:0] = followed  # the redirect target first, then the rest
            await self._next_destination()
            return
        self.last_failure = response
        if self._cancelled:
            return
        if self.fails_over(status) and self.destinations:
            await self._next_destination()
            return
        if self._dial is not None:  # a disaster-recovery <Dial>: its TwiML decides what next
            self.destinations = []
            self._dial_done(_dial_result(response))
            return
        if self.fails_over(status) and self.recover is not None and self._recovery is None:
            await self._next_destination()  # every destination failed: disaster recovery
            return
        self._end_with(Reject(status, response.reason), by="callee")

    def _answer_challenge(self, response: Response) -> bool:
        """Re-send leg B's INVITE with credentials for a 401/407 (RFC 3261 22.2), once per
        attempt; False when there is nothing to answer with."""
        destination = self.b_destination
        request = self.b_request
        if destination is None or request is None or destination.credentials is None:
            return False
        if self._challenged_attempt == request.call_id:
            return False  # a second challenge for the same attempt: the credentials are wrong
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        reply = "Authorization" if response.status == 401 else "Proxy-Authorization"
        client = DigestClient(*destination.credentials)
        challenges = []
        for value in response.headers.get_all(header):
            try:
                challenges.append(parse_challenge(value))
            except DigestError:
                continue
        usable = next((c for c in challenges if client.usable(c)), None)
        if usable is None:
            return False
        headers = request.headers.copy()
        headers.replace_first("Via", self.endpoint.via(destination.peer.transport))
        headers.set("CSeq", f"{request.cseq.number + 1} INVITE")
        headers.remove(reply)
        headers.add(reply, client.answer(usable, method="INVITE", uri=request.uri))
        retry = Request("INVITE", request.uri, headers, request.body)
        self._challenged_attempt = request.call_id
        self.b_request = retry
        self.b_got_response = False
        try:
            self.b_key = self._start_transaction(retry, destination.peer)
        except Exception:
            return False
        self._attempts[self.b_key] = (retry, destination.peer)
        self._timer("no-response", destination.no_response_timeout, self._no_response)
        return True

    async def _start_recording(self) -> None:
        """Start the trunk's recording once; a media service that cannot record leaves the
        call unrecorded rather than failing it (logged, as Twilio reports it apart)."""
        if self._recording:
            return
        self._recording = True
        try:
            await self.media.start_recording(self.sid)
        except MediaRefused as refused:
            log.warning(
                "call not recorded",
                extra={"call_sid": self.sid, "reason": refused.reject.reason},
            )

    async def _answer_from_b(self, response: Response) -> bytes | None:
        self._b_sdp = response.body
        try:
            return await self.media.answer(
                self.sid, self.a_from_tag, response.to.tag or "", response.body
            )
        except MediaRefused as refused:
            log.warning(
                "far end's SDP refused",
                extra={"call_sid": self.sid, "reason": refused.reject.reason},
            )
            return None

    def _ack_b(self) -> None:
        if self.b_dialog is None or self.b_request is None or self.b_peer is None:
            return
        transport = self.b_peer.transport
        self._b_ack = self.b_dialog.create_ack(self.b_request, via=self.endpoint.via(transport))
        self.endpoint.send_stateless(self._b_ack, self._dialog_peer(self.b_dialog, self.b_peer))

    @property
    def _b_call_id(self) -> str:
        return self.b_request.call_id if self.b_request is not None else ""

    def _is_attempt(self, response: Response) -> bool:
        call_id = response.call_id
        return any(request.call_id == call_id for request, _ in self._attempts.values())

    def _stray_response(self, response: Response, key: TransactionKey | None) -> None:
        """A response to an INVITE of an attempt given up on (failover, or the call ended):
        a ringing one is cancelled (RFC 3261 9.1), an answer acknowledged and hung up."""
        if response.cseq.method != "INVITE":
            return
        status = response.status
        if 100 < status < 200 and key is not None and key in self._attempts:
            with contextlib.suppress(TransactionError):
                self.endpoint.cancel(key)
        elif 200 <= status < 300:
            self._ack_and_bye_stray(key, response)

    def _ack_and_bye_stray(self, key: TransactionKey | None, response: Response) -> None:
        attempt = self._attempts.get(key) if key is not None else None
        if attempt is None:
            # A 2xx after its transaction ended (RFC 6026): find the attempt by Call-ID.
            call_id = response.call_id
            attempt = next((a for a in self._attempts.values() if a[0].call_id == call_id), None)
        if attempt is None:
            return
        request, peer = attempt
        try:
            dialog = Dialog.from_uac(request, response)
        except DialogError:
            return
        log.info("2xx from an abandoned attempt; hanging it up", extra={"call_sid": self.sid})
        via = self.endpoint.via(peer.transport)
        target = self._dialog_peer(dialog, peer)
        self.endpoint.send_stateless(dialog.create_ack(request, via=via), target)
        self._send_request(
            dialog.create_request("BYE", via=self.endpoint.via(peer.transport)), target
        )

    def _bye_b(self) -> None:
        if self.b_dialog is None or self.b_peer is None or self.b_dialog.terminated:
            return
        bye = self.b_dialog.create_request("BYE", via=self.endpoint.via(self.b_peer.transport))
        self._send_request(bye, self._dialog_peer(self.b_dialog, self.b_peer))

    def _bye_a(self) -> None:
        if self.a_dialog is None or self.a_dialog.terminated:
            return
        bye = self.a_dialog.create_request("BYE", via=self.endpoint.via(self.a_source.transport))
        self._send_request(bye, self.a_source)

    def _start_transaction(self, request: Request, peer: Peer) -> TransactionKey:
        """Send a request of this call; the service learns its key, so that a timeout or a
        transport error of that transaction comes back here."""
        key = self.endpoint.send_request(request, peer)
        self.keys.append(key)
        self.on_key(key, self)
        return key

    def _send_request(self, request: Request, peer: Peer) -> TransactionKey | None:
        try:
            return self._start_transaction(request, peer)
        except Exception as error:
            log.warning(
                "request not sent",
                extra={"call_sid": self.sid, "method": request.method, "error": str(error)},
            )
            return None

    # --- requests inside the call ---------------------------------------------------------

    async def _request(self, event: RequestReceived) -> None:
        request = event.request
        method = request.method
        from_a = request.call_id == self.a_call_id
        if method == "CANCEL":
            await self._cancel(event)
            return
        if method == "ACK":
            self.dialogs.on_request(request)
            return
        _dialog, refusal = self.dialogs.on_request(request)
        if event.key is None:
            return
        if refusal is not None:
            self.endpoint.respond(event.key, refusal)
            return
        if method == "BYE":
            self.endpoint.respond(event.key, make_response(request, 200))
            if from_a:
                self._bye_b()
                self._end(200, "caller hung up", by="caller")
            else:
                self._bye_a()
                self._end(200, "callee hung up", by="callee")
        elif method == "INVITE":
            await self._reinvite(event, from_a)
        elif method == "REFER":
            await self._refer(event, from_a)
        elif method in ("OPTIONS", "UPDATE", "INFO", "NOTIFY"):
            # In-dialog keep-alives and mid-call signals are answered here, not relayed.
            response = make_response(request, 200)
            response.headers.add("Allow", ALLOW)
            self.endpoint.respond(event.key, response)
        else:
            response = make_response(request, 405)
            response.headers.add("Allow", ALLOW)
            self.endpoint.respond(event.key, response)

    async def _cancel(self, event: RequestReceived) -> None:
        if event.key is None:
            return
        self.endpoint.answer_cancel(event.key)  # 200 to the CANCEL, 487 to the INVITE
        if self.state in (CallState.ROUTING, CallState.EARLY):
            self._cancelled = True
            if self.b_key is not None:
                with contextlib.suppress(TransactionError):
                    self.endpoint.cancel(self.b_key)
            self.final_status = 487
            self._end(487, "caller cancelled", by="caller", status="canceled")

    # --- re-INVITE (hold, resume, new media) ---------------------------------------------------

    async def _reinvite(self, event: RequestReceived, from_a: bool) -> None:
        request = event.request
        assert event.key is not None
        if self.state is not CallState.ANSWERED or self.reinvite is not None:
            # RFC 3261 14.2: 491 while an INVITE is in progress.
            self.endpoint.respond(event.key, make_response(request, 491))
            return
        sender_tag = request.from_.tag or ""
        target = self.b_dialog if from_a else self.a_dialog
        peer = (
            self._dialog_peer(self.b_dialog, self.b_peer)
            if from_a and self.b_dialog and self.b_peer
            else self.a_source
        )
        if target is None:
            self.endpoint.respond(event.key, make_response(request, 481))
            return
        body = b""
        if request.body:
            media_tag = self.a_from_tag if from_a else self._b_media_tag()
            try:
                body = await self.media.offer(self.sid, media_tag, request.body)
            except MediaRefused as refused:
                response = make_response(request, 488, refused.reject.reason)
                self.endpoint.respond(event.key, response)
                return
        transport = peer.transport
        extra = [("Content-Type", "application/sdp")] if body else []
        try:
            out = target.create_request(
                "INVITE", via=self.endpoint.via(transport), body=body, headers=extra
            )
        except DialogError:
            self.endpoint.respond(event.key, make_response(request, 491))
            return
        client_key = self._send_request(out, peer)
        self.reinvite = _ReInvite(
            request, event.key, out, client_key, to_b=from_a, sender_tag=sender_tag, peer=peer
        )

    def _b_media_tag(self) -> str:
        return self.b_dialog.remote_tag if self.b_dialog is not None else ""

    async def _reinvite_response(self, response: Response) -> None:
        pending = self.reinvite
        assert pending is not None
        status = response.status
        target = self.b_dialog if pending.to_b else self.a_dialog
        if target is not None:
            target.receive_response(response)
        if status < 200:
            return
        self.reinvite = None
        if status < 300 and target is not None:
            ack = target.create_ack(pending.sent, via=self.endpoint.via(pending.peer.transport))
            self.endpoint.send_stateless(ack, pending.peer)
        reply = make_response(pending.received, status, response.reason)
        if status < 300:
            reply.headers.add("Contact", self._contact(self._leg_transport(not pending.to_b)))
            if response.body:
                if pending.to_b:
                    answer = await self.media.answer(
                        self.sid, self.a_from_tag, self._b_media_tag(), response.body
                    )
                else:
                    answer = await self.media.answer(
                        self.sid, self._b_media_tag(), self.a_from_tag, response.body
                    )
                reply.headers.add("Content-Type", "application/sdp")
                reply.body = answer
        try:
            self.endpoint.respond(pending.server_key, reply)
        except TransactionError:
            return
        origin = self.a_dialog if pending.to_b else self.b_dialog
        if origin is not None:
            with contextlib.suppress(DialogError):
                origin.response_sent(reply)

    def _leg_transport(self, leg_a: bool) -> str:
        if leg_a:
            return self.a_source.transport
        return self.b_peer.transport if self.b_peer is not None else "UDP"

    # --- blind transfer (REFER, RFC 3515; NOTIFY with message/sipfrag, RFC 3420) ----------

    async def _refer(self, event: RequestReceived, from_a: bool) -> None:
        request = event.request
        assert event.key is not None
        reject = self._refer_refusal(request, from_a)
        if reject is not None:
            response = make_response(request, reject.status, reject.reason)
            if reject.code:
                response.headers.add(ERROR_HEADER, str(reject.code))
            self.endpoint.respond(event.key, response)
            return
        target = _refer_target(request)
        assert target is not None
        destinations = self._transfer_destinations(target)
        if not destinations:
            self.endpoint.respond(
                event.key,
                make_response(request, 403, "Forbidden: no route to the transfer target"),
            )
            return
        self.endpoint.respond(event.key, make_response(request, 202, "Accepted"))
        self._notify_a("SIP/2.0 100 Trying", terminated=False)
        try:
            offer = await self.media.offer(self.sid, self._b_media_tag(), self._b_sdp)
        except MediaRefused as refused:
            self._notify_a(f"SIP/2.0 {refused.reject.status} Media refused", terminated=True)
            return
        caller = (
            self.to_number if self.transfer_caller_id == "from-transferee" else self.from_number
        )
        self.transfer = _Transfer(destinations, target, caller, offer)
        self._transfer_next()

    def _refer_refusal(self, request: Request, from_a: bool) -> Reject | None:
        if self.state is not CallState.ANSWERED or self.transfer is not None:
            return Reject(491, "Request Pending: the call cannot be transferred now")
        if not from_a:
            return Reject(403, "Forbidden: only the trunk's side may transfer", 32218)
        if self.transfer_mode == "disable-all":
            return Reject(403, "Forbidden: call transfer is disabled on this trunk", 32218)
        target = _refer_target(request)
        if target is None:
            return Reject(400, "Bad Request: missing or unusable Refer-To")
        if target.scheme not in ("sip", "sips", "tel"):
            return Reject(403, "Forbidden: Refer-To must be a SIP or tel URI", 32218)
        pstn = self._is_pstn(target)
        if self.transfer_mode == "sip-only" and pstn:
            return Reject(403, "Forbidden: this trunk transfers to SIP URIs only", 32218)
        return None

    def _is_pstn(self, target: SipUri) -> bool:
        if target.scheme == "tel":
            return True
        host = target.host.lower().rstrip(".")
        zone = self.zone.lower()
        return bool(zone) and (host == zone or host.endswith("." + zone))

    def _transfer_destinations(self, target: SipUri) -> list[Destination]:
        if self._is_pstn(target):
            number = target.user or ""
            return self.route_number(number) if number.startswith("+") else []
        transport = str(target.params.get("transport") or "udp").upper()
        if target.scheme == "sips":
            transport = "TLS"
        port = target.port or (5061 if transport == "TLS" else 5060)
        uri = dataclasses.replace(target, headers={})
        return [Destination(Peer(transport, target.host, port), str(uri), name="refer-to")]

    def _transfer_next(self) -> None:
        transfer = self.transfer
        assert transfer is not None
        if not transfer.destinations:
            status = transfer.last_status or 503
            self._notify_a(
                f"SIP/2.0 {status} {transfer.last_reason or 'Transfer failed'}", terminated=True
            )
            self.transfer = None
            return
        destination = transfer.destinations.pop(0)
        transport = destination.peer.transport.upper()
        headers = Headers()
        headers.add("Via", self.endpoint.via(transport))
        headers.add("Max-Forwards", "70")
        headers.add(
            "From", f"<sip:{transfer.caller}@{self.zone or 'trunkline.invalid'}>;tag={new_tag()}"
        )
        headers.add("To", f"<{_strip_params(destination.request_uri)}>")
        headers.add("Call-ID", f"{new_tag()}{new_tag()}")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._contact(transport))
        headers.add("Allow", ALLOW)
        headers.add("Content-Type", "application/sdp")
        request = Request("INVITE", destination.request_uri, headers, transfer.offer)
        transfer.request = request
        transfer.peer = destination.peer
        self.on_call_id(request.call_id, self)
        try:
            transfer.key = self._start_transaction(request, destination.peer)
        except Exception:
            transfer.last_status, transfer.last_reason = 503, "Transfer target unreachable"
            self._transfer_next()

    async def _transfer_response(self, response: Response, key: TransactionKey | None) -> None:
        transfer = self.transfer
        assert transfer is not None
        status = response.status
        if key is None or key != transfer.key:
            return
        if status < 200:
            if status in (180, 183):
                self._notify_a(f"SIP/2.0 {status} {response.reason}", terminated=False)
            return
        if status >= 300:
            transfer.last_status, transfer.last_reason = status, response.reason
            if _fails_over(status) and transfer.destinations:
                self._transfer_next()
                return
            self._notify_a(f"SIP/2.0 {status} {response.reason}", terminated=True)
            self.transfer = None
            return
        # The target answered: it replaces leg A (RFC 5589 blind transfer).
        dialog = self.dialogs.on_response(transfer.request, response)
        if dialog is None:
            return
        assert transfer.peer is not None
        ack = dialog.create_ack(transfer.request, via=self.endpoint.via(transfer.peer.transport))
        peer = self._dialog_peer(dialog, transfer.peer)
        self.endpoint.send_stateless(ack, peer)
        try:
            await self.media.answer(
                self.sid, self._b_media_tag(), response.to.tag or "", response.body
            )
        except MediaRefused:
            bye = dialog.create_request("BYE", via=self.endpoint.via(peer.transport))
            self._send_request(bye, peer)
            self._notify_a("SIP/2.0 488 Not Acceptable Here", terminated=True)
            self.transfer = None
            return
        self._notify_a("SIP/2.0 200 OK", terminated=True)
        self._bye_a()
        # From now on the transfer target is leg A of this call.
        self.a_dialog = dialog
        self.a_source = peer
        self._a_call_id = transfer.request.call_id
        self._a_media_tag = response.to.tag or ""
        self.transfer = None

    def _notify_a(self, sipfrag: str, *, terminated: bool) -> None:
        if self.a_dialog is None or self.a_dialog.terminated:
            return
        state = "terminated;reason=noresource" if terminated else "active;expires=60"
        notify = self.a_dialog.create_request(
            "NOTIFY",
            via=self.endpoint.via(self.a_source.transport),
            body=(sipfrag + "\r\n").encode(),
            headers=[
                ("Event", "refer"),
                ("Subscription-State", state),
                ("Content-Type", "message/sipfrag;version=2.0"),
            ],
        )
        self._send_request(notify, self.a_source)

    # --- disaster recovery (CallControl of disaster_recovery.run_disaster_recovery) --------

    async def _recover(self) -> None:
        assert self.recover is not None
        try:
            ending = await self.recover(self)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("disaster recovery failed", extra={"call_sid": self.sid})
            ending = Ending(
                EndKind.FAILED, 502, "Bad Gateway: disaster recovery failed", DrStatus.FAILED, 32011
            )

        async def finish() -> None:
            if not ending.answered and self.state is not CallState.ANSWERED:
                self.error_code = ending.code
                self._end_with(Reject(ending.sip_status, ending.reason, ending.code), by="platform")

        self.submit(finish)

    async def dial(
        self, targets: Sequence[DialTarget], timeout: int, caller_id: str | None
    ) -> DialResult:
        """A `<Dial>` of the recovery TwiML: leg B tries the targets in turn (a number through
        the carriers, a SIP URI directly) until one answers or `timeout` seconds pass."""
        destinations: list[Destination] = []
        for target in targets:
            if isinstance(target, DrNumber):
                destinations += self.route_number(target.number)
            else:
                uri = parse_uri(target.uri)
                destinations += self._transfer_destinations(uri)
        if not destinations:
            return DialResult(DialStatus.FAILED)
        if caller_id:
            self.b_from = f"sip:{caller_id}@{self.zone or 'trunkline.invalid'}"
        future: asyncio.Future[DialResult] = asyncio.get_running_loop().create_future()

        async def start() -> None:
            self._dial = future
            self.destinations = destinations
            self.last_failure = None
            self._timer("dial-timeout", float(timeout), self._dial_timeout)
            await self._next_destination()

        self.submit(start)
        return await future

    async def pause(self, seconds: int) -> None:
        await asyncio.sleep(seconds)

    async def _dial_timeout(self) -> None:
        if self._dial is None or self.state is CallState.ANSWERED:
            return
        self.destinations = []
        if self.b_key is not None:
            with contextlib.suppress(TransactionError):
                self.endpoint.cancel(self.b_key)
        self._dial_done(DialResult(DialStatus.NO_ANSWER))

    def _dial_done(self, result: DialResult) -> None:
        future, self._dial = self._dial, None
        self._cancel_timer("dial-timeout")
        if future is not None and not future.done():
            future.set_result(result)

    # --- failures and timers -----------------------------------------------------------

    async def _transaction_failed(self, event: TransactionTimeout | TransportError) -> None:
        key = event.key
        if isinstance(event, TransportError):
            # A refused connection or a failed TLS handshake: say so, or nobody learns why.
            log.warning(
                "SIP transport failed",
                extra={"call_sid": self.sid, "method": key.method, "reason": event.reason},
            )
        if (
            key == self.b_key
            and key.method == "INVITE"
            and self.state in (CallState.ROUTING, CallState.EARLY)
        ):
            if event.response is not None:
                await self._b_invite_response(event.response, key)
            return
        if (
            self.reinvite is not None
            and key == self.reinvite.client_key
            and event.response is not None
        ):
            await self._reinvite_response(event.response)
            return
        if (
            key == self.a_key
            and isinstance(event, TransactionTimeout)
            and self.state is CallState.ANSWERED
        ):
            # Timer L: leg A never acknowledged our 200 (RFC 3261 13.3.1.4): end the call.
            self._bye_a()
            self._bye_b()
            self._end(408, "no ACK from the caller", by="platform")

    async def _max_duration(self) -> None:
        if self.state is CallState.ANSWERED:
            self._bye_a()
            self._bye_b()
            self._end(200, "maximum call duration reached", by="platform")

    def media_timeout(self) -> None:
        async def job() -> None:
            if self.state is CallState.ANSWERED:
                self._bye_a()
                self._bye_b()
                self._end(200, "media timeout: no RTP", by="platform")

        self.submit(job)

    def _timer(self, name: str, delay: float, job: Callable[[], Awaitable[None]]) -> None:
        self._cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self.submit, job)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _cancel_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # --- ending ---------------------------------------------------------------------------

    def _end_with(self, reject: Reject, *, by: str) -> None:
        """End a call that was never answered, answering leg A with the refusal."""
        if self.state is CallState.ANSWERED:
            return
        self.respond_a(reject.status, reject.reason, code=reject.code)
        self.error_code = reject.code
        status = _END_STATUS.get(reject.status, "failed" if reject.status >= 400 else "completed")
        self._end(reject.status, reject.reason, by=by, status=status)

    def _end(self, sip_status: int, reason: str, *, by: str, status: str | None = None) -> None:
        if self.state is CallState.ENDED:
            return
        if self._dial is not None:
            answered = self.answered_at is not None
            self._dial_done(
                DialResult(
                    DialStatus.COMPLETED if answered else DialStatus.CANCELED,
                    duration=self.duration,
                    sip_status=sip_status,
                    caller_hung_up=by == "caller",
                )
            )
        if self._recovery is not None and not self._recovery.done() and self._dial is None:
            self._recovery.cancel()  # the caller hung up during a fetch or a pause
        self.state = CallState.ENDED
        self.final_status = sip_status
        self.end_reason = reason
        self.ended_by = by
        self.ended_at = time.time()
        if status is not None:
            self.status = status
        elif self.answered_at is not None:
            self.status = "completed"
        self._cancel_timers()
        self.submit(self._cleanup)

    async def _cleanup(self) -> None:
        if self._offered:
            try:
                await self.media.delete(self.sid)
            except Exception:  # the relay frees the ports on its own media timeout
                log.warning("media delete failed", extra={"call_sid": self.sid})
        self.hooks.ended(self)

    async def _fail_everything(self) -> None:
        if self.state is CallState.ENDED:
            return
        if self.state is CallState.ANSWERED:
            self._bye_a()
            self._bye_b()
            self._end(500, "internal error", by="platform")
        else:
            if self.b_key is not None:
                with contextlib.suppress(TransactionError):
                    self.endpoint.cancel(self.b_key)
            self._end_with(Reject(500, "Server Internal Error"), by="platform")

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def duration(self) -> int:
        if self.answered_at is None:
            return 0
        end = self.ended_at or time.time()
        return max(0, round(end - self.answered_at))

    # --- addresses ------------------------------------------------------------------------

    def _contact(self, transport: str) -> str:
        host, port = self.endpoint.local_address(transport)
        host = f"[{host}]" if ":" in host else host
        suffix = "" if transport.upper() == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{self.sid}@{host}:{port}{suffix}>"

    @staticmethod
    def _dialog_peer(dialog: Dialog, fallback: Peer) -> Peer:
        """Where in-dialog requests of leg B go: the first route or the remote target."""
        target = dialog.route_set[0] if dialog.route_set else dialog.remote_target
        try:
            uri = parse_uri(target)
        except ValueError:
            return fallback
        transport = str(uri.params.get("transport") or fallback.transport).upper()
        port = uri.port or (5061 if transport == "TLS" else 5060)
        return Peer(transport, uri.host, port)


@dataclass
class _Transfer:
    destinations: list[Destination]
    target: SipUri
    caller: str
    offer: bytes
    request: Request = field(default=None)  # type: ignore[assignment]
    key: TransactionKey | None = None
    peer: Peer | None = None
    last_status: int = 0
    last_reason: str = ""


def _refer_target(request: Request) -> SipUri | None:
    value = request.headers.get("Refer-To")
    if not value:
        return None
    try:
        return NameAddr.parse(value).uri
    except ValueError:
        return None


@dataclass
class _ReInvite:
    received: Request
    server_key: TransactionKey
    sent: Request
    client_key: TransactionKey | None
    to_b: bool
    sender_tag: str
    peer: Peer


def _fails_over(status: int) -> bool:
    # Termination: the next gateway on 408 or any 5xx; every other final answer is relayed.
    return status == 408 or 500 <= status < 600


def _dial_result(failure: Response | None) -> DialResult:
    """How a `<Dial>` ended when no destination answered (Twilio's DialCallStatus)."""
    if failure is None:
        return DialResult(DialStatus.NO_ANSWER)
    status = failure.status
    if status in (486, 600):
        return DialResult(DialStatus.BUSY, sip_status=status)
    if status in (408, 480, 487):
        return DialResult(DialStatus.NO_ANSWER, sip_status=status)
    return DialResult(DialStatus.FAILED, sip_status=status)


def _display_name(name: str | None) -> str:
    """A quoted display name and its space, or nothing (RFC 3261 25.1 quoted-string)."""
    if not name:
        return ""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" '


def _strip_params(uri: str) -> str:
    return uri.split(";", 1)[0]


def copyable_headers(request: Request, names: Sequence[str]) -> list[tuple[str, str]]:
    """Headers of leg A's INVITE that leg B carries (only those named, never leg headers)."""
    wanted = {n.lower() for n in names} - _LEG_HEADERS
    return [(name, value) for name, value in request.headers if name.lower() in wanted]
