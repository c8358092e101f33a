"""One party of a media end-to-end test: a pjsua2 user agent in its own process.

Run: python party.py --role callee --tone-hz 1000 --record B.wav
     python party.py --role caller --tone-hz 440 --record A.wav --call sip:b@127.0.0.1:5070
(without --call, the caller reads the URI to call from stdin once it is ready).

As a PBX calling through a trunk, the caller takes the SIP transport (--transport udp, tcp
or tls; TLS verifies the server against --tls-ca, or not at all without it), an outbound
proxy (--proxy), its own From URI (--id-uri) and digest credentials (--username,
--password) for a 407.

The pjsua2-python wheel allows one Endpoint per process (FIELD-NOTES), so each party is a
process. It uses the null sound device, plays a generated tone through an AudioMediaPlayer
into the call and records what it receives from the call with an AudioMediaRecorder. The
caller calls the given URI and hangs up `--duration` seconds after its media is up; the
callee answers every INVITE with 200 and exits when the call ends.

Progress goes to stdout as one JSON object per line: {"event": "ready", "sip_port": N} once
the SIP transport listens, then "media" when audio flows, then "done" with the outcome. The
exit status is 0 only if the call was answered, had active audio and ended with a BYE. The
callee also reports the INVITE it got ("invite": request URI, From, To, SDP), and with --log
each party reports the final responses to its INVITEs it received, from pjsip's message log
("response": status, reason, X-Trunkline-Error-Code, SDP), before "done". (pjsua2 calls
onCallTsxState neither for a 407 it answers nor for the final refusal that ends a call.)
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
    """How the call went. `remote_rtp_address` is the far end's address from its SDP: pjmedia
    sends there until packets from another source teach it better (its own symmetric RTP),
    so it names the relay's port even when the relay must latch."""

    answered: bool = False
    media_at: float | None = None
    disconnected: bool = False
    last_status: int = 0
    last_reason: str = ""
    rx_packets: int = 0
    tx_packets: int = 0
    remote_rtp_address: str = ""
    errors: list[str] = field(default_factory=list)


class Party:
    """The media of one call: the tone player and the recorder, wired in when audio is up."""

    def __init__(self, tone: Path, record: Path) -> None:
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(str(tone))  # loops by default
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(str(record))
        self.outcome = Outcome()
        self.call: PartyCall | None = None

    def ok(self) -> bool:
        """Whether the call went as a test call should."""
        outcome = self.outcome
        return (
            outcome.answered
            and outcome.media_at is not None
            and outcome.disconnected
            and not outcome.errors
        )

    def report(self) -> bool:
        """Print the "done" line; whether the call went as a test call should."""
        outcome = self.outcome
        ok = self.ok()
        emit(
            "done",
            ok=ok,
            answered=outcome.answered,
            media=outcome.media_at is not None,
            disconnected=outcome.disconnected,
            last_status=outcome.last_status,
            last_reason=outcome.last_reason,
            rx_packets=outcome.rx_packets,
            tx_packets=outcome.tx_packets,
            remote_rtp_address=outcome.remote_rtp_address,
            errors=outcome.errors,
        )
        return ok

    def release(self) -> None:
        self.call = None
        del self.player
        del self.recorder


class PartyCall(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account, party: Party, call_id: int = -1) -> None:
        super().__init__(account, call_id)
        self.party = party
        self.wired = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        outcome = self.party.outcome
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
                self.party.player.startTransmit(audio)
                audio.startTransmit(self.party.recorder)
                self.wired = True
                self.party.outcome.media_at = time.monotonic()
                emit("media", index=index)
                return

    def collect_stats(self) -> None:
        """RTP counters of the stream, read while the call still exists."""
        try:
            stat = self.getStreamStat(0)
            info = self.getStreamInfo(0)
        except pj.Error as err:
            self.party.outcome.errors.append(f"stream stat: {err.info()}")
            return
        self.party.outcome.rx_packets = int(stat.rtcp.rxStat.pkt)
        self.party.outcome.tx_packets = int(stat.rtcp.txStat.pkt)
        self.party.outcome.remote_rtp_address = str(info.remoteRtpAddress)


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
    r"RX \d+ bytes Response msg (\d{3})/INVITE/cseq=\d+ \(\w+\) from \S+ \S+:\n(.*?)\n--end msg--",
    re.DOTALL,
)


def invite_responses(log: Path) -> list[dict[str, Any]]:
    """The final responses to INVITEs in a pjsip log (level 4 or more), in order."""
    responses = []
    for found in _RX_RESPONSE.finditer(log.read_text(errors="replace")):
        status = int(found.group(1))
        message = parse_sip(found.group(2))
        if status < 200 or message is None:
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


class CalleeAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, party: Party) -> None:
        super().__init__()
        self.party = party

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        invite = parse_sip(str(prm.rdata.wholeMsg))
        if invite is not None:
            emit(
                "invite",
                request_uri=invite.start.split()[1],
                to=invite.header("To") or invite.header("t"),
                source=str(prm.rdata.srcAddress),
                sdp=invite.body,
                **{"from": invite.header("From") or invite.header("f")},
            )
        call = PartyCall(self, self.party, prm.callId)
        self.party.call = call
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
    work = Path(args.record).parent
    tone = work / f"tone-{args.role}-{args.tone_hz:g}.wav"
    write_tone(tone, args.tone_hz)
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
        transport_id = ep.transportCreate(TRANSPORTS[args.transport], transport)
        ep.libStart()
        ep.audDevManager().setNullDev()
        limit_codecs(ep)
        sip_port = int(ep.transportGetInfo(transport_id).localName.rsplit(":", 1)[1])
        party = Party(tone, Path(args.record))
        account = CalleeAccount(party) if args.role == "callee" else pj.Account()
        account.create(account_config(args, sip_port, transport_id))
        emit("ready", sip_port=sip_port, role=args.role)
        if args.role == "caller":
            # Without --call the URI comes on stdin: the test starts both parties at once
            # and knows where to call only when the callee is ready.
            uri = args.call or sys.stdin.readline().strip()
            party.call = PartyCall(account, party)
            party.call.makeCall(uri, pj.CallOpParam(True))
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
            for response in invite_responses(Path(args.log)):
                emit("response", **response)
        ok = party is not None and party.report()
    return 0 if ok else 1


def converse(ep: pj.Endpoint, party: Party, args: argparse.Namespace) -> None:
    """Run the call: the caller hangs up `duration` seconds after its audio is up; both wait
    for the end of the call (or give up at the deadline and hang up themselves)."""
    outcome = party.outcome
    deadline = time.monotonic() + args.duration + args.timeout
    hung_up = False
    next_stats = 0.0
    while not outcome.disconnected and time.monotonic() < deadline:
        ep.libHandleEvents(20)
        call, now = party.call, time.monotonic()
        if call is None or outcome.media_at is None:
            continue
        if args.role == "caller" and not hung_up and now - outcome.media_at >= args.duration:
            call.collect_stats()
            call.hangup(pj.CallOpParam(True))
            hung_up = True
        elif args.role == "callee" and now >= next_stats:
            # The stream is gone once the BYE arrives, so keep its counters fresh.
            call.collect_stats()
            next_stats = now + 0.2
    if not outcome.disconnected:
        outcome.errors.append("the call did not end in time")
        if party.call is not None:
            party.call.hangup(pj.CallOpParam(True))
    # Let the last transaction (the 200 for BYE) go out before the endpoint goes.
    linger = time.monotonic() + 0.1
    while time.monotonic() < linger:
        ep.libHandleEvents(20)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("caller", "callee"), required=True)
    parser.add_argument("--tone-hz", type=float, required=True)
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
    parser.add_argument("--proxy", help="outbound proxy URI (e.g. sip:h:p;transport=tls;lr)")
    parser.add_argument("--id-uri", help="this party's URI (From), e.g. sip:+1...@domain")
    parser.add_argument("--username", help="digest username for a 401/407")
    parser.add_argument("--password", help="digest password")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of audio")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds beyond duration")
    parser.add_argument("--log", help="pjsip log file")
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
