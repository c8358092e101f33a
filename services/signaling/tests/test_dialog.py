"""RFC 3261 section 12 dialogs: creation, route sets, in-dialog requests, refreshes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from trunkline.signaling.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogLayer,
    DialogRole,
    DialogState,
    addr_uri,
)
from trunkline.signaling.sip.message import Request, Response, make_response, parse_message

CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"
ALICE_CONTACT = "sip:alice@192.0.2.10:5060"
BOB_CONTACT = "sip:bob@192.0.2.20:5060;transport=udp"


def invite(
    method: str = "INVITE",
    *,
    uri: str = "sip:bob@biloxi.example.com",
    cseq: int = 314159,
    from_tag: str | None = "1928301774",
    to_tag: str | None = None,
    contact: str | None = f"<{ALICE_CONTACT}>",
    record_routes: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        *[f"Record-Route: {rr}" for rr in record_routes],
        "From: Alice <sip:alice@atlanta.example.com>" + (f";tag={from_tag}" if from_tag else ""),
        "To: Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {CALL_ID}",
        f"CSeq: {cseq} {method}",
        *([f"Contact: {contact}"] if contact else []),
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def answer(
    req: Request,
    status: int,
    *,
    to_tag: str | None = "a6c85cf",
    contact: str | None = f"<{BOB_CONTACT}>",
    record_routes: Sequence[str] | None = None,
) -> Response:
    response = make_response(req, status, to_tag=to_tag)
    # 12.1.1: the UAS copies Record-Route into dialog-creating responses.
    routes = req.headers.get_all("Record-Route") if record_routes is None else record_routes
    for rr in routes:
        response.headers.add("Record-Route", rr)
    if contact:
        response.headers.add("Contact", contact)
    parsed = parse_message(bytes(response))
    assert isinstance(parsed, Response)
    return parsed


VIA = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKindialog"
PROXIES = ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr;transport=tcp>"]


# ---- addr_uri --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "uri"),
    [
        ("<sip:p1.example.com;lr>", "sip:p1.example.com;lr"),
        ('"A <weird> one" <sip:a@b.com;lr>;tag=1', "sip:a@b.com;lr"),
        ("sip:a@b.com;tag=1", "sip:a@b.com"),
        ('"quote \\" inside" <sip:x@y>', "sip:x@y"),
        ("  <sips:x@y:5061>  ", "sips:x@y:5061"),
    ],
)
def test_addr_uri_takes_the_uri_of_name_addr_and_addr_spec(value: str, uri: str) -> None:
    assert addr_uri(value) == uri


@pytest.mark.parametrize("value", ['"unterminated <sip:a@b>', "<sip:a@b"])
def test_addr_uri_rejects_unterminated_values(value: str) -> None:
    with pytest.raises(DialogError):
        addr_uri(value)


# ---- UAC dialogs (12.1.2) --------------------------------------------------------------


def test_uac_dialog_from_2xx() -> None:
    request = invite()
    ok = answer(request, 200, record_routes=PROXIES)
    dialog = Dialog.from_uac(request, ok)
    assert dialog.role is DialogRole.UAC
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId(CALL_ID, "1928301774", "a6c85cf")
    # 12.1.2: the route set is the Record-Route list reversed, URI parameters kept.
    assert dialog.route_set == ["sip:p2.example.com;lr;transport=tcp", "sip:p1.example.com;lr"]
    assert dialog.remote_target == BOB_CONTACT
    assert dialog.local_seq == 314159
    assert dialog.remote_seq is None
    assert dialog.local_target == ALICE_CONTACT
    assert str(dialog.local_party.uri) == "sip:alice@atlanta.example.com"
    assert dialog.local_party.params == {}
    assert str(dialog.remote_party.uri) == "sip:bob@biloxi.example.com"
    assert not dialog.secure


def test_uac_dialog_is_secure_only_for_sips_over_tls() -> None:
    request = invite(uri="sips:bob@biloxi.example.com")
    ok = answer(request, 200)
    assert Dialog.from_uac(request, ok, secure_transport=True).secure
    assert not Dialog.from_uac(request, ok, secure_transport=False).secure
    assert not Dialog.from_uac(invite(), answer(invite(), 200), secure_transport=True).secure


@pytest.mark.parametrize(
    ("status", "to_tag"), [(100, "a6c85cf"), (180, None), (200, None), (486, "a6c85cf")]
)
def test_uac_dialog_needs_a_101_to_299_with_a_to_tag(status: int, to_tag: str | None) -> None:
    request = invite()
    with pytest.raises(DialogError):
        Dialog.from_uac(request, answer(request, status, to_tag=to_tag))


def test_uac_dialog_without_contact_in_the_response_targets_the_request_uri() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 200, contact=None))
    assert dialog.remote_target == "sip:bob@biloxi.example.com"


def test_uac_dialog_refuses_a_malformed_contact() -> None:
    request = invite()
    with pytest.raises(DialogError, match="Contact"):
        Dialog.from_uac(request, answer(request, 200, contact="<sip:>"))


def test_early_dialog_from_1xx_is_confirmed_by_2xx_with_recomputed_route_set() -> None:
    layer = DialogLayer()
    request = invite()
    ringing = answer(request, 180, record_routes=["<sip:p1.example.com;lr>"])
    dialog = layer.on_response(request, ringing)
    assert dialog is not None
    assert dialog.state == "early"
    assert dialog.route_set == ["sip:p1.example.com;lr"]
    assert dialog.local_invite_pending == 314159
    ok = answer(request, 200, record_routes=PROXIES, contact="<sip:bob@192.0.2.99>")
    assert layer.on_response(request, ok) is dialog
    assert dialog.state is DialogState.CONFIRMED
    # 13.2.2.4: the route set is recomputed from the 2xx.
    assert dialog.route_set == ["sip:p2.example.com;lr;transport=tcp", "sip:p1.example.com;lr"]
    assert dialog.remote_target == "sip:bob@192.0.2.99"
    assert dialog.local_invite_pending is None
    assert len(layer) == 1


def test_provisional_without_to_tag_creates_no_dialog() -> None:
    layer = DialogLayer()
    request = invite()
    assert layer.on_response(request, answer(request, 180, to_tag=None)) is None
    assert layer.on_response(request, answer(request, 100, to_tag=None)) is None
    assert len(layer) == 0


def test_non_2xx_final_ends_every_early_dialog_of_the_invite() -> None:
    layer = DialogLayer()
    request = invite()
    fork1 = layer.on_response(request, answer(request, 183, to_tag="fork1"))
    fork2 = layer.on_response(request, answer(request, 180, to_tag="fork2"))
    assert fork1 is not None and fork2 is not None and len(layer) == 2
    layer.on_response(request, answer(request, 486, to_tag="fork3"))
    # 12.3: a non-2xx final response ends all early dialogs the request created.
    assert fork1.terminated and fork2.terminated
    assert len(layer) == 0


def test_two_forks_answering_2xx_make_two_dialogs() -> None:
    layer = DialogLayer()
    request = invite()
    first = layer.on_response(request, answer(request, 200, to_tag="fork1"))
    second = layer.on_response(request, answer(request, 200, to_tag="fork2"))
    assert first is not None and second is not None and first is not second
    assert len(layer) == 2
    assert layer.get(DialogId(CALL_ID, "1928301774", "fork2")) is second


def test_terminate_early_spares_confirmed_dialogs() -> None:
    layer = DialogLayer()
    request = invite()
    early = layer.on_response(request, answer(request, 180, to_tag="fork1"))
    confirmed = layer.on_response(request, answer(request, 200, to_tag="fork2"))
    layer.terminate_early(CALL_ID, "1928301774")
    assert early is not None and early.terminated
    assert confirmed is not None and not confirmed.terminated
    assert list(layer) == [confirmed]


# ---- UAS dialogs (12.1.1) --------------------------------------------------------------


def test_uas_dialog_from_invite_and_the_response_sent() -> None:
    layer = DialogLayer()
    request = invite(record_routes=PROXIES)
    ok = make_response(request, 200, to_tag="bobtag")
    ok.headers.add("Contact", f"<{BOB_CONTACT}>")
    dialog = layer.on_response_sent(request, ok)
    assert dialog is not None
    assert dialog.role is DialogRole.UAS and dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId(CALL_ID, "bobtag", "1928301774")
    # 12.1.1: the route set in Record-Route order.
    assert dialog.route_set == ["sip:p1.example.com;lr", "sip:p2.example.com;lr;transport=tcp"]
    assert dialog.remote_target == ALICE_CONTACT
    assert dialog.remote_seq == 314159
    assert dialog.local_seq is None
    assert dialog.local_target == BOB_CONTACT
    assert str(dialog.local_party.uri) == "sip:bob@biloxi.example.com"


def test_uas_early_dialog_confirmed_or_ended_by_the_final_response() -> None:
    layer = DialogLayer()
    request = invite()
    dialog = layer.on_response_sent(request, make_response(request, 180, to_tag="b"))
    assert dialog is not None
    assert dialog.state == "early"
    assert dialog.remote_invite_pending == 314159
    assert layer.on_response_sent(request, make_response(request, 200, to_tag="b")) is dialog
    assert dialog.state is DialogState.CONFIRMED and dialog.remote_invite_pending is None
    other = invite(from_tag="other")
    early = layer.on_response_sent(other, make_response(other, 183, to_tag="c"))
    layer.on_response_sent(other, make_response(other, 480, to_tag="c"))
    assert early is not None and early.terminated
    assert len(layer) == 1


def test_uas_dialog_from_rfc2543_peer_without_from_tag() -> None:
    request = invite(from_tag=None)
    dialog = Dialog.from_uas(request, make_response(request, 200, to_tag="b"))
    assert dialog.id == DialogId(CALL_ID, "b", "")


def test_uas_dialog_needs_a_contact_in_the_invite() -> None:
    request = invite(contact=None)
    with pytest.raises(DialogError, match="Contact"):
        Dialog.from_uas(request, make_response(request, 200, to_tag="b"))
    with pytest.raises(DialogError, match="To tag"):
        Dialog.from_uas(invite(), make_response(invite(), 200))


def test_uas_secure_flag() -> None:
    request = invite(uri="sips:bob@biloxi.example.com")
    dialog = Dialog.from_uas(
        request, make_response(request, 200, to_tag="b"), secure_transport=True
    )
    assert dialog.secure


# ---- requests inside a dialog (12.2.1.1) -----------------------------------------------


def confirmed_uac(record_routes: Sequence[str] = PROXIES) -> Dialog:
    request = invite()
    return Dialog.from_uac(request, answer(request, 200, record_routes=record_routes))


def test_in_dialog_request_with_loose_routing() -> None:
    dialog = confirmed_uac()
    bye = dialog.create_request("BYE", via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKbye1")
    assert bye.uri == BOB_CONTACT
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example.com;lr;transport=tcp>",
        "<sip:p1.example.com;lr>",
    ]
    assert bye.from_.tag == "1928301774" and bye.to.tag == "a6c85cf"
    assert bye.from_.display_name == "Alice"
    assert str(bye.to.uri) == "sip:bob@biloxi.example.com"
    assert bye.call_id == CALL_ID
    assert (bye.cseq.number, bye.cseq.method) == (314160, "BYE")
    assert bye.top_via.branch == "z9hG4bKbye1"
    assert bye.max_forwards == 70
    assert "Contact" not in bye.headers  # BYE is not a target refresh
    assert bytes(parse_message(bytes(bye))) == bytes(bye)


def test_in_dialog_request_without_route_set() -> None:
    dialog = confirmed_uac(record_routes=())
    info = dialog.create_request("INFO", body=b"Signal=1", headers=[("Content-Type", "x/y")])
    assert info.uri == BOB_CONTACT
    assert "Route" not in info.headers
    assert "Via" not in info.headers
    assert info.headers.get("Content-Type") == "x/y"
    assert info.body == b"Signal=1"


def test_in_dialog_request_to_a_strict_router() -> None:
    dialog = confirmed_uac(
        record_routes=["<sip:loose.example.com;lr>", "<sip:strict.example.com;method=INVITE?X=1>"]
    )
    # Reversed for the UAC: the strict router comes first.
    request = dialog.create_request("OPTIONS")
    # 12.2.1.1: first route into the Request-URI without method and headers, the rest of
    # the route set in Route, the remote target last.
    assert request.uri == "sip:strict.example.com"
    assert request.headers.get_all("Route") == [
        "<sip:loose.example.com;lr>",
        f"<{BOB_CONTACT}>",
    ]


def test_local_cseq_increments_and_target_refresh_carries_contact() -> None:
    dialog = confirmed_uac()
    first = dialog.create_request("INFO")
    reinvite = dialog.create_request("INVITE")
    assert [first.cseq.number, reinvite.cseq.number] == [314160, 314161]
    assert reinvite.headers.get("Contact") == f"<{ALICE_CONTACT}>"
    update = dialog
    assert update.local_invite_pending == 314161
    with pytest.raises(DialogError, match="in progress"):
        dialog.create_request("INVITE")


def test_uas_picks_an_initial_local_cseq_below_2_31() -> None:
    request = invite()
    dialog = Dialog.from_uas(request, make_response(request, 200, to_tag="b"))
    bye = dialog.create_request("BYE")
    assert 1 <= bye.cseq.number < 2**31
    assert bye.uri == ALICE_CONTACT
    assert bye.from_.tag == "b" and bye.to.tag == "1928301774"


def test_ack_and_cancel_are_not_new_requests() -> None:
    dialog = confirmed_uac()
    for method in ("ACK", "CANCEL"):
        with pytest.raises(DialogError):
            dialog.create_request(method)


def test_ack_for_2xx_uses_the_invite_cseq_and_credentials() -> None:
    request = invite(extra=['Proxy-Authorization: Digest username="alice", nonce="n"'])
    dialog = Dialog.from_uac(request, answer(request, 200, record_routes=PROXIES))
    ack = dialog.create_ack(request, via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKack")
    assert (ack.cseq.number, ack.cseq.method) == (314159, "ACK")
    assert ack.method == "ACK" and ack.uri == BOB_CONTACT
    assert ack.headers.get("Proxy-Authorization") == 'Digest username="alice", nonce="n"'
    assert len(ack.headers.get_all("Route")) == 2
    assert dialog.local_seq == 314159  # 13.2.2.4: the ACK takes no new CSeq


def test_sending_bye_ends_the_dialog() -> None:
    dialog = confirmed_uac()
    dialog.create_request("BYE")
    assert dialog.terminated
    with pytest.raises(DialogError, match="terminated"):
        dialog.create_request("INFO")


# ---- requests received inside a dialog (12.2.2) ----------------------------------------


def confirmed_uas() -> tuple[DialogLayer, Dialog]:
    layer = DialogLayer()
    request = invite(cseq=10)
    ok = make_response(request, 200, to_tag="bobtag")
    ok.headers.add("Contact", f"<{BOB_CONTACT}>")
    dialog = layer.on_response_sent(request, ok)
    assert dialog is not None
    return layer, dialog


def in_dialog(method: str, cseq: int, *, contact: str | None = f"<{ALICE_CONTACT}>") -> Request:
    return invite(method, cseq=cseq, to_tag="bobtag", uri=BOB_CONTACT, contact=contact)


def test_in_dialog_request_out_of_order_gets_500() -> None:
    layer, dialog = confirmed_uas()
    found, refusal = layer.on_request(in_dialog("INFO", 11))
    assert found is dialog and refusal is None
    assert dialog.remote_seq == 11
    _, refusal = layer.on_request(in_dialog("INFO", 9))
    assert refusal is not None and refusal.status == 500
    assert refusal.to.tag == "bobtag"
    assert dialog.remote_seq == 11
    # Equal is not lower (12.2.2 rejects only lower numbers); higher moves it up.
    assert layer.on_request(in_dialog("INFO", 11))[1] is None
    assert layer.on_request(in_dialog("INFO", 50))[1] is None
    assert dialog.remote_seq == 50


def test_ack_and_cancel_skip_the_cseq_check() -> None:
    layer, dialog = confirmed_uas()
    assert layer.on_request(in_dialog("INFO", 20))[1] is None
    assert layer.on_request(in_dialog("ACK", 10)) == (dialog, None)
    assert layer.on_request(in_dialog("CANCEL", 10)) == (dialog, None)
    assert dialog.remote_seq == 20


def test_reinvite_refreshes_the_remote_target() -> None:
    layer, dialog = confirmed_uas()
    reinvite = in_dialog("INVITE", 11, contact="<sip:alice@198.51.100.77:5070>")
    assert layer.on_request(reinvite) == (dialog, None)
    assert dialog.remote_target == "sip:alice@198.51.100.77:5070"
    assert dialog.remote_invite_pending == 11
    # 14.2: another INVITE before the first was answered.
    overlap = layer.on_request(in_dialog("INVITE", 12))[1]
    assert overlap is not None and overlap.status == 500
    assert 0 <= int(overlap.headers.get("Retry-After") or "-1") <= 10
    dialog.response_sent(make_response(reinvite, 200))
    assert dialog.remote_invite_pending is None


def test_update_refreshes_the_remote_target() -> None:
    layer, dialog = confirmed_uas()
    update = in_dialog("UPDATE", 11, contact="<sip:alice@198.51.100.78>")
    assert layer.on_request(update)[1] is None
    assert dialog.remote_target == "sip:alice@198.51.100.78"
    # A non-refresh request's Contact does not move the target.
    layer.on_request(in_dialog("INFO", 12, contact="<sip:elsewhere@198.51.100.79>"))
    assert dialog.remote_target == "sip:alice@198.51.100.78"


def test_target_refresh_with_a_bad_contact_gets_400() -> None:
    layer, dialog = confirmed_uas()
    _, refusal = layer.on_request(in_dialog("UPDATE", 11, contact="<sip:alice@198.51.100.78"))
    assert refusal is not None and refusal.status == 400
    assert dialog.remote_seq == 10


def test_reinvite_glare_gets_491() -> None:
    layer, dialog = confirmed_uas()
    dialog.create_request("INVITE")
    _, refusal = layer.on_request(in_dialog("INVITE", 11))
    assert refusal is not None and refusal.status == 491


def test_bye_ends_the_dialog_and_later_requests_get_481() -> None:
    layer, dialog = confirmed_uas()
    assert layer.on_request(in_dialog("BYE", 11)) == (dialog, None)
    assert dialog.terminated and len(layer) == 0
    found, refusal = layer.on_request(in_dialog("INFO", 12))
    assert found is None and refusal is not None and refusal.status == 481
    assert layer.on_request(in_dialog("ACK", 12)) == (None, None)


def test_request_outside_any_dialog_is_not_the_dialog_layers() -> None:
    layer, _ = confirmed_uas()
    assert layer.on_request(invite(cseq=1)) == (None, None)
    found, refusal = layer.on_request(invite("INFO", to_tag="unknown"))
    assert found is None and refusal is not None and refusal.status == 481


def test_terminated_dialog_answers_481_itself() -> None:
    _, dialog = confirmed_uas()
    dialog.terminate()
    refusal = dialog.receive_request(in_dialog("INFO", 11))
    assert refusal is not None and refusal.status == 481
    assert dialog.receive_request(in_dialog("ACK", 11)) is None


# ---- responses to in-dialog requests (12.2.1.2) ----------------------------------------


def test_2xx_to_reinvite_refreshes_the_target_and_non_2xx_does_not() -> None:
    layer = DialogLayer()
    request = invite()
    dialog = layer.on_response(request, answer(request, 200))
    assert dialog is not None
    reinvite = dialog.create_request("INVITE", via="SIP/2.0/UDP h;branch=z9hG4bKre")
    rejected = answer(reinvite, 488, to_tag=None, contact="<sip:bob@203.0.113.1>")
    assert layer.on_response(reinvite, rejected) is dialog
    assert dialog.remote_target == BOB_CONTACT
    assert dialog.local_invite_pending is None
    again = dialog.create_request("INVITE", via="SIP/2.0/UDP h;branch=z9hG4bKre2")
    ok = answer(again, 200, to_tag=None, contact="<sip:bob@203.0.113.2>")
    layer.on_response(again, ok)
    assert dialog.remote_target == "sip:bob@203.0.113.2"


def test_2xx_to_update_refreshes_the_target() -> None:
    dialog = confirmed_uac()
    update = dialog.create_request("UPDATE", via=VIA)
    dialog.receive_response(answer(update, 200, to_tag=None, contact="<sip:bob@203.0.113.3>"))
    assert dialog.remote_target == "sip:bob@203.0.113.3"


@pytest.mark.parametrize("status", [408, 481])
def test_408_or_481_to_an_in_dialog_request_ends_the_dialog(status: int) -> None:
    layer = DialogLayer()
    request = invite()
    dialog = layer.on_response(request, answer(request, 200))
    assert dialog is not None
    info = dialog.create_request("INFO", via=VIA)
    layer.on_response(info, answer(info, status, to_tag=None, contact=None))
    assert dialog.terminated and len(layer) == 0


def test_response_to_unknown_in_dialog_request_is_ignored() -> None:
    layer = DialogLayer()
    info = invite("INFO", to_tag="nope")
    assert layer.on_response(info, answer(info, 200, to_tag=None)) is None
    options = invite("OPTIONS")
    assert layer.on_response(options, answer(options, 200)) is None


def test_malformed_contact_in_a_2xx_keeps_the_target() -> None:
    dialog = confirmed_uac()
    update = dialog.create_request("UPDATE", via=VIA)
    ok = answer(update, 200, to_tag=None, contact=None)
    ok.headers.add("Contact", "<sip:bad")
    dialog.receive_response(ok)
    assert dialog.remote_target == BOB_CONTACT


def test_dialog_layer_add_and_remove() -> None:
    layer = DialogLayer()
    dialog = confirmed_uac()
    layer.add(dialog)
    with pytest.raises(DialogError, match="exists"):
        layer.add(dialog)
    layer.remove(dialog)
    layer.remove(dialog)
    assert len(layer) == 0
