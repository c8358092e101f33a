"""The signaling service: SIP in, calls out. Admission, the termination rules, dispatch.

Every new INVITE goes through the termination rules in the order the product applies
them (ARCHITECTURE.md, "A termination call"): Max-Forwards, the trunk by Request-URI host
(an unknown host gets no answer at all), the secure-trunk transport, authentication by the
auth service, the E.164 destination, the caller ID, the trunk's call limits; then the
media service anchors the audio and the call (b2bua.Call) routes it to the carriers. Each
refusal answers with its SIP status, a reason phrase that says what is wrong and the
Twilio error code in X-Trunkline-Error-Code, and is counted.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from trunkline.domain import claims
from trunkline.domain.model import (
    Account,
    AccountStatus,
    OriginationUrl,
    OutgoingCallerId,
    PhoneNumber,
    Trunk,
)
from trunkline.domain.numbers import is_nanp
from trunkline.domain.sid import new_sid
from trunkline.signaling import identity, origination
from trunkline.signaling.b2bua import (
    ERROR_HEADER,
    Call,
    CallHooks,
    Destination,
    LinkedCall,
    Media,
    Reject,
    copyable_headers,
)
from trunkline.signaling.carriers import Gateway, attempt_order
from trunkline.signaling.disaster_recovery import (
    CallParameters,
    Ending,
    HttpFetcher,
    run_disaster_recovery,
)
from trunkline.signaling.limits import ConcurrencyLimit, CpsLimiter, PingGuard
from trunkline.signaling.resolver import ResolutionError, Resolver
from trunkline.signaling.sip.dialog import DialogLayer
from trunkline.signaling.sip.message import (
    REASON_PHRASES,
    Request,
    Response,
    make_response,
    new_tag,
)
from trunkline.signaling.sip.transaction import (
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionKey,
    TransactionTimeout,
    TransportError,
)
from trunkline.signaling.sip.transport import Endpoint
from trunkline.signaling.verdicts import ReusedVerdicts
from trunkline.store.cache import ConfigCache
from trunkline.v1 import auth_pb2, media_pb2

__all__ = ["Signaling", "SignalingConfig"]

log = logging.getLogger("trunkline.signaling")

REJECTIONS = Counter(
    "trunkline_signaling_rejections",
    "Requests the signaling service refused, by SIP status and Twilio error code",
    ["sip_status", "error_code"],
)
UNANSWERED = Counter(
    "trunkline_signaling_unanswered",
    "Requests dropped without an answer, by why (unknown host, locked-out source, ping flood)",
    ["why"],
)
ACTIVE_CALLS = Gauge("trunkline_signaling_active_calls", "Calls in progress")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY"
DR_ALLOW_PRIVATE = "TRUNKLINE_DR_ALLOW_PRIVATE"
_LINGER = 32.0  # seconds an ended call still takes its attempts' late responses
# Carried from the PBX's INVITE to the carrier (never the leg's own headers).
_PASSED_HEADERS = ("P-Asserted-Identity", "Remote-Party-ID", "Privacy", "User-Agent")


@dataclass
class SignalingConfig:
    zone: str = "trunkline.local"
    edge: str = "local"
    min_max_forwards: int = 20
    max_call_duration: float = 86400.0
    default_cps: float = 1.0
    default_concurrent_calls: int = 0  # 0: unlimited
    lockout_memory: float = 30.0  # seconds a source auth said to ignore stays ignored here
    gateways: Sequence[Gateway] = ()
    rng: random.Random = field(default_factory=random.Random)


class Hooks(CallHooks):
    """Logs the lifecycle; the events publisher extends this."""

    def started(self, call: Call) -> None:
        log.info("call started", extra={"call_sid": call.sid, "sip_call_id": call.a_call_id})

    def ringing(self, call: Call) -> None:
        log.info("call ringing", extra={"call_sid": call.sid})

    def answered(self, call: Call) -> None:
        log.info("call answered", extra={"call_sid": call.sid})

    def ended(self, call: Call) -> None:
        log.info(
            "call ended",
            extra={
                "call_sid": call.sid,
                "status": call.status,
                "sip_status": call.final_status,
                "reason": call.end_reason,
                "duration": call.duration,
            },
        )


class Signaling:
    def __init__(
        self,
        endpoint: Endpoint,
        config: SignalingConfig,
        cache: ConfigCache,
        auth: AuthApi,
        media: Media,
        hooks: CallHooks | None = None,
        new_sid: Callable[[], str] | None = None,
        resolver: Resolver | None = None,
        cnam: CnamApi | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.cache = cache
        self.auth = auth
        self.media = media
        self.hooks = hooks or Hooks()
        self.dialogs = DialogLayer()
        self.calls: dict[str, Call] = {}  # by the Call-ID of either leg
        self.by_sid: dict[str, Call] = {}
        self.by_key: dict[TransactionKey, Call] = {}  # every transaction of every call
        # Per trunk and edge; each pod of an edge holds its own share of the rate.
        self.cps: CpsLimiter[tuple[str, str]] = CpsLimiter(default_rate=config.default_cps)
        self.concurrent: ConcurrencyLimit[str] = ConcurrencyLimit()
        self.pings: PingGuard[str] = PingGuard()
        self._ignored: dict[str, float] = {}  # source IP -> until (auth said IGNORE)
        self.verdicts = ReusedVerdicts(cache)
        self._pending: set[asyncio.Task[None]] = set()
        self._new_sid = new_sid or _call_sid
        self._carrier_hosts = frozenset(gateway.host for gateway in config.gateways)
        self._carrier_sources = frozenset((g.host, g.port) for g in config.gateways)
        self.resolver = resolver or Resolver.from_env()
        self.cnam = cnam
        # Disaster-recovery TwiML comes from customers' servers: private and loopback
        # addresses are refused unless TRUNKLINE_DR_ALLOW_PRIVATE=1 (a lab, the tests).
        self.fetcher = HttpFetcher(allow_private=os.environ.get(DR_ALLOW_PRIVATE) == "1")
        endpoint.on_event = self.handle
        endpoint.admit = self.admit

    # --- admission (before any transaction exists) ---------------------------------------

    def admit(self, message: Request | Response, source: Peer) -> bool:
        if not isinstance(message, Request):
            return True
        until = self._ignored.get(source.host)
        if until is not None:
            if until > self.endpoint.loop.time():
                UNANSWERED.labels("locked-out").inc()
                return False
            del self._ignored[source.host]
        try:
            in_dialog = bool(message.to.tag)
        except ValueError:
            return True  # the transaction layer answers what it can (400)
        if in_dialog or message.method in ("ACK", "CANCEL"):
            return True
        try:
            host = message.parsed_uri.host
        except ValueError:
            return True
        if identity.trunk_domain(host, self.config.zone) is None and not self.is_carrier(source):
            # Not one of our trunk domains: no answer at all, as on the original platform.
            UNANSWERED.labels("unknown-host").inc()
            return False
        return True

    # --- dispatch -------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, ResponseReceived):
            call = self.calls.get(_call_id(event.response))
            if call is not None:
                call.on_event(event)
        elif isinstance(event, TransactionTimeout | TransportError):
            call = self._call_for_key(event.key)
            if call is not None:
                call.on_event(event)

    def _call_for_key(self, key: TransactionKey) -> Call | None:
        return self.by_key.get(key)

    def _request(self, event: RequestReceived) -> None:
        request = event.request
        call = self.calls.get(_call_id(request))
        if call is not None and (request.method != "INVITE" or request.to.tag):
            call.on_event(event)
            return
        if event.key is None:
            return  # a stray ACK
        if request.method == "INVITE" and not request.to.tag:
            # A trunk domain in the Request-URI is a PBX's termination call; anything else
            # admitted here came from a carrier gateway: an origination call.
            if identity.trunk_domain(request.parsed_uri.host, self.config.zone) is not None:
                self._spawn(self._invite(event, self._admit_call))
            else:
                self._spawn(self._invite(event, self._admit_origination))
        elif request.method == "OPTIONS" and not request.to.tag:
            self._options(event)
        elif request.to.tag:
            self.endpoint.respond(event.key, make_response(request, 481))
        else:
            response = make_response(request, 405, to_tag=new_tag())
            response.headers.add("Allow", ALLOW)
            self.endpoint.respond(event.key, response)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _options(self, event: RequestReceived) -> None:
        assert event.key is not None
        if not self.pings.allow(event.source.host):
            UNANSWERED.labels("ping-flood").inc()
            self.endpoint.forget(event.key)
            return
        response = make_response(event.request, 200, to_tag=new_tag())
        response.headers.add("Allow", ALLOW)
        response.headers.add("Accept", "application/sdp")
        self.endpoint.respond(event.key, response)

    # --- a new INVITE ---------------------------------------------------------------------

    def _reject(self, key: TransactionKey, request: Request, reject: Reject) -> None:
        REJECTIONS.labels(str(reject.status), str(reject.code)).inc()
        response = make_response(request, reject.status, reject.reason, to_tag=new_tag())
        if reject.code:
            response.headers.add(ERROR_HEADER, str(reject.code))
        log.info(
            "call refused",
            extra={
                "sip_call_id": request.call_id,
                "sip_status": reject.status,
                "error_code": reject.code,
                "reason": reject.reason,
            },
        )
        self.endpoint.respond(key, response)

    async def _invite(
        self,
        event: RequestReceived,
        admit: Callable[[RequestReceived], Awaitable[Reject | Call | _Outcome]],
    ) -> None:
        request = event.request
        key = event.key
        assert key is not None
        try:
            outcome = await admit(event)
        except identity.Rejection as rejection:
            self._reject(
                key, request, Reject(rejection.sip_status, rejection.reason, rejection.error_code)
            )
            return
        except Exception:
            log.exception("INVITE handling failed", extra={"sip_call_id": request.call_id})
            self._reject(key, request, Reject(500, "Server Internal Error"))
            return
        if isinstance(outcome, Reject):
            self._reject(key, request, outcome)
        elif outcome is _NO_ANSWER:
            self.endpoint.forget(key)  # no answer at all

    async def _admit_call(self, event: RequestReceived) -> Reject | Call | _Outcome:
        request = event.request
        source = event.source
        key = event.key
        assert key is not None
        config = self.config
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards < config.min_max_forwards:
            return Reject(
                483,
                f"Too Many Hops: Max-Forwards {max_forwards} is below {config.min_max_forwards}",
                32006,
            )
        found = identity.trunk_domain(request.parsed_uri.host, config.zone)
        if found is None:
            UNANSWERED.labels("unknown-host").inc()
            return _NO_ANSWER
        domain, edge = found.domain_name(config.zone), found.edge or config.edge
        trunk_sid = await self.cache.holder(claims.TRUNK_DOMAIN, domain)
        trunk = await self.cache.get(Trunk, trunk_sid) if trunk_sid else None
        if trunk is None:
            UNANSWERED.labels("unknown-host").inc()
            return _NO_ANSWER
        account = await self.cache.get(Account, trunk.account_sid)
        if account is None or account.status != AccountStatus.ACTIVE:
            return Reject(403, "Forbidden: the trunk's account is not active", 20005)
        if trunk.secure and source.transport.upper() != "TLS":
            return Reject(403, "Forbidden: secure trunk requires TLS transport", 32209)
        # The number rules are checked now but answered only after authentication (the
        # product's order); valid numbers ride along to the auth service's caller rules.
        destination = ""
        number_problem: Reject | None = None
        try:
            destination = identity.destination_number(request.uri)
        except identity.Rejection as rejection:
            number_problem = Reject(rejection.sip_status, rejection.reason, rejection.error_code)
        caller = identity.caller_id(request)
        if caller is None and number_problem is None:
            number_problem = Reject(
                403,
                "Forbidden: no caller ID in From, Remote-Party-ID or P-Asserted-Identity",
                21212,
            )
        auth_request = auth_pb2.TerminationRequest(
            trunk_sid=trunk.sid,
            account_sid=trunk.account_sid,
            source_ip=source.host,
            transport=source.transport.upper(),
            method=request.method,
            request_uri=request.uri,
            proxy_authorization=request.headers.get_all("Proxy-Authorization"),
        )
        if number_problem is None and caller is not None:
            auth_request.caller.CopyFrom(
                auth_pb2.CallerRequest(
                    account_sid=trunk.account_sid, caller_id=caller, destination=destination
                )
            )
        verdict = self.verdicts.get(auth_request)
        if verdict is None:
            generation = self.cache.generation
            verdict = await self.auth.termination(auth_request)
            self.verdicts.keep(auth_request, verdict, generation)
        outcome = verdict.outcome
        if outcome == auth_pb2.Verdict.IGNORE:
            self._ignored[source.host] = self.endpoint.loop.time() + config.lockout_memory
            UNANSWERED.labels("locked-out").inc()
            return _NO_ANSWER
        if outcome == auth_pb2.Verdict.CHALLENGE:
            response = make_response(
                request, 407, "Proxy Authentication Required", to_tag=new_tag()
            )
            for challenge in verdict.challenges:
                response.headers.add("Proxy-Authenticate", challenge)
            self.endpoint.respond(key, response)
            return ANSWERED
        if outcome != auth_pb2.Verdict.ALLOW:
            return _refusal(verdict)
        if number_problem is not None:
            return number_problem
        assert caller is not None
        # Authenticated and allowed: tell the PBX we are working on it.
        self.endpoint.respond(key, make_response(request, 100))
        number_sid = await self.cache.holder(claims.PHONE_NUMBER, destination)
        number = await self.cache.get(PhoneNumber, number_sid) if number_sid else None
        called_trunk = None
        if number is not None and number.trunk_sid:
            # On-net: the number is another trunk's; the call goes to that trunk's PBX.
            called_trunk = await self.cache.get(Trunk, number.trunk_sid)
        if identity.requires_session_timer(request.headers):
            # RFC 3261 8.2.2.3: the platform runs no session timers (RFC 4028).
            return Reject(420, "Bad Extension: session timers are not supported", 0)
        diversions: list[str] = []
        if "diversion" in request.headers:
            owned = await self._account_numbers(trunk.account_sid)
            diversions = identity.allowed_diversions(request.headers, config.zone, owned)
        if not self.cps.take((trunk.sid, edge), rate=trunk.cps_limit):
            return Reject(503, "Service Unavailable: trunk calls-per-second limit exceeded", 32001)
        if called_trunk is None and not config.gateways:
            return Reject(503, "Service Unavailable: no carrier gateway configured", 0)
        limit = trunk.concurrent_calls_limit or config.default_concurrent_calls
        if limit and not self.concurrent.acquire(trunk.sid, limit):
            return Reject(503, "Service Unavailable: trunk concurrent call limit reached", 32001)
        if called_trunk is not None:
            call = await self._new_on_net_call(
                event, trunk, called_trunk, edge, destination, caller
            )
            if isinstance(call, Reject):
                if limit:
                    self.concurrent.release(trunk.sid)
                return call
        else:
            call = self._new_call(event, trunk, edge, destination, caller, diversions)
        call.holds_concurrency = bool(limit)
        call.start()
        return call

    def is_carrier(self, source: Peer) -> bool:
        """Calls from the platform's carrier gateways are trusted by their source address:
        over UDP the gateway's address and port (a gateway sends from its SIP port; a PBX
        on the same host does not), over TCP and TLS its address."""
        if source.reliable:
            return source.host in self._carrier_hosts
        return (source.host, source.port) in self._carrier_sources

    async def _admit_origination(self, event: RequestReceived) -> Reject | Call | _Outcome:
        """A call from a carrier to one of the platform's numbers: the number's trunk, then
        its origination URLs (ARCHITECTURE.md, "An origination call")."""
        request = event.request
        key = event.key
        assert key is not None
        dialled = identity.destination_number(request.uri)
        number_sid = await self.cache.holder(claims.PHONE_NUMBER, dialled)
        number = await self.cache.get(PhoneNumber, number_sid) if number_sid else None
        trunk = (
            await self.cache.get(Trunk, number.trunk_sid) if number and number.trunk_sid else None
        )
        if trunk is None:
            return Reject(404, "Not Found: the number is not on a trunk", 0)
        self.endpoint.respond(key, make_response(request, 100))
        destinations = await self._origination_destinations(trunk, dialled)
        if not destinations and not trunk.disaster_recovery_url:
            return Reject(480, "Temporarily Unavailable: no valid origination URI", 32010)
        caller = identity.caller_id(request) or "anonymous"
        sid = self._new_sid()
        name = None
        if trunk.cnam_lookup_enabled and self.cnam is not None and is_nanp(caller):
            name = await self.cnam.lookup(trunk.account_sid, trunk.sid, sid, caller)
        policy = {"offerer": media_pb2.LegPolicy(), "answerer": _pbx_answerer(trunk)}
        headers = copyable_headers(request, _PASSED_HEADERS)
        if name is not None:
            # The platform asserts the caller with the name it looked up (b2bua adds it).
            headers = [(n, v) for n, v in headers if n.lower() != "p-asserted-identity"]
        headers.append(("Diversion", origination.diversion_header(dialled, self.config.zone)))
        # The edge that sends the call and is recorded on it: the first URL's edge= (or the
        # legacy region=), else this pod's.
        first = destinations[0].target if destinations else None
        edge = (
            first.sending_edge(self.config.edge)
            if isinstance(first, origination.OriginationTarget)
            else self.config.edge
        )
        call = self._make_call(
            event,
            trunk,
            edge,
            dialled,
            caller,
            destinations=destinations,
            policy=policy,
            headers=headers,
            direction="trunking-originating",
            fails_over=origination.fails_over,
            sid=sid,
        )
        call.redirect = self._redirect
        call.recover = self._recovery_for(trunk)
        call.b_display_name = name
        call.start()
        return call

    async def _origination_destinations(self, trunk: Trunk, dialled: str) -> list[Destination]:
        """The attempts of an origination call to `trunk`: its origination URLs in order,
        each host name resolved to all its addresses."""
        urls = await self.cache.list_all(OriginationUrl, "trunk", trunk.sid)
        routes = origination.plan(urls, dialled, self.config.rng, secure=trunk.secure)
        for url, problem in routes.invalid:
            log.warning(
                "unusable origination URL", extra={"url_sid": url.sid, "error": str(problem)}
            )
        destinations: list[Destination] = []
        for target in routes.targets:
            destinations += await self._attempts_of(target)
        return destinations

    async def _attempts_of(self, target: origination.OriginationTarget) -> list[Destination]:
        """One attempt per address of an origination target (a host name: all its A
        records, in order); none when the name does not resolve."""
        addresses: list[str] = []
        if not target.is_ip:
            try:
                addresses = await self.resolver.addresses(target.host)
            except ResolutionError as error:
                log.warning("origination host not resolved", extra={"error": str(error)})
                return []
        return [
            Destination(
                peer,
                target.request_uri,
                name=target.url_sid,
                headers=target.headers,
                target=target,
            )
            for peer in target.peers(addresses)
        ]

    def _recovery_for(self, trunk: Trunk) -> Callable[[Call], Awaitable[Ending]] | None:
        """The trunk's disaster recovery, run when no origination URI answered."""
        url = trunk.disaster_recovery_url
        if not url:
            return None
        method = str(trunk.disaster_recovery_method)

        async def recover(call: Call) -> Ending:
            parameters = CallParameters(
                call_sid=call.sid,
                account_sid=call.account_sid,
                from_=call.from_number,
                to=call.to_number,
            )
            return await run_disaster_recovery(
                url, method, parameters, fetch=self.fetcher, control=call
            )

        return recover

    async def _redirect(
        self, response: Response, attempt: Destination
    ) -> list[Destination] | Reject:
        """A PBX's 302 (issue 7): followed once, to its first Contact, never into the
        platform's zone; otherwise refused with 32219."""
        current = attempt.target
        if not isinstance(current, origination.OriginationTarget):
            return Reject(response.status, response.reason)
        try:
            contacts = response.contacts
        except ValueError:
            contacts = []
        followed = origination.redirect_target(contacts, self.config.zone, current)
        if isinstance(followed, origination.RedirectRefused):
            return Reject(followed.status, followed.reason, followed.code)
        attempts = await self._attempts_of(followed)
        if not attempts:
            return Reject(502, "Bad Gateway: the redirect target does not resolve", 32219)
        return attempts

    async def _account_numbers(self, account_sid: str) -> set[str]:
        numbers = await self.cache.list_all(PhoneNumber, "account", account_sid)
        verified = await self.cache.list_all(OutgoingCallerId, "account", account_sid)
        return {n.phone_number for n in numbers} | {c.phone_number for c in verified}

    def _new_call(
        self,
        event: RequestReceived,
        trunk: Trunk,
        edge: str,
        destination: str,
        caller: str,
        diversions: Sequence[str],
    ) -> Call:
        """A termination call: the PBX's leg to the carrier gateways."""
        secure = trunk.secure
        policy = {
            "offerer": media_pb2.LegPolicy(
                symmetric_rtp=trunk.symmetric_rtp_enabled,
                transport=media_pb2.TRANSPORT_SRTP if secure else media_pb2.TRANSPORT_UNSPECIFIED,
            ),
            "answerer": media_pb2.LegPolicy(transport=media_pb2.TRANSPORT_RTP),
        }
        headers = copyable_headers(event.request, _PASSED_HEADERS)
        headers += [("Diversion", value) for value in diversions]
        return self._make_call(
            event,
            trunk,
            edge,
            destination,
            caller,
            destinations=self._carrier_destinations(destination),
            policy=policy,
            headers=headers,
        )

    async def _new_on_net_call(
        self,
        event: RequestReceived,
        trunk: Trunk,
        called: Trunk,
        edge: str,
        destination: str,
        caller: str,
    ) -> Call | Reject:
        """A call from trunk A's PBX to a number of trunk B: leg B is B's origination URLs,
        and the call is recorded twice, terminating at A and originating at B."""
        destinations = await self._origination_destinations(called, destination)
        if not destinations:
            return Reject(480, "Temporarily Unavailable: no valid origination URI", 32010)
        policy = {
            "offerer": media_pb2.LegPolicy(
                symmetric_rtp=trunk.symmetric_rtp_enabled,
                transport=media_pb2.TRANSPORT_SRTP
                if trunk.secure
                else media_pb2.TRANSPORT_UNSPECIFIED,
            ),
            "answerer": _pbx_answerer(called),
        }
        headers = [("Diversion", origination.diversion_header(destination, self.config.zone))]
        call = self._make_call(
            event,
            trunk,
            edge,
            destination,
            caller,
            destinations=destinations,
            policy=policy,
            headers=headers,
            fails_over=origination.fails_over,
        )
        call.linked = LinkedCall(self._new_sid(), called.account_sid, called.sid)
        call.redirect = self._redirect
        call.recover = self._recovery_for(called)
        return call

    def _make_call(
        self,
        event: RequestReceived,
        trunk: Trunk,
        edge: str,
        destination: str,
        caller: str,
        *,
        destinations: list[Destination],
        policy: dict[str, media_pb2.LegPolicy],
        headers: list[tuple[str, str]],
        direction: str = "trunking-terminating",
        fails_over: Callable[[int], bool] | None = None,
        sid: str | None = None,
    ) -> Call:
        request = event.request
        assert event.key is not None
        sid = sid or self._new_sid()
        call = Call(
            sid=sid,
            endpoint=self.endpoint,
            dialogs=self.dialogs,
            media=self.media,
            hooks=self.hooks,
            a_request=request,
            a_key=event.key,
            a_source=event.source,
            destinations=destinations,
            b_from=f"sip:{caller}@{self.config.zone}",
            b_headers=headers,
            media_policy=policy,
            max_duration=self.config.max_call_duration,
            on_done=self._call_done,
            on_call_id=self._register,
            on_key=self._register_key,
            account_sid=trunk.account_sid,
            trunk_sid=trunk.sid,
            edge=edge,
            from_number=caller,
            to_number=destination,
            transfer_mode=str(trunk.transfer_mode),
            transfer_caller_id=str(trunk.transfer_caller_id),
            zone=self.config.zone,
            route_number=self._carrier_destinations,
            direction=direction,
            record_from=_record_from(trunk),
        )
        if fails_over is not None:
            call.fails_over = fails_over
        self.calls[request.call_id] = call
        self.by_sid[sid] = call
        self.by_key[event.key] = call
        ACTIVE_CALLS.inc()
        return call

    def _carrier_destinations(self, number: str) -> list[Destination]:
        """The carrier gateways to try for a PSTN number, in attempt order."""
        return [
            Destination(
                peer=Peer(gateway.transport.upper(), gateway.host, gateway.port),
                request_uri=f"sip:{number}@{gateway.address}"
                + ("" if gateway.transport == "udp" else f";transport={gateway.transport}"),
                name=gateway.name,
                credentials=gateway.credentials,
            )
            for gateway in attempt_order(self.config.gateways, self.config.rng)
        ]

    def _register(self, call_id: str, call: Call) -> None:
        self.calls[call_id] = call
        call.call_ids.append(call_id)

    def _register_key(self, key: TransactionKey, call: Call) -> None:
        self.by_key[key] = call

    def _call_done(self, call: Call) -> None:
        ACTIVE_CALLS.dec()
        self.by_sid.pop(call.sid, None)
        if self.calls.get(call.a_request.call_id) is call:
            del self.calls[call.a_request.call_id]
        self.by_key.pop(call.a_key, None)
        # Leg B's attempts may still answer (a late 2xx to ACK and hang up, a 1xx to CANCEL):
        # keep routing them here for as long as an INVITE transaction lives (64*T1).
        self.endpoint.loop.call_later(_LINGER, self._forget, call)

    def _forget(self, call: Call) -> None:
        for call_id in call.call_ids:
            if self.calls.get(call_id) is call:
                del self.calls[call_id]
        for key in call.keys:
            if self.by_key.get(key) is call:
                del self.by_key[key]
        if call.holds_concurrency:
            self.concurrent.release(call.trunk_sid)

    def media_timeout(self, call_sid: str) -> None:
        call = self.by_sid.get(call_sid)
        if call is not None:
            call.media_timeout()


def _record_from(trunk: Trunk) -> str:
    """When the media service starts recording a call of `trunk` (its Recording resource):
    "ringing", "answer", or "" for none. The -dual modes record the same way: the fork
    carries each leg apart already."""
    mode = str(trunk.recording_mode)
    if mode.startswith("record-from-ringing"):
        return "ringing"
    if mode.startswith("record-from-answer"):
        return "answer"
    return ""


class CnamApi(Protocol):
    """What the service needs of the CNAM service (clients.CnamClient)."""

    async def lookup(
        self, account_sid: str, trunk_sid: str, call_sid: str, number: str
    ) -> str | None: ...


class AuthApi(Protocol):
    """What the service needs of the auth service (clients.AuthClient)."""

    async def termination(self, request: auth_pb2.TerminationRequest) -> auth_pb2.Verdict: ...

    async def caller(self, request: auth_pb2.CallerRequest) -> auth_pb2.Verdict: ...


def _pbx_answerer(trunk: Trunk) -> media_pb2.LegPolicy:
    """The media policy of a trunk's PBX when the platform calls it (origination): SRTP with
    AES_CM_128_HMAC_SHA1_80 only on a secure trunk, symmetric RTP as the trunk says."""
    return media_pb2.LegPolicy(
        symmetric_rtp=trunk.symmetric_rtp_enabled,
        transport=media_pb2.TRANSPORT_SRTP if trunk.secure else media_pb2.TRANSPORT_RTP,
        crypto_suites=["AES_CM_128_HMAC_SHA1_80"] if trunk.secure else [],
    )


def _refusal(verdict: auth_pb2.Verdict) -> Reject:
    """The auth service's refusal as a SIP answer: "<standard phrase>: <what is wrong>"."""
    status = verdict.sip_status or 403
    standard = REASON_PHRASES.get(status, "Forbidden")
    reason = verdict.reason or standard
    if not reason.startswith(standard):
        reason = f"{standard}: {reason}"
    return Reject(status, reason, verdict.error_code)


def _call_id(message: Request | Response) -> str:
    try:
        return message.call_id
    except ValueError:
        return ""


def _call_sid() -> str:
    return new_sid("CA")


class _Outcome(enum.Enum):
    NO_ANSWER = "no answer at all"
    ANSWERED = "already answered (a challenge)"


_NO_ANSWER = _Outcome.NO_ANSWER
ANSWERED = _Outcome.ANSWERED
