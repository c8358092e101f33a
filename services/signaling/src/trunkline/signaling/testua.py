"""A small test UAS and UAC built on the SIP core, for interop tests and benchmarks.

    python -m trunkline.signaling.testua uas --host 127.0.0.1 --port 5060 --transport udp
    python -m trunkline.signaling.testua uac 127.0.0.1:5070 --calls 20 --rate 10

The UAS answers INVITE with 180 then 200 (a minimal SDP), takes the ACK, answers BYE and
OPTIONS with 200 and CANCEL with 200 + 487. The UAC places calls at a rate: INVITE, the
end-to-end ACK for the 2xx (RFC 3261 13.2.2.4), BYE after a pause. Both use the
transaction layer (so UDP retransmits) and dialogs. The UAS prints one JSON line of
counters when it stops (SIGTERM or SIGINT); the UAC prints its counters when all calls
are done and exits 0 only when every call succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trunkline.signaling.sip.dialog import Dialog, DialogError, DialogLayer
from trunkline.signaling.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    new_tag,
)
from trunkline.signaling.sip.timers import TimerConfig
from trunkline.signaling.sip.transaction import (
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionKey,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)
from trunkline.signaling.sip.transport import (
    Endpoint,
    client_tls_context,
    server_tls_context,
)

__all__ = ["Uac", "UacStats", "Uas", "UasStats", "main", "sdp_offer"]

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"


def sdp_offer(host: str, port: int = 6000) -> bytes:
    """A minimal audio SDP (RFC 4566) offering PCMU; nothing listens on the port."""
    family = "IP6" if ":" in host else "IP4"
    return (
        f"v=0\r\no=- 1 1 IN {family} {host}\r\ns=-\r\nc=IN {family} {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104 (compared against, never bound)


def _media_host(host: str) -> str:
    # A wildcard bind says nothing about where media could go; the loopback is a valid stand-in.
    return "127.0.0.1" if host in _WILDCARDS else host


def _contact(endpoint: Endpoint, transport: str, user: str) -> str:
    host, port = endpoint.local_address(transport)
    suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
    return f"<sip:{user}@{_uri_host(host)}:{port}{suffix}>"


# ---- UAS ------------------------------------------------------------------------------


@dataclass
class UasStats:
    invites: int = 0
    answered: int = 0  # 200 sent to an initial INVITE
    acks: int = 0
    byes: int = 0
    options: int = 0
    cancels: int = 0
    rejected: int = 0  # requests answered with a failure (4xx-6xx) by the UAS itself
    ack_timeouts: int = 0  # Timer L: a 2xx never acknowledged


class Uas:
    """Answers calls on one endpoint; `answer_delay` seconds between 180 and 200 leave room
    for a CANCEL (0 answers at once)."""

    def __init__(self, endpoint: Endpoint, transport: str, *, answer_delay: float = 0.0) -> None:
        self.endpoint = endpoint
        self.transport = transport.upper()
        self.answer_delay = answer_delay
        self.dialogs = DialogLayer()
        self.stats = UasStats()
        self._contact = _contact(endpoint, self.transport, "uas")
        host = endpoint.local_address(self.transport)[0]
        self._sdp = sdp_offer(_media_host(host))
        endpoint.on_event = self.handle

    def handle(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, TransactionTimeout) and event.key.method == "INVITE":
            self.stats.ack_timeouts += 1

    def _request(self, event: RequestReceived) -> None:
        request = event.request
        method = request.method
        key = event.key
        if method == "ACK":
            self.stats.acks += 1
            self.dialogs.on_request(request)
            return
        if key is None:
            return
        if method == "INVITE":
            self._invite(request, key)
        elif method == "BYE":
            self.stats.byes += 1
            _, refusal = self.dialogs.on_request(request)
            self._respond(key, request, refusal or make_response(request, 200))
        elif method == "OPTIONS":
            self.stats.options += 1
            response = make_response(request, 200, to_tag=new_tag())
            response.headers.add("Allow", ALLOW)
            response.headers.add("Accept", "application/sdp")
            self._respond(key, request, response)
        elif method == "CANCEL":
            self.stats.cancels += 1
            self.endpoint.answer_cancel(key)
            if event.invite_key is not None:
                txn = self.endpoint.layer.get(event.invite_key)
                last = txn.last_response if txn is not None else None
                if txn is not None and last is not None:
                    # The 487 ends the early dialog the 180 made (RFC 3261 12.3).
                    self.dialogs.on_response_sent(txn.request, last)
        else:
            response = make_response(request, 405, to_tag=new_tag())
            response.headers.add("Allow", ALLOW)
            self._respond(key, request, response)

    def _invite(self, request: Request, key: TransactionKey) -> None:
        if request.to.tag:
            # A re-INVITE: accept it inside its dialog with the same SDP (RFC 3264 8).
            _, refusal = self.dialogs.on_request(request)
            self._respond(key, request, refusal or self._answer(request, None))
            return
        self.stats.invites += 1
        if "contact" not in request.headers:
            self._respond(key, request, make_response(request, 400, "Missing Contact"))
            return
        tag = new_tag()
        ringing = make_response(request, 180, to_tag=tag)
        ringing.headers.add("Contact", self._contact)
        if self.answer_delay > 0:
            self._respond(key, request, ringing)
            self.endpoint.loop.call_later(self.answer_delay, self._answer_later, request, key, tag)
        else:
            # Answered at once, the early dialog would be confirmed before anything could
            # use it: only the 200 makes the dialog, which halves the dialog work per call.
            self.endpoint.respond(key, ringing)
            self._respond(key, request, self._answer(request, tag))
            self.stats.answered += 1

    def _answer(self, request: Request, tag: str | None) -> Response:
        response = make_response(request, 200, to_tag=tag)
        response.headers.add("Contact", self._contact)
        response.headers.add("Content-Type", "application/sdp")
        response.body = self._sdp
        return response

    def _answer_later(self, request: Request, key: TransactionKey, tag: str) -> None:
        txn = self.endpoint.layer.get(key)
        if txn is None or txn.last_response is None or txn.last_response.status >= 200:
            return  # cancelled (487) or gone meanwhile
        self._respond(key, request, self._answer(request, tag))
        self.stats.answered += 1

    def _respond(self, key: TransactionKey, request: Request, response: Response) -> None:
        if response.status >= 400:
            self.stats.rejected += 1
        self.endpoint.respond(key, response)
        if request.method != "INVITE":
            return  # only INVITE responses make or change dialogs here (BYE was applied)
        # A request the dialog layer cannot track was answered anyway.
        with contextlib.suppress(DialogError):
            self.dialogs.on_response_sent(
                request, response, secure_transport=self.transport == "TLS"
            )


# ---- UAC ------------------------------------------------------------------------------


@dataclass
class UacStats:
    calls: int = 0
    successful: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    ack_retransmissions: int = 0


@dataclass
class _Call:
    invite: Request
    invite_key: TransactionKey | None = None
    dialog: Dialog | None = None
    ack: Request | None = None
    done: bool = False


class Uac:
    """Places `calls` calls to `target` at `rate` per second; `pause` seconds between the
    ACK and the BYE."""

    def __init__(
        self,
        endpoint: Endpoint,
        transport: str,
        target: Peer,
        *,
        calls: int,
        rate: float,
        pause: float = 0.0,
        request_uri: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.transport = transport.upper()
        self.target = target
        self.calls = calls
        self.rate = rate
        self.pause = pause
        self.request_uri = request_uri or f"sip:service@{_uri_host(target.host)}:{target.port}"
        self.dialogs = DialogLayer()
        self.stats = UacStats()
        self._calls: dict[str, _Call] = {}
        self._by_key: dict[TransactionKey, _Call] = {}
        self._contact = _contact(endpoint, self.transport, "uac")
        host = endpoint.local_address(self.transport)[0]
        self._local_host = _uri_host(host)
        self._sdp = sdp_offer(_media_host(host))
        self._finished: asyncio.Future[UacStats] | None = None
        endpoint.on_event = self.handle

    async def run(self) -> UacStats:
        loop = self.endpoint.loop
        self._finished = loop.create_future()
        start = loop.time()
        for i in range(self.calls):
            loop.call_at(start + i / self.rate, self._place_call)
        if self.calls == 0:
            return self.stats
        return await self._finished

    def _place_call(self) -> None:
        call_id = f"{new_tag()}@{self._local_host}"
        headers = Headers()
        headers.add("Via", self.endpoint.via(self.transport))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:uac@{self._local_host}>;tag={new_tag()}")
        headers.add("To", f"<{self.request_uri}>")
        headers.add("Call-ID", call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._contact)
        headers.add("Content-Type", "application/sdp")
        invite = Request("INVITE", self.request_uri, headers, self._sdp)
        call = _Call(invite)
        self._calls[call_id] = call
        self.stats.calls += 1
        try:
            call.invite_key = self.endpoint.send_request(invite, self.target)
        except Exception as exc:  # a failed call is counted, never crashes the run
            self._fail(call, f"send: {exc}")
            return
        self._by_key[call.invite_key] = call

    def handle(self, event: Event) -> None:
        if isinstance(event, ResponseReceived):
            self._response(event.response, event.key)
        elif isinstance(event, TransactionTimeout | TransportError):
            call = self._by_key.pop(event.key, None)
            if call is not None and not call.done:
                what = "timeout" if isinstance(event, TransactionTimeout) else "transport"
                self._fail(call, f"{event.key.method} {what}")

    def _response(self, response: Response, key: TransactionKey | None) -> None:
        try:
            call = self._calls.get(response.call_id)
            method = response.cseq.method
        except ValueError:
            return
        if call is None:
            return
        status = response.status
        if method == "INVITE":
            self._invite_response(call, response)
        elif method == "BYE" and status >= 200:
            if key is not None:
                self._by_key.pop(key, None)
            if status < 300:
                self._succeed(call)
            else:
                self._fail(call, f"BYE {status}")

    def _invite_response(self, call: _Call, response: Response) -> None:
        status = response.status
        if call.ack is not None:
            if 200 <= status < 300:
                # 13.2.2.4: every retransmission of the 2xx gets the same ACK again.
                self.stats.ack_retransmissions += 1
                self.endpoint.send_stateless(call.ack, self.target)
            return
        try:
            dialog = self.dialogs.on_response(
                call.invite, response, secure_transport=self.transport == "TLS"
            )
        except DialogError as exc:
            self._fail(call, f"dialog: {exc.reason}")
            return
        if status < 200:
            return
        if status >= 300:
            self._fail(call, f"INVITE {status}")
            return
        if dialog is None or call.done:
            self._fail(call, "2xx without a dialog")
            return
        call.dialog = dialog
        # Sent to the next hop we called, as through an outbound proxy (RFC 3261 8.1.2).
        call.ack = dialog.create_ack(call.invite, via=self.endpoint.via(self.transport))
        self.endpoint.send_stateless(call.ack, self.target)
        if self.pause > 0:
            self.endpoint.loop.call_later(self.pause, self._hang_up, call)
        else:
            self._hang_up(call)

    def _hang_up(self, call: _Call) -> None:
        if call.dialog is None or call.done:
            return
        bye = call.dialog.create_request("BYE", via=self.endpoint.via(self.transport))
        self.dialogs.remove(call.dialog)
        try:
            key = self.endpoint.send_request(bye, self.target)
        except Exception as exc:  # counted as a failed call
            self._fail(call, f"send: {exc}")
            return
        self._by_key[key] = call

    def _succeed(self, call: _Call) -> None:
        if call.done:
            return
        call.done = True
        self.stats.successful += 1
        self._check_done()

    def _fail(self, call: _Call, reason: str) -> None:
        if call.done:
            return
        call.done = True
        self.stats.failed += 1
        self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
        if call.dialog is not None:
            self.dialogs.remove(call.dialog)
        self._check_done()

    def _check_done(self) -> None:
        finished = self.stats.successful + self.stats.failed
        if finished >= self.calls and self._finished is not None and not self._finished.done():
            self._finished.set_result(self.stats)


# ---- command line ---------------------------------------------------------------------


def _parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trunkline.signaling.testua")
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("uas", "uac"):
        p = sub.add_parser(role)
        p.add_argument("--host", default="127.0.0.1", help="address to bind")
        p.add_argument("--port", type=int, default=5060 if role == "uas" else 0)
        p.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
        p.add_argument("--cert", type=Path, help="TLS certificate (PEM)")
        p.add_argument("--key", type=Path, help="TLS private key (PEM)")
        p.add_argument("--cafile", type=Path, help="CA bundle to verify TLS servers with")
        p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
        p.add_argument("--t1", type=float, default=0.5, help="RFC 3261 T1 in seconds")
        p.add_argument(
            "--max-transactions",
            type=int,
            default=1 << 20,
            help="server transactions held at most (each lingers 64*T1 on UDP)",
        )
    uas = sub.choices["uas"]
    uas.add_argument("--answer-delay", type=float, default=0.0)
    uas.add_argument("--ready-file", type=Path, help="written with the bound port when ready")
    uac = sub.choices["uac"]
    uac.add_argument("target", type=_parse_target, help="HOST:PORT to call")
    uac.add_argument("--calls", type=int, default=1)
    uac.add_argument("--rate", type=float, default=10.0, help="calls per second")
    uac.add_argument("--pause", type=float, default=0.0, help="seconds between ACK and BYE")
    return parser


async def _endpoint(args: argparse.Namespace, *, server: bool) -> Endpoint:
    config = TimerConfig(t1=args.t1, t2=max(4.0, args.t1), trying_delay=None if server else 0.2)
    layer = TransactionLayer(config, max_server_transactions=args.max_transactions)
    endpoint = Endpoint(layer)
    transport = args.transport.upper()
    if transport == "UDP":
        await endpoint.listen_udp(args.host, args.port)
    else:
        server_ssl = client_ssl = None
        if transport == "TLS":
            if args.cert is not None and args.key is not None:
                server_ssl = server_tls_context(args.cert, args.key)
            client_ssl = client_tls_context(args.cafile)
            if server_ssl is None and server:
                raise SystemExit("a TLS UAS needs --cert and --key")
        await endpoint.listen_stream(
            transport, args.host, args.port, server_ssl=server_ssl, client_ssl=client_ssl
        )
    return endpoint


async def _run_uas(args: argparse.Namespace) -> int:
    endpoint = await _endpoint(args, server=True)
    uas = Uas(endpoint, args.transport, answer_delay=args.answer_delay)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = endpoint.local_address(args.transport)[1]
    if args.ready_file is not None:
        # Written whole then renamed, so a reader never sees a partial file.
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.rename(args.ready_file)
    print(json.dumps({"ready": port}), flush=True)
    await stop.wait()
    print(
        json.dumps({"uas": asdict(uas.stats), "transport": asdict(endpoint.stats.transport)}),
        flush=True,
    )
    await endpoint.close()
    return 0


async def _run_uac(args: argparse.Namespace) -> int:
    endpoint = await _endpoint(args, server=False)
    host, port = args.target
    uac = Uac(
        endpoint,
        args.transport,
        Peer(args.transport.upper(), host, port),
        calls=args.calls,
        rate=args.rate,
        pause=args.pause,
    )
    stats = await uac.run()
    print(
        json.dumps({"uac": asdict(stats), "transport": asdict(endpoint.stats.transport)}),
        flush=True,
    )
    await endpoint.close()
    return 0 if stats.failed == 0 and stats.successful == args.calls else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run = _run_uas(args) if args.role == "uas" else _run_uac(args)
    if args.loop == "uvloop":
        import uvloop

        return uvloop.run(run)
    return asyncio.run(run)


if __name__ == "__main__":
    sys.exit(main())
