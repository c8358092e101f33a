"""One party of a media end-to-end test: a pjsua2 user agent in its own process.

Run: python party.py --role callee --tone-hz 1000 --record B.wav
     python party.py --role caller --tone-hz 440 --record A.wav --call sip:b@127.0.0.1:5070
(without --call, the caller reads the URI to call from stdin once it is ready).

As a PBX calling through a trunk, the caller takes the SIP transport (--transport udp, tcp
or tls; TLS verifies the server against --tls-ca, or not at all without it), an outbound
proxy (--proxy), its own From URI (--id-uri) and digest credentials (--username,
--password) for a 407. A callee listening on TLS (a PBX the platform calls) shows the
certificate --tls-cert with its key --tls-key. With --transfer-to URI it transfers its call
there (a blind transfer: REFER) `--transfer-after` seconds after its media is up, and
reports the progress the far end NOTIFYs ("transfer_status": status, reason, final).

The pjsua2-python wheel allows one Endpoint per process (FIELD-NOTES), so each party is a
process. It uses the null sound device, plays a generated tone through an AudioMediaPlayer
into the call and records what it receives from the call with an AudioMediaRecorder. The
caller calls the given URI and hangs up `--duration` seconds after its media is up; the
callee answers every INVITE with 200 (up to --calls of them, each recorded to a file of its
own: --record for the first, `<stem>-2.wav` for the second, ...; 486 to any more) and exits
when its calls have ended; with --hang-up it hangs up each `--duration` seconds after its
media is up.

Progress goes to stdout as one JSON object per line: {"event": "ready", "sip_port": N} once
the SIP transport listens, then "media" when audio flows, then "done" with the outcome (one
per call, in the order they came, each with its number: "call": 1, 2, ...). The exit status
is 0 only if every call was answered, had active audio and ended with a BYE. The callee also
reports each INVITE it got ("invite": request URI, From, To, topmost Via, SDP), and with
--log each party reports, from pjsip's message log and before "done", the final responses to
its INVITEs ("response": status, reason, X-Trunkline-Error-Code, SDP), the final responses
to its REFERs ("refer_response": the same) and every request it received ("request": method,
request URI, From, To, Event, Subscription-State, body). (pjsua2 calls onCallTsxState
neither for a 407 it answers nor for the final refusal that ends a call.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pjsua2 as pj

HOST = "127.0.0.1"
RATE = 8000
KEPT_CODECS = ("PCMU/8000/1", "PCMA/8000/1")
TRANSPORTS = {
    "udp": pj.PJSIP_TRANSPORT_UDP,
    "tcp": pj.PJSIP_TRANSPORT_TCP,
    "tls": pj.PJSIP_TRANSPORT_TLS,
}


# pjlib writes its first log lines to stdout before any log configuration applies, so the
# JSON lines get a private copy of stdout and fd 1 goes to stderr (see main()).
_events: TextIO = sys.stdout


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), file=_events, flush=True)


def write_tone(path: Path, hz: float, seconds: float = 1.0) -> None:
    """A 16-bit mono WAV at 8 kHz; a whole number of cycles, so the player loops it without
    a click (a click would smear energy over the spectrum)."""
    t = np.arange(int(RATE * seconds)) / RATE
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())


@dataclass
class Outcome:
    """How a call went. `remote_rtp_address` is the far end's address from its SDP: pjmedia
    sends there until packets from another source teach it better (its own symmetric RTP),
    so it names the relay's port even when the relay must latch. `hung_up`: this party ended
    the call (else the far end did, or it never connected)."""

    answered: bool = False
    media_at: float | None = None
    disconnected: bool = False
    hung_up: bool = False
    last_status: int = 0
    last_reason: str = ""
    rx_packets: int = 0
    tx_packets: int = 0
    remote_rtp_address: str = ""
    errors: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        """Whether the call went as a test call should."""
        return self.answered and self.media_at is not None and self.disconnected and not self.errors


def tone_player(tone: Path) -> pj.AudioMediaPlayer:
    player = pj.AudioMediaPlayer()
    player.createPlayer(str(tone))  # loops by default
    return player


class Party:
    """The media of a party: tone players (wired into each call when its audio is up) and the
    calls, each with its recorder and outcome. `tones`: the tone of each call, the last one
    for any further calls."""

    def __init__(self, tones: list[Path], record: Path) -> None:
        self.tones = tones
        self.player = tone_player(tones[0])
        self.record = record
        # The first call's recorder and outcome exist from the start (errors before any
        # call go there too).
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(str(record))
        self.outcome = Outcome()
        self.calls: list[PartyCall] = []
        self.outcomes = [self.outcome]  # of each call (they outlive the calls)
        self.refused: list[pj.Call] = []  # calls beyond --calls, kept until the end

    @property
    def call(self) -> PartyCall | None:
        """The first call."""
        return self.calls[0] if self.calls else None

    def leg(self) -> tuple[pj.AudioMediaPlayer, pj.AudioMediaRecorder, Outcome]:
        """The tone player, recorder and outcome for the next call."""
        if not self.calls:
            return self.player, self.recorder, self.outcome
        number = len(self.calls) + 1
        tone = self.tones[min(number, len(self.tones)) - 1]
        player = self.player if tone == self.tones[0] else tone_player(tone)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(str(self.record.with_name(f"{self.record.stem}-{number}.wav")))
        self.outcomes.append(Outcome())
        return player, recorder, self.outcomes[-1]

    def ok(self) -> bool:
        """Whether every call went as a test call should."""
        return all(outcome.ok() for outcome in self.outcomes)

    def report(self) -> bool:
        """Print a "done" line per call; whether every call went as a test call should."""
        for number, outcome in enumerate(self.outcomes, start=1):
            emit(
                "done",
                call=number,
                ok=outcome.ok(),
                answered=outcome.answered,
                media=outcome.media_at is not None,
                disconnected=outcome.disconnected,
                hung_up=outcome.hung_up,
                last_status=outcome.last_status,
                last_reason=outcome.last_reason,
                rx_packets=outcome.rx_packets,
                tx_packets=outcome.tx_packets,
                remote_rtp_address=outcome.remote_rtp_address,
                errors=outcome.errors,
            )
        return self.ok()

    def release(self) -> None:
        for call in self.calls:
            del call.player
            del call.recorder
        self.calls.clear()
        self.refused.clear()
        del self.player
        del self.recorder


class PartyCall(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account, party: Party, call_id: int = -1) -> None:
        super().__init__(account, call_id)
        self.party = party
        self.player, self.recorder, self.outcome = party.leg()
        party.calls.append(self)
        self.wired = False
        self.transfer_sent = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        outcome = self.outcome
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            outcome.answered = True
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            outcome.disconnected = True
            outcome.last_status = int(info.lastStatusCode)
            outcome.last_reason = str(info.lastReason)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        if self.wired:
            return
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(index)
                self.player.startTransmit(audio)
                audio.startTransmit(self.recorder)
                self.wired = True
                self.outcome.media_at = time.monotonic()
                emit("media", index=index, call=self.party.calls.index(self) + 1)
                return

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        # The response to our REFER, then the sipfrag of each NOTIFY about it.
        emit(
            "transfer_status",
            status=int(prm.statusCode),
            reason=str(prm.reason),
            final=bool(prm.finalNotify),
        )

    def hang_up(self) -> None:
        self.collect_stats()
        self.hangup(pj.CallOpParam(True))
        self.outcome.hung_up = True

    def collect_stats(self) -> None:
        """RTP counters of the stream, read while the call still exists."""
        try:
            stat = self.getStreamStat(0)
            info = self.getStreamInfo(0)
        except pj.Error as err:
            self.outcome.errors.append(f"stream stat: {err.info()}")
            return
        self.outcome.rx_packets = int(stat.rtcp.rxStat.pkt)
        self.outcome.tx_packets = int(stat.rtcp.txStat.pkt)
        self.outcome.remote_rtp_address = str(info.remoteRtpAddress)


@dataclass
class SipText:
    """A SIP message as text: its start line, headers and body (enough for the reports)."""

    start: str
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str:
        return next((v for n, v in self.headers if n.lower() == name.lower()), "")


def parse_sip(text: str) -> SipText | None:
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    if not lines or not lines[0]:
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(), value.strip()))
    return SipText(lines[0], headers, body)


# pjsua's message log: a received message follows this line and ends with "--end msg--".
_RX_RESPONSE = re.compile(
    r"RX \d+ bytes Response msg (\d{3})/(\w+)/cseq=\d+ \(\w+\) from \S+ \S+:\n(.*?)\n--end msg--",
    re.DOTALL,
)
_RX_REQUEST = re.compile(
    r"RX \d+ bytes Request msg (\w+)/cseq=\d+ \(\w+\) from \S+ \S+:\n(.*?)\n--end msg--",
    re.DOTALL,
)


def final_responses(log: Path, method: str = "INVITE") -> list[dict[str, Any]]:
    """The final responses to `method` requests in a pjsip log (level 4 or more), in order."""
    responses = []
    for found in _RX_RESPONSE.finditer(log.read_text(errors="replace")):
        status = int(found.group(1))
        message = parse_sip(found.group(3))
        if status < 200 or found.group(2) != method or message is None:
            continue
        parts = message.start.split(" ", 2)
        responses.append(
            {
                "status": status,
                "reason": parts[2] if len(parts) > 2 else "",
                "error_code": message.header("X-Trunkline-Error-Code"),
                "sdp": message.body,
            }
        )
    return responses


def invite_responses(log: Path) -> list[dict[str, Any]]:
    """The final responses to INVITEs in a pjsip log (level 4 or more), in order."""
    return final_responses(log, "INVITE")


def received_requests(log: Path) -> list[dict[str, Any]]:
    """The requests a pjsip log (level 4 or more) shows received, in order."""
    requests = []
    for found in _RX_REQUEST.finditer(log.read_text(errors="replace")):
        message = parse_sip(found.group(2))
        if message is None:
            continue
        start = message.start.split()
        requests.append(
            {
                "method": found.group(1),
                "request_uri": start[1] if len(start) > 1 else "",
                "from": message.header("From") or message.header("f"),
                "to": message.header("To") or message.header("t"),
                "call_id": message.header("Call-ID") or message.header("i"),
                "event_header": message.header("Event") or message.header("o"),
                "subscription_state": message.header("Subscription-State"),
                "content_type": message.header("Content-Type") or message.header("c"),
                "body": message.body,
            }
        )
    return requests


class CalleeAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, party: Party, max_calls: int) -> None:
        super().__init__()
        self.party = party
        self.max_calls = max_calls

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        invite = parse_sip(str(prm.rdata.wholeMsg))
        if invite is not None:
            emit(
                "invite",
                request_uri=invite.start.split()[1],
                to=invite.header("To") or invite.header("t"),
                via=invite.header("Via") or invite.header("v"),
                source=str(prm.rdata.srcAddress),
                sdp=invite.body,
                **{"from": invite.header("From") or invite.header("f")},
            )
        if len(self.party.calls) >= self.max_calls:
            busy = pj.Call(self, prm.callId)
            self.party.refused.append(busy)
            refusal = pj.CallOpParam()
            refusal.statusCode = 486
            busy.hangup(refusal)
            return
        call = PartyCall(self, self.party, prm.callId)
        answer = pj.CallOpParam()
        answer.statusCode = 200
        call.answer(answer)


def make_endpoint(log: Path | None) -> pj.Endpoint:
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    # Callbacks run in this thread only, from libHandleEvents() in the main loop.
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 4
    cfg.logConfig.consoleLevel = 0  # the log goes to --log only
    cfg.logConfig.level = 5 if log else 0
    if log:
        cfg.logConfig.filename = str(log)
    cfg.medConfig.clockRate = RATE
    cfg.medConfig.sndClockRate = RATE
    cfg.medConfig.noVad = True  # a steady packet stream makes the relay's counters exact
    cfg.medConfig.ecTailLen = 0
    ep.libInit(cfg)
    return ep


def limit_codecs(ep: pj.Endpoint) -> None:
    for codec in ep.codecEnum2():
        if codec.codecId not in KEPT_CODECS:
            ep.codecSetPriority(codec.codecId, 0)
    for priority, codec_id in zip((255, 254), KEPT_CODECS, strict=True):
        ep.codecSetPriority(codec_id, priority)


def account_config(args: argparse.Namespace, sip_port: int, transport_id: int) -> pj.AccountConfig:
    cfg = pj.AccountConfig()
    cfg.idUri = args.id_uri or f"sip:{args.role}@{HOST}:{sip_port}"
    suffix = "" if args.transport == "udp" else f";transport={args.transport}"
    cfg.sipConfig.contactForced = f"<sip:{args.role}@{HOST}:{sip_port}{suffix}>"
    cfg.sipConfig.transportId = transport_id
    if args.proxy:
        cfg.sipConfig.proxies.append(args.proxy)
    if args.username:
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", args.username, 0, args.password or "")
        )
    media = cfg.mediaConfig.transportConfig
    media.boundAddress = HOST
    media.publicAddress = HOST
    media.port = args.rtp_port
    media.portRange = 100
    if args.srtp:
        cfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
        # SDES keys in the clear over UDP signaling: fine on loopback, refused by default
        # (--secure-signaling: only over TLS, as a PBX should).
        cfg.mediaConfig.srtpSecureSignaling = 1 if args.secure_signaling else 0
    else:
        cfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_DISABLED
    cfg.natConfig.iceEnabled = False
    return cfg


def run(args: argparse.Namespace) -> int:
    record = Path(args.record)
    tones = []
    for hz in [args.tone_hz, *args.next_tones_hz]:
        # Named after the recording: parties of a test share its directory.
        tones.append(record.parent / f"tone-{record.stem}-{hz:g}.wav")
        write_tone(tones[-1], hz)
    ep = make_endpoint(Path(args.log) if args.log else None)
    party: Party | None = None
    account: pj.Account | None = None
    try:
        transport = pj.TransportConfig()
        transport.boundAddress = HOST
        transport.port = args.sip_port
        if args.transport == "tls":
            tls = transport.tlsConfig
            tls.method = pj.PJSIP_TLSV1_2_METHOD  # the bundled OpenSSL 1.0.2's newest
            if args.tls_ca:
                tls.CaListFile = args.tls_ca
                tls.verifyServer = True
            if args.tls_cert:
                # A TLS listener (a PBX the platform calls over TLS) shows this certificate.
                tls.certFile = args.tls_cert
                tls.privKeyFile = args.tls_key or ""
        transport_id = ep.transportCreate(TRANSPORTS[args.transport], transport)
        ep.libStart()
        ep.audDevManager().setNullDev()
        limit_codecs(ep)
        sip_port = int(ep.transportGetInfo(transport_id).localName.rsplit(":", 1)[1])
        party = Party(tones, record)
        account = CalleeAccount(party, args.calls) if args.role == "callee" else pj.Account()
        account.create(account_config(args, sip_port, transport_id))
        emit("ready", sip_port=sip_port, role=args.role)
        if args.role == "caller":
            # Without --call the URI comes on stdin: the test starts both parties at once
            # and knows where to call only when the callee is ready.
            uri = args.call or sys.stdin.readline().strip()
            # No local name for the call: it must go (in release()) before libDestroy().
            PartyCall(account, party).makeCall(uri, pj.CallOpParam(True))
        converse(ep, party, args)
    except pj.Error as err:
        if party is not None:
            party.outcome.errors.append(err.info())
        else:
            emit("done", ok=False, errors=[err.info()])
    finally:
        # FIELD-NOTES: calls, players and recorders go before libDestroy(), or the process
        # may abort at exit (and the recorder would leave its WAV header unfinished).
        if party is not None:
            party.release()
        if account is not None:
            account.shutdown()
            del account
        # The call is over: no need to wait (a second, by default) for unregistrations.
        ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
        # pjsua writes its log unflushed: it is complete only once the library is gone.
        if args.log and Path(args.log).exists():
            log = Path(args.log)
            for response in invite_responses(log):
                emit("response", **response)
            for response in final_responses(log, "REFER"):
                emit("refer_response", **response)
            for request in received_requests(log):
                emit("request", **request)
        ok = party is not None and party.report()
    return 0 if ok else 1


def converse(ep: pj.Endpoint, party: Party, args: argparse.Namespace) -> None:
    """Run the calls: the caller (and with --hang-up the callee) hangs up `duration` seconds
    after a call's audio is up, the caller with --transfer-to transfers its call
    `transfer_after` seconds after; all wait for the end of their calls (or give up at the
    deadline and hang up themselves)."""
    hangs_up = args.role == "caller" or args.hang_up
    expected = 1 if args.role == "caller" else args.calls
    deadline = time.monotonic() + args.duration + args.timeout
    next_stats = 0.0

    def over() -> bool:
        calls = party.calls
        return len(calls) >= expected and all(call.outcome.disconnected for call in calls)

    while not over() and time.monotonic() < deadline:
        ep.libHandleEvents(20)
        now = time.monotonic()
        refresh = now >= next_stats
        if refresh:
            next_stats = now + 0.2
        for number, call in enumerate(party.calls, start=1):
            outcome = call.outcome
            if outcome.disconnected or outcome.hung_up or outcome.media_at is None:
                continue
            talked = now - outcome.media_at
            if hangs_up and talked >= args.duration:
                call.hang_up()
            elif args.transfer_to and not call.transfer_sent and talked >= args.transfer_after:
                call.transfer_sent = True
                call.collect_stats()
                emit("transfer", call=number, to=args.transfer_to)
                call.xfer(args.transfer_to, pj.CallOpParam(True))
            elif refresh:
                # The stream is gone once a BYE arrives, so keep its counters fresh.
                call.collect_stats()
    for call in party.calls:
        if not call.outcome.disconnected:
            call.outcome.errors.append("the call did not end in time")
            call.hangup(pj.CallOpParam(True))
    if len(party.calls) < expected:
        party.outcome.errors.append(f"{len(party.calls)} of {expected} calls came")
    # Let the last transaction (the 200 for BYE) go out before the endpoint goes.
    linger = time.monotonic() + 0.1
    while time.monotonic() < linger:
        ep.libHandleEvents(20)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("caller", "callee"), required=True)
    parser.add_argument("--tone-hz", type=float, required=True)
    parser.add_argument(
        "--next-tones-hz",
        type=float,
        nargs="*",
        default=[],
        help="callee: tones of the second, third, ... call (default: the same as the first)",
    )
    parser.add_argument("--record", required=True, help="WAV file for what this party hears")
    parser.add_argument("--call", help="SIP URI the caller calls (default: read from stdin)")
    parser.add_argument("--sip-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--rtp-port", type=int, default=0, help="first RTP port to try")
    parser.add_argument("--srtp", action="store_true", help="mandatory SRTP with SDES")
    parser.add_argument(
        "--secure-signaling", action="store_true", help="with --srtp: SDES only over TLS"
    )
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="udp")
    parser.add_argument("--tls-ca", help="verify a TLS server against this PEM file")
    parser.add_argument("--tls-cert", help="PEM certificate this party's TLS listener shows")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--proxy", help="outbound proxy URI (e.g. sip:h:p;transport=tls;lr)")
    parser.add_argument("--id-uri", help="this party's URI (From), e.g. sip:+1...@domain")
    parser.add_argument("--username", help="digest username for a 401/407")
    parser.add_argument("--password", help="digest password")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of audio")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds beyond duration")
    parser.add_argument("--log", help="pjsip log file")
    parser.add_argument(
        "--calls", type=int, default=1, help="callee: calls to answer (486 to any more)"
    )
    parser.add_argument(
        "--hang-up", action="store_true", help="callee: hang up `duration` s after the media"
    )
    parser.add_argument("--transfer-to", help="caller: URI to transfer the call to (REFER)")
    parser.add_argument(
        "--transfer-after", type=float, default=1.0, help="seconds of audio before the REFER"
    )
    return parser.parse_args(argv)


def main() -> int:
    global _events
    args = parse_args(sys.argv[1:])
    sys.stdout.flush()
    _events = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
