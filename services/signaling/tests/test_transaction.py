"""RFC 3261 section 17 transactions, driven by parsed messages and a hand-moved clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from trunkline.signaling.sip.message import Headers, Request, Response, make_response, parse_message
from trunkline.signaling.sip.timers import Timer, TimerConfig, TimerQueue
from trunkline.signaling.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    MessageDiscarded,
    Output,
    Peer,
    RequestReceived,
    ResponseReceived,
    Role,
    Send,
    ServerTransactionRejected,
    TransactionError,
    TransactionKey,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
    build_ack,
    build_cancel,
    client_key,
    response_destination,
    server_key,
)

PEER = Peer("UDP", "192.0.2.10", 5060)
TCP_PEER = Peer("TCP", "192.0.2.10", 49152)
CARRIER = Peer("UDP", "198.51.100.5", 5060)
TCP_CARRIER = Peer("TCP", "198.51.100.5", 5060)

# The cumulative retransmission times for T1 = 0.5 s and T2 = 4 s: intervals that double
# without a cap (Timer A) or up to T2 (Timers E, G and the 2xx), until 64*T1 = 32 s.
A_TIMES = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
CAPPED_TIMES = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK776asdhds",
    sent_by: str = "192.0.2.10:5060",
    transport: str = "UDP",
    via_params: str = "",
    cseq: int = 314159,
    cseq_method: str | None = None,
    call_id: str = "a84b4c76e66710@pc33.atlanta.example.com",
    from_tag: str = "1928301774",
    to_tag: str | None = None,
    uri: str = "sip:bob@biloxi.example.com",
    routes: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> Request:
    via = f"SIP/2.0/{transport} {sent_by}" + (f";branch={branch}" if branch else "") + via_params
    lines = [f"{method} {uri} SIP/2.0", f"Via: {via}", "Max-Forwards: 70"]
    lines += [f"Route: {route}" for route in routes]
    lines += [
        f"From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}",
        "To: Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@192.0.2.10>",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def reply(req: Request, status: int, *, to_tag: str | None = "a6c85cf") -> Response:
    """The response a peer would send, through the parser as it would arrive."""
    response = make_response(req, status, to_tag=to_tag if status > 100 else None)
    parsed = parse_message(bytes(response))
    assert isinstance(parsed, Response)
    return parsed


def sends(outputs: Sequence[Output]) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send)]


def of_type(outputs: Sequence[Output], cls: type) -> list[Output]:
    return [o for o in outputs if isinstance(o, cls)]


def sent(outputs: Sequence[Output]) -> list[Request | Response]:
    return [parse_message(s.data) for s in sends(outputs)]


def run(layer: TransactionLayer, until: float) -> list[tuple[float, Output]]:
    """Tick at every deadline up to `until`; the outputs with the time they came out."""
    timeline: list[tuple[float, Output]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        timeline.extend((deadline, o) for o in layer.tick(deadline))
    return timeline


def send_times(timeline: Sequence[tuple[float, Output]]) -> list[float]:
    return [t for t, o in timeline if isinstance(o, Send)]


def server_txn(layer: TransactionLayer, req: Request, source: Peer = PEER) -> TransactionKey:
    out = layer.receive(req, source, 0.0)
    (received,) = of_type(out, RequestReceived)
    assert isinstance(received, RequestReceived) and received.key is not None
    return received.key


# ---- timers ----------------------------------------------------------------------------


def test_timer_config_defaults_are_rfc_3261_values() -> None:
    config = TimerConfig()
    assert (config.t1, config.t2, config.t4) == (0.5, 4.0, 5.0)
    assert config.timeout == 32.0
    assert config.timer_d(reliable=False) == 32.0
    assert config.timer_d(reliable=True) == 0.0
    assert (config.timer_i(False), config.timer_i(True)) == (5.0, 0.0)
    assert (config.timer_j(False), config.timer_j(True)) == (32.0, 0.0)
    assert (config.timer_k(False), config.timer_k(True)) == (5.0, 0.0)


def test_timer_d_covers_the_servers_retransmissions_when_t1_is_raised() -> None:
    assert TimerConfig(t1=1.0, t2=4.0).timer_d(reliable=False) == 64.0


@pytest.mark.parametrize(
    "kwargs",
    [{"t1": 0.0}, {"t1": -1.0}, {"t2": 0.1}, {"t4": float("nan")}, {"trying_delay": -0.1}],
)
def test_timer_config_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)


def test_timer_config_from_environment() -> None:
    config = TimerConfig.from_environ(
        {"TRUNKLINE_SIP_T1": "0.25", "TRUNKLINE_SIP_T2": "2", "TRUNKLINE_SIP_TRYING_DELAY": "never"}
    )
    assert (config.t1, config.t2, config.t4, config.trying_delay) == (0.25, 2.0, 5.0, None)
    assert TimerConfig.from_environ({}) == TimerConfig()


def test_timer_queue_orders_skips_cancelled_and_stays_compact() -> None:
    queue: TimerQueue[str] = TimerQueue()
    late = queue.schedule(2.0, "late")
    queue.schedule(1.0, "early")
    queue.cancel(late)
    assert queue.next_deadline() == 1.0
    assert queue.pop_due(0.5) is None
    assert queue.pop_due(5.0) == (1.0, 1, "early")
    assert queue.pop_due(5.0) is None
    assert queue.next_deadline() is None
    handles = [queue.schedule(float(i), "x") for i in range(10_000)]
    for handle in handles:
        queue.cancel(handle)
    assert len(queue) == 0
    assert queue.heap_size <= 64


# ---- INVITE client transaction (17.1.1) ------------------------------------------------


def test_invite_client_timer_a_doubles_without_cap_and_timer_b_reports_408() -> None:
    layer = TransactionLayer()
    invite = request()
    out = layer.send_request(invite, CARRIER, 0.0)
    assert [s.data for s in sends(out)] == [bytes(invite)]
    assert sends(out)[0].destination == CARRIER
    txn = layer.get(client_key(invite))
    assert isinstance(txn, InviteClientTransaction)
    assert txn.state is TransactionState.CALLING
    assert txn.deadline(Timer.A) == 0.5
    assert txn.deadline(Timer.B) == 32.0
    assert layer.tick(0.49) == []

    timeline = run(layer, 40.0)
    # RFC 3261 17.1.1.2: retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (A doubles).
    assert send_times(timeline) == A_TIMES
    assert all(s.data == bytes(invite) for _, s in timeline if isinstance(s, Send))
    timeout = [(t, o) for t, o in timeline if isinstance(o, TransactionTimeout)]
    assert len(timeout) == 1
    at, event = timeout[0]
    assert at == 32.0
    assert isinstance(event, TransactionTimeout)
    assert event.timer is Timer.B
    assert event.response is not None and event.response.status == 408
    assert of_type([o for _, o in timeline], TransactionTerminated)
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_invite_client_over_reliable_transport_never_retransmits() -> None:
    layer = TransactionLayer()
    layer.send_request(request(transport="TCP"), TCP_CARRIER, 0.0)
    timeline = run(layer, 40.0)
    assert send_times(timeline) == []
    assert [t for t, o in timeline if isinstance(o, TransactionTimeout)] == [32.0]


def test_reliable_flag_overrides_the_destination_transport() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), CARRIER, 0.0, reliable=True)
    assert send_times(run(layer, 40.0)) == []


def test_invite_client_provisional_stops_retransmission_and_timer_b() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, CARRIER, 0.0)
    layer.tick(0.5)
    out = layer.receive(reply(invite, 100), CARRIER, 0.6)
    assert [type(o) for o in out] == [ResponseReceived]
    out = layer.receive(reply(invite, 180), CARRIER, 0.7)
    assert isinstance(out[0], ResponseReceived) and out[0].response.status == 180
    txn = layer.get(client_key(invite))
    assert txn is not None and txn.state is TransactionState.PROCEEDING
    assert txn.running_timers == frozenset()
    assert run(layer, 100.0) == []
    assert len(layer) == 1


def test_invite_client_non_2xx_final_is_acknowledged_and_absorbed_until_timer_d() -> None:
    layer = TransactionLayer()
    invite = request(routes=["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
    key = client_key(invite)
    layer.send_request(invite, CARRIER, 0.0)
    layer.receive(reply(invite, 180), CARRIER, 0.1)
    busy = reply(invite, 486)
    out = layer.receive(busy, CARRIER, 1.0)
    assert [type(o) for o in out] == [Send, ResponseReceived]
    ack = parse_message(sends(out)[0].data)
    assert isinstance(ack, Request) and ack.method == "ACK"
    txn = layer.get(key)
    assert txn is not None and txn.state is TransactionState.COMPLETED
    assert txn.deadline(Timer.D) == 33.0

    # 17.1.1.2: each retransmitted final gets the ACK again and is not passed up.
    again = layer.receive(busy, CARRIER, 2.0)
    assert [s.data for s in sends(again)] == [sends(out)[0].data]
    assert of_type(again, ResponseReceived) == []

    assert layer.tick(32.9) == []
    assert [type(o) for o in layer.tick(33.0)] == [TransactionTerminated]
    assert len(layer) == 0


def test_ack_for_non_2xx_is_built_per_17_1_1_3() -> None:
    invite = request(
        routes=["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
        extra=['Authorization: Digest username="alice"', "X-Other: 1"],
    )
    invite.headers.add("Via", "SIP/2.0/UDP second.example.com;branch=z9hG4bKsecond")
    response = reply(invite, 404, to_tag="8321234356")
    ack = build_ack(invite, response)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.call_id == invite.call_id
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.to.tag == "8321234356"
    assert (ack.cseq.number, ack.cseq.method) == (314159, "ACK")
    # One Via, the INVITE's top one, so the server matches the ACK to its transaction.
    assert ack.headers.get_all("Via") == [invite.headers.get("Via")]
    assert ack.top_via.branch == "z9hG4bK776asdhds"
    assert ack.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert "X-Other" not in ack.headers
    assert ack.body == b""
    assert bytes(parse_message(bytes(ack))) == bytes(ack)


def test_invite_client_reliable_non_2xx_terminates_at_once() -> None:
    layer = TransactionLayer()
    invite = request(transport="TCP")
    layer.send_request(invite, TCP_CARRIER, 0.0)
    out = layer.receive(reply(invite, 503), TCP_CARRIER, 1.0)
    assert [type(o) for o in out] == [Send, ResponseReceived, TransactionTerminated]
    assert len(layer) == 0


def test_invite_client_2xx_is_accepted_and_retransmissions_reach_the_tu() -> None:
    layer = TransactionLayer()
    invite = request()
    key = client_key(invite)
    layer.send_request(invite, CARRIER, 0.0)
    ok = reply(invite, 200)
    out = layer.receive(ok, CARRIER, 0.2)
    # The 2xx ACK is the TU's (13.2.2.4): the transaction sends nothing.
    assert [type(o) for o in out] == [ResponseReceived]
    txn = layer.get(key)
    assert txn is not None and txn.state is TransactionState.ACCEPTED
    assert txn.deadline(Timer.M) == pytest.approx(32.2)
    # RFC 6026 8.4: retransmitted 2xx (and other forks' 2xx) are passed to the TU.
    fork = reply(invite, 200, to_tag="fork2")
    out = layer.receive(fork, CARRIER, 1.0)
    assert [type(o) for o in out] == [ResponseReceived]
    assert isinstance(out[0], ResponseReceived) and out[0].key == key
    # A late non-2xx is dropped.
    assert layer.receive(reply(invite, 487), CARRIER, 1.5) == []
    assert send_times(run(layer, 32.1)) == []
    assert [type(o) for o in layer.tick(32.2)] == [TransactionTerminated]
    # After Timer M a 2xx matches no transaction; the core still gets it (18.1.2).
    late = layer.receive(ok, CARRIER, 40.0)
    assert isinstance(late[0], ResponseReceived) and late[0].key is None


def test_response_matching_uses_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, CARRIER, 0.0)
    other_branch = request(branch="z9hG4bKother")
    out = layer.receive(reply(other_branch, 180), CARRIER, 0.1)
    assert isinstance(out[0], ResponseReceived) and out[0].key is None
    # Same branch, CSeq method CANCEL: a response to a CANCEL, not to the INVITE (17.1.3).
    cancel = build_cancel(invite)
    out = layer.receive(reply(cancel, 200), CARRIER, 0.2)
    assert isinstance(out[0], ResponseReceived) and out[0].key is None
    txn = layer.get(client_key(invite))
    assert txn is not None and txn.state is TransactionState.CALLING


def test_response_without_branch_goes_to_the_core() -> None:
    layer = TransactionLayer()
    out = layer.receive(reply(request(branch=None), 200), CARRIER, 0.0)
    assert isinstance(out[0], ResponseReceived) and out[0].key is None


def test_send_request_refuses_ack_duplicates_and_branchless_requests() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, CARRIER, 0.0)
    with pytest.raises(TransactionError, match="already exists"):
        layer.send_request(invite, CARRIER, 0.0)
    with pytest.raises(TransactionError, match="ACK"):
        layer.send_request(request("ACK"), CARRIER, 0.0)
    with pytest.raises(TransactionError, match="z9hG4bK"):
        layer.send_request(request(branch="rfc2543branch"), CARRIER, 0.0)
    with pytest.raises(TransactionError, match="z9hG4bK"):
        layer.send_request(request(branch=None), CARRIER, 0.0)


def test_send_stateless_is_a_plain_send() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKack")
    assert layer.send_stateless(ack, CARRIER) == [Send(bytes(ack), CARRIER, ack, None)]
    assert len(layer) == 0


def test_client_transport_error_synthesizes_503_and_terminates() -> None:
    layer = TransactionLayer()
    invite = request()
    key = client_key(invite)
    layer.send_request(invite, CARRIER, 0.0)
    out = layer.transport_error(key, 0.1, "ICMP port unreachable")
    assert [type(o) for o in out] == [TransportError, TransactionTerminated]
    error = out[0]
    assert isinstance(error, TransportError)
    assert error.reason == "ICMP port unreachable"
    assert error.response is not None and error.response.status == 503
    assert len(layer) == 0 and layer.next_deadline() is None
    assert layer.transport_error(key, 0.2) == []


def test_transport_error_to_a_peer_ends_every_transaction_sending_there() -> None:
    layer = TransactionLayer()
    layer.send_request(request(branch="z9hG4bK1"), TCP_CARRIER, 0.0)
    layer.send_request(request("OPTIONS", branch="z9hG4bK2"), TCP_CARRIER, 0.0)
    layer.send_request(request(branch="z9hG4bK3"), CARRIER, 0.0)
    out = layer.transport_error_to(TCP_CARRIER, 1.0, "connection reset")
    assert len(of_type(out, TransportError)) == 2
    assert len(layer) == 1


# ---- non-INVITE client transaction (17.1.2) --------------------------------------------


def test_non_invite_client_timer_e_doubles_to_t2_and_timer_f_reports_408() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    layer.send_request(options, CARRIER, 0.0)
    timeline = run(layer, 40.0)
    # 17.1.2.2: E fires at T1, then doubles until T2 (4 s): 0.5, 1.5, 3.5, 7.5, 11.5, ...
    assert send_times(timeline) == CAPPED_TIMES
    timeouts = [(t, o) for t, o in timeline if isinstance(o, TransactionTimeout)]
    assert [t for t, _ in timeouts] == [32.0]
    event = timeouts[0][1]
    assert isinstance(event, TransactionTimeout) and event.timer is Timer.F
    assert event.response is not None and event.response.status == 408
    assert len(layer) == 0


def test_non_invite_client_in_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    bye = request("BYE", to_tag="a6c85cf")
    layer.send_request(bye, CARRIER, 0.0)
    assert send_times(run(layer, 0.5)) == [0.5]
    out = layer.receive(reply(bye, 100), CARRIER, 0.7)
    assert [type(o) for o in out] == [ResponseReceived]
    txn = layer.get(client_key(bye))
    assert txn is not None and txn.state is TransactionState.PROCEEDING
    # E keeps its pending deadline (1.5), then resets to T2 each time (17.1.2.2).
    assert send_times(run(layer, 14.0)) == [1.5, 5.5, 9.5, 13.5]


def test_non_invite_client_final_completes_and_absorbs_retransmissions_for_t4() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    key = client_key(options)
    layer.send_request(options, CARRIER, 0.0)
    ok = reply(options, 200)
    out = layer.receive(ok, CARRIER, 0.3)
    assert [type(o) for o in out] == [ResponseReceived]
    txn = layer.get(key)
    assert txn is not None and txn.state is TransactionState.COMPLETED
    assert txn.running_timers == frozenset({Timer.K})
    assert txn.deadline(Timer.K) == pytest.approx(5.3)
    assert layer.receive(ok, CARRIER, 1.0) == []
    assert [type(o) for _, o in run(layer, 10.0)] == [TransactionTerminated]


def test_non_invite_client_over_reliable_transport() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS", transport="TCP")
    layer.send_request(options, TCP_CARRIER, 0.0)
    txn = layer.get(client_key(options))
    assert txn is not None and txn.running_timers == frozenset({Timer.F})
    out = layer.receive(reply(options, 200), TCP_CARRIER, 0.1)
    # Timer K is zero on reliable transports: terminated within the same call.
    assert [type(o) for o in out] == [ResponseReceived, TransactionTerminated]
    assert len(layer) == 0


# ---- INVITE server transaction (17.2.1) ------------------------------------------------


def test_invite_server_sends_100_trying_after_200_ms() -> None:
    layer = TransactionLayer()
    invite = request()
    out = layer.receive(invite, PEER, 0.0)
    assert [type(o) for o in out] == [RequestReceived]
    assert layer.tick(0.19) == []
    out = layer.tick(0.2)
    (trying,) = sent(out)
    assert isinstance(trying, Response) and trying.status == 100
    assert trying.to.tag is None  # 8.2.6.1: no tag on a 100 built by the transaction
    assert sends(out)[0].destination == PEER


def test_invite_server_100_trying_copies_timestamp() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=0))
    out = layer.receive(request(extra=["Timestamp: 54"]), PEER, 0.0)
    (trying,) = sent(out)
    assert isinstance(trying, Response) and trying.headers.get("Timestamp") == "54"


def test_invite_server_trying_policies() -> None:
    immediate = TransactionLayer(TimerConfig(trying_delay=0))
    out = immediate.receive(request(), PEER, 0.0)
    assert [type(o) for o in out] == [Send, RequestReceived]
    never = TransactionLayer(TimerConfig(trying_delay=None))
    out = never.receive(request(), PEER, 0.0)
    assert [type(o) for o in out] == [RequestReceived]
    assert never.next_deadline() is None


def test_invite_server_tu_provisional_within_200_ms_replaces_the_100() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    ringing = make_response(invite, 180, to_tag="as9f7")
    out = layer.respond(key, ringing, 0.1)
    assert [s.message for s in sends(out)] == [ringing]
    assert run(layer, 1.0) == []


def test_invite_server_absorbs_retransmitted_invites_and_replays_the_provisional() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    invite = request()
    key = server_txn(layer, invite)
    # Before any response: absorbed, and the TU is not told twice.
    assert layer.receive(invite, PEER, 0.5) == []
    ringing = make_response(invite, 180, to_tag="as9f7")
    layer.respond(key, ringing, 0.6)
    out = layer.receive(invite, PEER, 1.0)
    assert [s.message for s in sends(out)] == [ringing]
    assert of_type(out, RequestReceived) == []
    assert layer.server_count == 1


def test_invite_server_non_2xx_timer_g_doubles_to_t2_and_timer_h_times_out() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    busy = make_response(invite, 486, to_tag="as9f7")
    out = layer.respond(key, busy, 0.0)
    assert [s.message for s in sends(out)] == [busy]
    txn = layer.get(key)
    assert txn is not None and txn.state is TransactionState.COMPLETED
    timeline = run(layer, 40.0)
    assert send_times(timeline) == CAPPED_TIMES
    assert all(o.message == busy for _, o in timeline if isinstance(o, Send))
    timeouts = [(t, o) for t, o in timeline if isinstance(o, TransactionTimeout)]
    assert len(timeouts) == 1 and timeouts[0][0] == 32.0
    event = timeouts[0][1]
    assert isinstance(event, TransactionTimeout)
    assert event.timer is Timer.H and event.response is None
    assert len(layer) == 0


def test_invite_server_ack_confirms_and_timer_i_absorbs_acks() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    busy = make_response(invite, 486, to_tag="as9f7")
    layer.respond(key, busy, 0.0)
    # A retransmitted INVITE in Completed gets the final again.
    assert [s.message for s in sends(layer.receive(invite, PEER, 0.2))] == [busy]
    assert send_times(run(layer, 0.5)) == [0.5]
    ack = build_ack(invite, reply(invite, 486, to_tag="as9f7"))
    assert layer.receive(ack, PEER, 1.0) == []  # absorbed: the ACK is the transaction's
    txn = layer.get(key)
    assert txn is not None and txn.state is TransactionState.CONFIRMED
    assert txn.running_timers == frozenset({Timer.I})
    assert txn.deadline(Timer.I) == 6.0
    assert layer.receive(ack, PEER, 2.0) == []
    assert layer.receive(invite, PEER, 2.5) == []
    assert [type(o) for _, o in run(layer, 10.0)] == [TransactionTerminated]


def test_invite_server_over_reliable_transport_has_no_g_and_zero_i() -> None:
    layer = TransactionLayer()
    invite = request(transport="TCP", sent_by="192.0.2.10:49152")
    key = server_txn(layer, invite, TCP_PEER)
    layer.respond(key, make_response(invite, 603, to_tag="x"), 0.0)
    txn = layer.get(key)
    assert txn is not None and txn.running_timers == frozenset({Timer.H})
    out = layer.receive(build_ack(invite, reply(invite, 603, to_tag="x")), TCP_PEER, 0.1)
    assert [type(o) for o in out] == [TransactionTerminated]
    assert len(layer) == 0


def test_invite_server_2xx_is_retransmitted_until_the_ack_arrives() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    ok = make_response(invite, 200, to_tag="as9f7")
    layer.respond(key, ok, 0.0)
    txn = layer.get(key)
    assert isinstance(txn, InviteServerTransaction)
    assert txn.state is TransactionState.ACCEPTED
    # 13.3.1.4: T1, doubling to T2.
    assert send_times(run(layer, 4.0)) == [0.5, 1.5, 3.5]
    # RFC 6026 8.7: a retransmitted INVITE in Accepted is absorbed, not a new call.
    assert layer.receive(invite, PEER, 4.5) == []
    assert layer.server_count == 1
    # The ACK for a 2xx has its own branch (13.2.2.4) and goes to the TU.
    ack = request("ACK", branch="z9hG4bKnewack", to_tag="as9f7")
    out = layer.receive(ack, PEER, 5.0)
    assert out == [RequestReceived(ack, PEER, None, key)]
    assert txn.ack_received
    assert layer.accepted_index_size == 1
    # No more 2xx; Timer L ends the transaction quietly.
    timeline = run(layer, 40.0)
    assert [type(o) for _, o in timeline] == [TransactionTerminated]
    assert timeline[0][0] == 32.0
    assert layer.accepted_index_size == 0


def test_invite_server_lets_its_responses_go_once_the_2xx_is_acknowledged() -> None:
    # What Accepted still has to do after the ACK needs no response: a call's server
    # transaction waits out Timer L holding only its key and the To tag.
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    layer.respond(key, make_response(invite, 180, to_tag="as9f7"), 0.0)
    layer.respond(key, make_response(invite, 200, to_tag="as9f7"), 0.1)
    txn = layer.get(key)
    assert isinstance(txn, InviteServerTransaction)
    assert txn.last_response is not None and txn.last_response.status == 200
    ack = request("ACK", branch="z9hG4bKnewack", to_tag="as9f7")
    layer.receive(ack, PEER, 0.2)
    assert txn.ack_received and txn.last_response is None
    assert txn.to_tag == "as9f7"
    assert layer.receive(invite, PEER, 0.3) == []  # still absorbed
    assert send_times(run(layer, 4.0)) == []  # nothing retransmitted
    # A 2xx the TU sends again is still sent (RFC 6026 8.7).
    again = layer.respond(key, make_response(invite, 200, to_tag="as9f7"), 4.5)
    assert [type(o) for o in again] == [Send]


def test_invite_server_2xx_without_ack_times_out_with_timer_l() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    layer.respond(key, make_response(invite, 200, to_tag="as9f7"), 0.0)
    timeline = run(layer, 40.0)
    assert send_times(timeline) == CAPPED_TIMES
    timeouts = [o for _, o in timeline if isinstance(o, TransactionTimeout)]
    assert len(timeouts) == 1 and timeouts[0].timer is Timer.L


def test_invite_server_2xx_retransmission_over_reliable_transport_is_a_policy() -> None:
    invite = request(transport="TCP", sent_by="192.0.2.10:49152")
    rfc = TransactionLayer()
    key = server_txn(rfc, invite, TCP_PEER)
    rfc.respond(key, make_response(invite, 200, to_tag="t"), 0.0)
    assert send_times(run(rfc, 2.0)) == [0.5, 1.5]
    quiet = TransactionLayer(TimerConfig(retransmit_2xx_on_reliable=False))
    key = server_txn(quiet, invite, TCP_PEER)
    quiet.respond(key, make_response(invite, 200, to_tag="t"), 0.0)
    assert send_times(run(quiet, 40.0)) == []


def test_invite_server_ack_for_2xx_with_other_to_tag_does_not_stop_retransmission() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    layer.respond(key, make_response(invite, 200, to_tag="as9f7"), 0.0)
    out = layer.receive(request("ACK", branch="z9hG4bKa", to_tag="other"), PEER, 0.1)
    assert isinstance(out[0], RequestReceived) and out[0].invite_key is None
    assert send_times(run(layer, 0.5)) == [0.5]


def test_invite_server_accepts_further_2xx_from_the_tu_in_accepted() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    ok = make_response(invite, 200, to_tag="as9f7")
    layer.respond(key, ok, 0.0)
    assert [s.message for s in sends(layer.respond(key, ok, 0.1))] == [ok]
    with pytest.raises(TransactionError, match="Accepted"):
        layer.respond(key, make_response(invite, 486, to_tag="as9f7"), 0.2)


def test_respond_refuses_unknown_keys_bad_states_and_bad_statuses() -> None:
    layer = TransactionLayer()
    invite = request()
    key = server_txn(layer, invite)
    with pytest.raises(TransactionError, match="no server transaction"):
        layer.respond(client_key(invite), make_response(invite, 200), 0.0)
    layer.respond(key, make_response(invite, 486, to_tag="t"), 0.0)
    with pytest.raises(TransactionError, match="Completed"):
        layer.respond(key, make_response(invite, 200, to_tag="t"), 0.1)
    options = request("OPTIONS", branch="z9hG4bKopt")
    opt_key = server_txn(layer, options)
    bogus = make_response(options, 200)
    bogus.status = 700
    with pytest.raises(TransactionError, match="700"):
        layer.respond(opt_key, bogus, 0.0)


def test_server_transport_error_terminates_without_a_response() -> None:
    layer = TransactionLayer()
    key = server_txn(layer, request())
    out = layer.transport_error(key, 0.1, "connection closed")
    assert [type(o) for o in out] == [TransportError, TransactionTerminated]
    assert isinstance(out[0], TransportError) and out[0].response is None


# ---- non-INVITE server transaction (17.2.2) --------------------------------------------


def test_non_invite_server_trying_absorbs_then_replays_the_last_response() -> None:
    layer = TransactionLayer()
    bye = request("BYE", to_tag="as9f7")
    key = server_txn(layer, bye)
    assert layer.next_deadline() is None  # no 100 Trying for non-INVITE
    assert layer.receive(bye, PEER, 0.1) == []  # Trying: discarded
    trying = make_response(bye, 100)
    layer.respond(key, trying, 0.2)
    assert layer.get(key) is not None
    assert [s.message for s in sends(layer.receive(bye, PEER, 0.3))] == [trying]
    ok = make_response(bye, 200)
    out = layer.respond(key, ok, 0.4)
    assert [s.message for s in sends(out)] == [ok]
    txn = layer.get(key)
    assert txn is not None and txn.state is TransactionState.COMPLETED
    assert txn.deadline(Timer.J) == pytest.approx(32.4)
    assert [s.message for s in sends(layer.receive(bye, PEER, 10.0))] == [ok]
    with pytest.raises(TransactionError, match="Completed"):
        layer.respond(key, ok, 10.1)
    timeline = run(layer, 40.0)
    assert [type(o) for _, o in timeline] == [TransactionTerminated]
    assert timeline[0][0] == pytest.approx(32.4)


def test_non_invite_server_over_reliable_transport_ends_with_the_final() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS", transport="TCP", sent_by="192.0.2.10:49152")
    key = server_txn(layer, options, TCP_PEER)
    out = layer.respond(key, make_response(options, 200, to_tag="t"), 0.0)
    assert [type(o) for o in out] == [Send, TransactionTerminated]
    assert sends(out)[0].destination == TCP_PEER
    # A late retransmission now starts a new transaction, as RFC 3261 intends (J = 0).
    assert of_type(layer.receive(options, TCP_PEER, 1.0), RequestReceived)


# ---- matching (17.2.3) -----------------------------------------------------------------


def test_server_matching_uses_branch_sent_by_and_method() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    invite = request()
    server_txn(layer, invite)
    same_branch_other_host = request(sent_by="192.0.2.99:5060")
    assert of_type(layer.receive(same_branch_other_host, PEER, 0.1), RequestReceived)
    same_branch_other_method = request("OPTIONS")
    assert of_type(layer.receive(same_branch_other_method, PEER, 0.1), RequestReceived)
    # A missing port is the default port (5060), so these two match each other.
    default_port = request(sent_by="192.0.2.10")
    assert layer.receive(default_port, PEER, 0.2) == []
    assert layer.server_count == 3


def test_server_key_shapes() -> None:
    invite = request()
    key = server_key(invite)
    assert key == TransactionKey(Role.SERVER, "INVITE", "z9hG4bK776asdhds", "192.0.2.10:5060")
    assert server_key(request("ACK")) == key  # ACK belongs to the INVITE's transaction
    assert server_key(request("CANCEL")).method == "CANCEL"
    assert server_key(request(sent_by="[2001:db8::1]:5070")).sent_by == "2001:db8::1:5070"
    assert server_key(request(transport="TLS", sent_by="Host.Example.COM")).sent_by == (
        "host.example.com:5061"
    )
    assert client_key(invite) == TransactionKey(Role.CLIENT, "INVITE", "z9hG4bK776asdhds")


def test_rfc2543_fallback_matches_without_magic_cookie() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    invite = request(branch="1234abcd")
    key = server_txn(layer, invite)
    assert key.branch == "" and key.rfc2543
    assert layer.receive(request(branch="1234abcd"), PEER, 0.1) == []  # retransmission
    # Each of Request-URI, From tag, Call-ID, CSeq and top Via takes part in the match.
    for different in (
        request(branch="1234abcd", uri="sip:carol@biloxi.example.com"),
        request(branch="1234abcd", from_tag="other"),
        request(branch="1234abcd", call_id="other-call"),
        request(branch="1234abcd", cseq=314160),
        request(branch="1234abcd", sent_by="192.0.2.11:5060"),
    ):
        assert of_type(layer.receive(different, PEER, 0.2), RequestReceived)
    assert layer.server_count == 6


def test_rfc2543_fallback_without_any_branch() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    server_txn(layer, request("OPTIONS", branch=None))
    assert layer.receive(request("OPTIONS", branch=None), PEER, 0.1) == []
    assert layer.server_count == 1


def test_rfc2543_ack_matches_by_the_to_tag_of_the_response() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    invite = request(branch=None)
    key = server_txn(layer, invite)
    layer.respond(key, make_response(invite, 404, to_tag="resp-tag"), 0.0)
    wrong = request("ACK", branch=None, to_tag="other-tag")
    out = layer.receive(wrong, PEER, 0.1)
    assert isinstance(out[0], RequestReceived) and out[0].invite_key is None
    ack = request("ACK", branch=None, to_tag="resp-tag")
    assert layer.receive(ack, PEER, 0.2) == []
    txn = layer.get(key)
    assert txn is not None and txn.state is TransactionState.CONFIRMED


def test_rfc2543_ack_for_2xx_reusing_the_invite_via_reaches_the_tu() -> None:
    layer = TransactionLayer(TimerConfig(trying_delay=None))
    invite = request(branch=None)
    key = server_txn(layer, invite)
    layer.respond(key, make_response(invite, 200, to_tag="resp-tag"), 0.0)
    ack = request("ACK", branch=None, to_tag="resp-tag")
    assert layer.receive(ack, PEER, 0.1) == [RequestReceived(ack, PEER, None, key)]
    assert send_times(run(layer, 5.0)) == []


def test_stray_ack_goes_to_the_tu_without_a_transaction() -> None:
    layer = TransactionLayer()
    ack = request("ACK", to_tag="x")
    assert layer.receive(ack, PEER, 0.0) == [RequestReceived(ack, PEER, None, None)]
    assert len(layer) == 0


def test_unusable_messages_are_discarded_not_raised() -> None:
    layer = TransactionLayer()
    headers = Headers([("Via", "garbage"), ("CSeq", "1 INVITE"), ("Call-ID", "c")])
    bad_request = Request("INVITE", "sip:b@example.com", headers)
    out = layer.receive(bad_request, PEER, 0.0)
    assert [type(o) for o in out] == [MessageDiscarded]
    bad_response = Response(200, "OK", Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")]))
    out = layer.receive(bad_response, PEER, 0.0)
    assert [type(o) for o in out] == [MessageDiscarded]
    assert len(layer) == 0


def test_non_2xx_without_to_header_cannot_be_acknowledged() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, CARRIER, 0.0)
    response = reply(invite, 486)
    response.headers.remove("To")
    out = layer.receive(response, CARRIER, 0.1)
    assert [type(o) for o in out] == [MessageDiscarded]
    txn = layer.get(client_key(invite))
    assert txn is not None and txn.state is TransactionState.CALLING


def test_response_destination_follows_18_2_2_and_rport() -> None:
    source = Peer("UDP", "203.0.113.7", 34567)
    plain = request(sent_by="192.0.2.10:5062")
    assert response_destination(plain, source) == Peer("UDP", "203.0.113.7", 5062)
    rport = request(sent_by="192.0.2.10:5062", via_params=";rport")
    assert response_destination(rport, source) == source
    maddr = request(via_params=";maddr=239.255.255.1")
    assert response_destination(maddr, source) == Peer("UDP", "239.255.255.1", 5060)
    assert response_destination(plain, TCP_PEER) == TCP_PEER


def test_server_responses_go_to_the_response_destination() -> None:
    layer = TransactionLayer()
    source = Peer("UDP", "203.0.113.7", 34567)
    invite = request(via_params=";rport")
    key = server_txn(layer, invite, source)
    out = layer.respond(key, make_response(invite, 180, to_tag="t"), 0.0)
    assert sends(out)[0].destination == source
    assert sends(out)[0].key == key


# ---- CANCEL (9) ------------------------------------------------------------------------


def test_build_cancel_per_9_1() -> None:
    invite = request(routes=["<sip:p1.example.com;lr>"])
    cancel = build_cancel(invite, reason='SIP;cause=480;text="No answer"')
    assert cancel.method == "CANCEL"
    assert cancel.uri == invite.uri
    assert cancel.headers.get("To") == invite.headers.get("To")  # no tag added
    assert cancel.headers.get("From") == invite.headers.get("From")
    assert cancel.call_id == invite.call_id
    assert (cancel.cseq.number, cancel.cseq.method) == (314159, "CANCEL")
    assert cancel.headers.get_all("Via") == [invite.headers.get("Via")]
    assert cancel.headers.get_all("Route") == ["<sip:p1.example.com;lr>"]
    assert cancel.headers.get("Reason") == 'SIP;cause=480;text="No answer"'


def test_cancel_in_proceeding_starts_a_cancel_transaction() -> None:
    layer = TransactionLayer()
    invite = request()
    key = client_key(invite)
    layer.send_request(invite, CARRIER, 0.0)
    layer.receive(reply(invite, 180), CARRIER, 0.1)
    out = layer.cancel(key, 1.0)
    (cancel,) = sent(out)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert sends(out)[0].destination == CARRIER
    cancel_key = client_key(cancel)
    assert cancel_key == TransactionKey(Role.CLIENT, "CANCEL", key.branch)
    assert layer.cancel(key, 1.1) == []  # once is enough
    # The CANCEL is retransmitted as a non-INVITE transaction (E), the INVITE is not.
    assert send_times(run(layer, 1.5)) == [1.5]
    out = layer.receive(reply(cancel, 200), CARRIER, 1.6)
    assert isinstance(out[0], ResponseReceived) and out[0].key == cancel_key
    out = layer.receive(reply(invite, 487), CARRIER, 1.7)
    assert isinstance(out[-1], ResponseReceived) and out[-1].key == key
    (ack,) = sent(out)
    assert isinstance(ack, Request) and ack.method == "ACK"


def test_cancel_before_any_provisional_waits_for_one() -> None:
    layer = TransactionLayer()
    invite = request()
    key = client_key(invite)
    layer.send_request(invite, CARRIER, 0.0)
    # 9.1: no CANCEL while Calling; it goes out with the first provisional response.
    assert layer.cancel(key, 0.1, reason="SIP;cause=487") == []
    out = layer.receive(reply(invite, 100), CARRIER, 0.2)
    assert [type(o) for o in out] == [ResponseReceived, Send]
    cancel = sent(out)[0]
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.headers.get("Reason") == "SIP;cause=487"


def test_cancel_wanted_while_calling_is_dropped_on_a_final_response() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, CARRIER, 0.0)
    layer.cancel(client_key(invite), 0.1)
    out = layer.receive(reply(invite, 200), CARRIER, 0.2)
    assert [type(o) for o in out] == [ResponseReceived]
    assert layer.client_count == 1


def test_cancel_after_a_final_response_has_no_effect() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, CARRIER, 0.0)
    layer.receive(reply(invite, 200), CARRIER, 0.1)
    assert layer.cancel(client_key(invite), 0.2) == []
    with pytest.raises(TransactionError):
        layer.cancel(client_key(request("OPTIONS", branch="z9hG4bKnone")), 0.2)


def test_cancelled_invite_without_final_is_given_up_after_64_t1() -> None:
    layer = TransactionLayer()
    invite = request()
    key = client_key(invite)
    layer.send_request(invite, CARRIER, 0.0)
    layer.receive(reply(invite, 180), CARRIER, 0.1)
    cancel = sent(layer.cancel(key, 1.0))[0]
    assert isinstance(cancel, Request)
    layer.receive(reply(cancel, 200), CARRIER, 1.1)
    timeline = run(layer, 40.0)
    timeouts = [(t, o) for t, o in timeline if isinstance(o, TransactionTimeout)]
    assert len(timeouts) == 1
    at, event = timeouts[0]
    assert at == 33.0
    assert isinstance(event, TransactionTimeout) and event.key == key
    assert event.timer is Timer.CANCEL
    assert event.response is not None and event.response.status == 487
    assert len(layer) == 0


def test_server_matches_cancel_to_its_invite_and_answers_200_and_487() -> None:
    layer = TransactionLayer()
    invite = request()
    invite_key = server_txn(layer, invite)
    layer.respond(invite_key, make_response(invite, 180, to_tag="ring-tag"), 0.1)
    cancel = build_cancel(invite)
    out = layer.receive(cancel, PEER, 1.0)
    (event,) = of_type(out, RequestReceived)
    assert isinstance(event, RequestReceived)
    assert event.key is not None and event.key.method == "CANCEL"
    assert event.invite_key == invite_key
    out = layer.answer_cancel(event.key, 1.1)
    responses = [m for m in sent(out) if isinstance(m, Response)]
    assert [(r.status, r.cseq.method) for r in responses] == [(200, "CANCEL"), (487, "INVITE")]
    # 9.2: the same To tag in both, the one already used in the 180.
    assert {r.to.tag for r in responses} == {"ring-tag"}
    txn = layer.get(invite_key)
    assert txn is not None
    assert txn.state == "Completed"
    ack = build_ack(invite, reply(invite, 487, to_tag="ring-tag"))
    assert layer.receive(ack, PEER, 1.2) == []
    assert txn.state is TransactionState.CONFIRMED


def test_cancel_for_an_answered_invite_gets_200_only() -> None:
    layer = TransactionLayer()
    invite = request()
    invite_key = server_txn(layer, invite)
    layer.respond(invite_key, make_response(invite, 200, to_tag="t"), 0.1)
    event = of_type(layer.receive(build_cancel(invite), PEER, 0.2), RequestReceived)[0]
    assert isinstance(event, RequestReceived) and event.key is not None
    out = layer.answer_cancel(event.key, 0.3)
    assert [(m.status) for m in sent(out) if isinstance(m, Response)] == [200]


def test_cancel_matching_no_invite_gets_481() -> None:
    layer = TransactionLayer()
    out = layer.receive(build_cancel(request()), PEER, 0.0)
    event = of_type(out, RequestReceived)[0]
    assert isinstance(event, RequestReceived)
    assert event.invite_key is None and event.key is not None
    (response,) = sent(layer.answer_cancel(event.key, 0.1))
    assert isinstance(response, Response) and response.status == 481
    with pytest.raises(TransactionError):
        layer.answer_cancel(server_key(request("OPTIONS")), 0.2)


def test_rfc2543_cancel_matches_its_invite() -> None:
    layer = TransactionLayer()
    invite = request(branch=None)
    invite_key = server_txn(layer, invite)
    event = of_type(layer.receive(build_cancel(invite), PEER, 0.1), RequestReceived)[0]
    assert isinstance(event, RequestReceived) and event.invite_key == invite_key


# ---- bounded state ---------------------------------------------------------------------


def test_server_transactions_beyond_the_cap_are_rejected_with_503() -> None:
    layer = TransactionLayer(max_server_transactions=2)
    first = request("OPTIONS", branch="z9hG4bK1")
    key = server_txn(layer, first)
    server_txn(layer, request("OPTIONS", branch="z9hG4bK2"))
    third = request("OPTIONS", branch="z9hG4bK3")
    out = layer.receive(third, PEER, 0.0)
    assert [type(o) for o in out] == [Send, ServerTransactionRejected]
    (response,) = sent(out)
    assert isinstance(response, Response) and response.status == 503
    assert response.headers.get("Retry-After") == "5"
    assert response.to.tag
    assert layer.server_count == 2
    # Retransmissions of live transactions are still matched, and ACKs are never refused.
    assert layer.receive(first, PEER, 0.1) == []
    assert of_type(layer.receive(request("ACK", branch="z9hG4bKa"), PEER, 0.1), RequestReceived)
    # A finished transaction frees its place.
    layer.respond(key, make_response(first, 200, to_tag="t"), 0.2)
    run(layer, 40.0)
    assert of_type(layer.receive(third, PEER, 41.0), RequestReceived)


def test_terminated_transactions_are_forgotten_and_the_timer_heap_stays_small() -> None:
    layer = TransactionLayer()
    for i in range(2000):
        options = request("OPTIONS", branch=f"z9hG4bK{i}")
        key = server_txn(layer, options)
        layer.respond(key, make_response(options, 200, to_tag="t"), float(i) / 100)
    run(layer, 100.0)
    assert len(layer) == 0
    assert layer.timer_count == 0
    assert layer.timer_heap_size == 0


def test_layer_rejects_a_zero_cap() -> None:
    with pytest.raises(ValueError):
        TransactionLayer(max_server_transactions=0)


def test_late_tick_fires_once_and_reschedules_from_now() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), CARRIER, 0.0)
    out = layer.tick(10.0)  # the adapter slept through A at 0.5
    assert len(sends(out)) == 1
    txn = layer.get(client_key(request()))
    assert txn is not None and txn.deadline(Timer.A) == 11.0
