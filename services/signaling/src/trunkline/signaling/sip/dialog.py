"""SIP dialogs (RFC 3261 section 12), without I/O.

A `Dialog` holds the state of 12.1: the id (Call-ID, local tag, remote tag), local and
remote sequence numbers, local and remote URIs, the remote target, the route set and the
secure flag, and builds the requests sent inside it (12.2.1.1). A `DialogLayer` finds the
dialog a message belongs to and creates, confirms and ends dialogs as the TU sends and
receives INVITE responses:

    dialogs = DialogLayer()
    dialog = dialogs.on_response(invite, response)         # UAC: 1xx with To tag or 2xx
    dialog, refusal = dialogs.on_request(request)          # UAS: in-dialog request (481/500/491)
    dialog = dialogs.on_response_sent(invite, response)    # UAS: the TU answered the INVITE
    bye = dialog.create_request("BYE", via=f"SIP/2.0/UDP {host};branch={new_branch()}")

Only INVITE creates dialogs here; target refresh is by re-INVITE and UPDATE (RFC 3311).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from trunkline.signaling.sip.message import Headers, NameAddr, Request, Response, make_response
from trunkline.signaling.sip.uri import SipUri, parse_uri

__all__ = [
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogLayer",
    "DialogRole",
    "DialogState",
    "addr_uri",
]

# 12.2 and RFC 3311 5.1: requests that replace the remote target with their Contact.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})


class DialogError(ValueError):
    """A message that cannot create or update a dialog; `reason` names the fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DialogState(StrEnum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogRole(StrEnum):
    UAC = "uac"
    UAS = "uas"


class DialogId(NamedTuple):
    """RFC 3261 12: Call-ID, local tag, remote tag ("" when an RFC 2543 peer sent none)."""

    call_id: str
    local_tag: str
    remote_tag: str


def addr_uri(value: str) -> str:
    """The URI text of a name-addr or addr-spec header value (RFC 3261 20.10, 25.1).

    In name-addr form the URI is what the angle brackets hold, so its parameters stay with
    it; in addr-spec form anything after ";" is a header parameter, not the URI's. A "<"
    inside the quoted display name does not count. Raises DialogError when a quote or an
    angle bracket is left open.
    """
    text = value.strip()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise DialogError("Unterminated quoted string")
        elif c == "<":
            end = text.find(">", i + 1)
            if end < 0:
                raise DialogError("Unterminated <")
            return text[i + 1 : end].strip()
        i += 1
    return text.split(";", 1)[0].strip()


def _checked_uri(text: str, what: str) -> SipUri:
    try:
        return parse_uri(text)
    except ValueError as exc:
        raise DialogError(f"Bad {what}: {exc}") from None


def _contact_uri(message: Request | Response) -> str | None:
    """The first Contact's URI, validated; None when there is no Contact."""
    try:
        value = message.headers.get("Contact")
    except ValueError as exc:  # a list header that does not split (open quote or "<")
        raise DialogError(f"Bad Contact: {exc}") from None
    if value is None:
        return None
    if value.strip() == "*":
        raise DialogError("Bad Contact: * outside REGISTER")
    uri = addr_uri(value)
    _checked_uri(uri, "Contact")
    return uri


def _target_or(response: Response, current: str) -> str:
    """The response's Contact URI, or `current` when it has none or a malformed one."""
    try:
        return _contact_uri(response) or current
    except DialogError:
        return current


def _route_set(message: Request | Response, *, reverse: bool) -> list[str]:
    """The Record-Route URIs with all their parameters (12.1.1), reversed for a UAC (12.1.2)."""
    try:
        values = message.headers.get_all("Record-Route")
    except ValueError as exc:
        raise DialogError(f"Bad Record-Route: {exc}") from None
    uris = []
    for value in values:
        uri = addr_uri(value)
        _checked_uri(uri, "Record-Route")
        uris.append(uri)
    if reverse:
        uris.reverse()
    return uris


def _party(name_addr: NameAddr) -> NameAddr:
    # 12.1: the dialog keeps the URI (and display name) of From/To, not their parameters.
    return dataclasses.replace(name_addr, params={})


def _with_tag(party: NameAddr, tag: str) -> str:
    return str(dataclasses.replace(party, params={"tag": tag} if tag else {}))


def _initial_cseq() -> int:
    # 8.1.1.5: any starting value below 2**31; random makes stale requests unlikely to fit.
    return secrets.randbelow(2**31 - 1) + 1


@dataclass(eq=False)
class Dialog:
    """One dialog's state (RFC 3261 12.1). Build it with `from_uac`/`from_uas` or let a
    `DialogLayer` do it."""

    role: DialogRole
    state: DialogState
    call_id: str
    local_tag: str
    remote_tag: str
    local_party: NameAddr  # local URI (12.1), without tag
    remote_party: NameAddr  # remote URI (12.1), without tag
    remote_target: str  # the peer's Contact URI
    route_set: list[str]  # URIs, in the order Route headers list them
    secure: bool
    local_seq: int | None
    remote_seq: int | None
    invite_seq: int  # CSeq number of the INVITE that created the dialog
    local_target: str | None = None  # our Contact URI, sent in target refresh requests
    # 14.1/14.2: the CSeq of an INVITE in progress in each direction, to detect glare.
    local_invite_pending: int | None = None
    remote_invite_pending: int | None = None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    # -- creation

    @classmethod
    def from_uac(
        cls, request: Request, response: Response, *, secure_transport: bool = False
    ) -> Dialog:
        """The UAC's dialog from the INVITE it sent and a 101-299 response with a To tag
        (RFC 3261 12.1.2): early for 1xx, confirmed for 2xx. `secure_transport` says the
        INVITE went over TLS; with a sips Request-URI the dialog is secure."""
        try:
            status = response.status
            if not 101 <= status <= 299:
                raise DialogError(f"a {status} response does not create a dialog (12.1)")
            remote_tag = response.to.tag
            if not remote_tag:
                raise DialogError("Missing To tag in the response (12.1.2)")
            local_tag = request.from_.tag
            if not local_tag:
                raise DialogError("Missing From tag in the request (8.1.1.3)")
            number = request.cseq.number
            # 12.1.2: remote target from the response's Contact; a response lacking one
            # breaks 12.1.1, and the Request-URI is the best remaining guess.
            target = _contact_uri(response) or request.uri
            return cls(
                role=DialogRole.UAC,
                state=DialogState.EARLY if status < 200 else DialogState.CONFIRMED,
                call_id=request.call_id,
                local_tag=local_tag,
                remote_tag=remote_tag,
                local_party=_party(request.from_),
                remote_party=_party(request.to),
                remote_target=target,
                route_set=_route_set(response, reverse=True),
                secure=secure_transport and request.parsed_uri.scheme == "sips",
                local_seq=number,
                remote_seq=None,
                invite_seq=number,
                local_target=_contact_uri(request),
                local_invite_pending=number if status < 200 else None,
            )
        except DialogError:
            raise
        except ValueError as exc:
            raise DialogError(str(exc)) from None

    @classmethod
    def from_uas(
        cls, request: Request, response: Response, *, secure_transport: bool = False
    ) -> Dialog:
        """The UAS's dialog from a received INVITE and the 101-299 response (with To tag)
        the TU sends to it (RFC 3261 12.1.1). `secure_transport` says the INVITE arrived
        over TLS; with a sips Request-URI the dialog is secure."""
        try:
            status = response.status
            if not 101 <= status <= 299:
                raise DialogError(f"a {status} response does not create a dialog (12.1)")
            local_tag = response.to.tag
            if not local_tag:
                raise DialogError("Missing To tag in the response (12.1.1)")
            target = _contact_uri(request)
            if target is None:
                raise DialogError("Missing Contact in the INVITE (8.1.1.8)")
            number = request.cseq.number
            return cls(
                role=DialogRole.UAS,
                state=DialogState.EARLY if status < 200 else DialogState.CONFIRMED,
                call_id=request.call_id,
                local_tag=local_tag,
                remote_tag=request.from_.tag or "",
                local_party=_party(request.to),
                remote_party=_party(request.from_),
                remote_target=target,
                route_set=_route_set(request, reverse=False),
                secure=secure_transport and request.parsed_uri.scheme == "sips",
                local_seq=None,  # 12.1.1: empty until the UAS sends a request
                remote_seq=number,
                invite_seq=number,
                local_target=_contact_uri(response),
                remote_invite_pending=number if status < 200 else None,
            )
        except DialogError:
            raise
        except ValueError as exc:
            raise DialogError(str(exc)) from None

    # -- requests we send

    def create_request(
        self,
        method: str,
        *,
        via: str | None = None,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A request inside the dialog (RFC 3261 12.2.1.1), with the next local CSeq.

        `via` is the top Via (sent-by and a new branch), which the transport knows; without
        it the caller must add one before `TransactionLayer.send_request`. Target refresh
        requests carry our Contact. Sending BYE ends the dialog (15.1.1). ACK and CANCEL are
        not built here: see `create_ack` and `transaction.build_cancel`."""
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"{method} does not take a new CSeq (12.2.1.1); see create_ack")
        if self.state is DialogState.TERMINATED:
            raise DialogError("the dialog is terminated")
        if method == "INVITE" and (
            self.local_invite_pending is not None or self.remote_invite_pending is not None
        ):
            # 14.1: no new INVITE while one is in progress in either direction.
            raise DialogError("an INVITE transaction is already in progress on this dialog")
        # 12.2.1.1: the local sequence number goes up by one per request; a UAS that has
        # not sent one yet picks a start (8.1.1.5).
        self.local_seq = _initial_cseq() if self.local_seq is None else self.local_seq + 1
        if self.local_seq >= 2**31:
            raise DialogError("the local CSeq would exceed 2**31 - 1 (8.1.1.5)")
        request = self._build(method, self.local_seq, via, body, headers)
        if method == "INVITE":
            self.local_invite_pending = self.local_seq
        elif method == "BYE":
            self.state = DialogState.TERMINATED
        return request

    def create_ack(
        self,
        invite: Request,
        *,
        via: str | None = None,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """The ACK for a 2xx to `invite` (RFC 3261 13.2.2.4): built as any in-dialog request
        but with the INVITE's CSeq number and its credentials. The ACK is end to end; send
        it with `TransactionLayer.send_stateless`, again for every 2xx retransmission."""
        number = invite.cseq.number
        extra = list(headers)
        for name in ("Authorization", "Proxy-Authorization"):
            extra.extend((name, value) for value in invite.headers.get_all(name))
        return self._build("ACK", number, via, body, extra, cseq_method="ACK")

    def _build(
        self,
        method: str,
        number: int,
        via: str | None,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        *,
        cseq_method: str | None = None,
    ) -> Request:
        uri, routes = self._request_target()
        h = Headers()
        if via is not None:
            h.add("Via", via)
        h.add("Max-Forwards", "70")
        for route in routes:
            h.add("Route", f"<{route}>")
        h.add("From", _with_tag(self.local_party, self.local_tag))
        h.add("To", _with_tag(self.remote_party, self.remote_tag))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{number} {cseq_method or method}")
        if method in TARGET_REFRESH_METHODS and self.local_target is not None:
            # 12.2.1.1: a target refresh request SHOULD carry a Contact.
            h.add("Contact", f"<{self.local_target}>")
        for name, value in headers:
            h.add(name, value)
        return Request(method, uri, h, body)

    def _request_target(self) -> tuple[str, list[str]]:
        """Request-URI and Route URIs (RFC 3261 12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = _checked_uri(self.route_set[0], "route")
        if "lr" in first.params:
            # Loose routing: the remote target in the Request-URI, the route set as Route.
            return self.remote_target, list(self.route_set)
        # Strict routing (an RFC 2543 next hop): the first route becomes the Request-URI,
        # stripped of what a Request-URI may not hold (19.1.1: the method parameter and
        # headers); the remote target goes last in the Route header.
        params = {k: v for k, v in first.params.items() if k != "method"}
        uri = dataclasses.replace(first, params=params, headers={})
        return str(uri), [*self.route_set[1:], self.remote_target]

    # -- requests we receive

    def receive_request(self, request: Request) -> Response | None:
        """Check and apply a request received inside the dialog (RFC 3261 12.2.2).

        Returns the response the TU must send instead of processing the request: 500 for a
        CSeq lower than the remote sequence number (12.2.2), 491 or 500 with Retry-After for
        an INVITE that overlaps another (14.2), 400 for a bad Contact in a target refresh,
        481 when the dialog is over. Returns None when the request is in order; then the
        remote CSeq and, for a target refresh, the remote target are updated, and a BYE
        terminates the dialog."""
        method = request.method
        if self.state is DialogState.TERMINATED:
            return None if method == "ACK" else make_response(request, 481)
        if method in ("ACK", "CANCEL"):
            # The ACK shares the INVITE's CSeq number and CANCEL is hop by hop: neither is
            # subject to 12.2.2's ordering.
            return None
        try:
            number = request.cseq.number
            target = _contact_uri(request) if method in TARGET_REFRESH_METHODS else None
        except ValueError as exc:
            reason = exc.reason if isinstance(exc, DialogError) else str(exc)
            return make_response(request, 400, reason)
        if self.remote_seq is not None and number < self.remote_seq:
            return make_response(request, 500, "CSeq Out of Order")
        if method == "INVITE":
            if self.local_invite_pending is not None:
                return make_response(request, 491)  # 14.2: glare with our own INVITE
            if self.remote_invite_pending is not None:
                # 14.2: an INVITE before we answered the previous one.
                response = make_response(request, 500, "Overlapping INVITE")
                response.headers.set("Retry-After", str(secrets.randbelow(11)))
                return response
            self.remote_invite_pending = number
        self.remote_seq = number
        if target is not None:
            # 12.2.2: a target refresh replaces the remote target with its Contact.
            self.remote_target = target
        if method == "BYE":
            self.state = DialogState.TERMINATED  # 15.1.2
        return None

    def response_sent(self, response: Response) -> None:
        """The TU sent `response` to a request of this dialog or to the INVITE that created
        it (UAS side): confirms or ends an early dialog, clears a pending INVITE."""
        cseq = response.cseq
        status = response.status
        if cseq.method != "INVITE" or status < 200:
            return
        if self.role is DialogRole.UAS and cseq.number == self.invite_seq:
            if self.state is DialogState.EARLY:
                if status >= 300:
                    self.state = DialogState.TERMINATED  # 12.3: no 2xx, no dialog
                else:
                    self.state = DialogState.CONFIRMED
            target = _contact_uri(response)
            if target is not None:
                self.local_target = target
        elif 200 <= status < 300:
            target = _contact_uri(response)
            if target is not None:
                self.local_target = target
        if self.remote_invite_pending == cseq.number:
            self.remote_invite_pending = None

    # -- responses we receive

    def receive_response(self, response: Response) -> None:
        """A response to a request we sent inside the dialog, or (UAC) to the INVITE that
        created it (RFC 3261 12.1.2, 12.2.1.2, 13.2.2.4)."""
        if self.state is DialogState.TERMINATED:
            return
        try:
            cseq = response.cseq
        except ValueError:
            return
        status = response.status
        if (
            self.role is DialogRole.UAC
            and cseq.method == "INVITE"
            and cseq.number == self.invite_seq
        ):
            if self.state is DialogState.EARLY and status >= 300:
                self.state = DialogState.TERMINATED  # 12.3
            elif self.state is DialogState.EARLY and status >= 200:
                # 13.2.2.4: confirmed, and the route set recomputed from the 2xx.
                self.state = DialogState.CONFIRMED
                # A malformed Record-Route keeps the early dialog's route set.
                with contextlib.suppress(DialogError):
                    self.route_set = _route_set(response, reverse=True)
                self.remote_target = _target_or(response, self.remote_target)
            if status >= 200 and self.local_invite_pending == cseq.number:
                self.local_invite_pending = None
            return
        if status in (408, 481):
            # 12.2.1.2: the peer lost the dialog, or the request timed out.
            self.state = DialogState.TERMINATED
            return
        if 200 <= status < 300 and cseq.method in TARGET_REFRESH_METHODS:
            # 12.2.1.2: a 2xx to a target refresh replaces the remote target.
            self.remote_target = _target_or(response, self.remote_target)
        if cseq.method == "INVITE" and status >= 200 and self.local_invite_pending == cseq.number:
            self.local_invite_pending = None

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED


class DialogLayer:
    """The dialogs of one user agent, found by id (RFC 3261 12); terminated ones are
    forgotten as soon as the layer sees them end.

    The TU reports every response it receives for a request it sent (`on_response`),
    every request it receives (`on_request`) and every response it sends
    (`on_response_sent`), inside dialogs or not: that is how INVITEs in progress are known
    (14.1, 14.2) and how early dialogs are confirmed or ended. Dialogs exist only once the
    TU answers or is answered, so their number follows the calls the TU accepts.
    """

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}
        # (Call-ID, local tag) -> the dialogs one INVITE created, which forks multiply;
        # 12.3 ends all the early ones on a non-2xx final response.
        self._by_invite: dict[tuple[str, str], set[DialogId]] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def add(self, dialog: Dialog) -> Dialog:
        if dialog.id in self._dialogs:
            raise DialogError(f"dialog {dialog.id} already exists")
        self._dialogs[dialog.id] = dialog
        self._by_invite.setdefault((dialog.call_id, dialog.local_tag), set()).add(dialog.id)
        return dialog

    def remove(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.id) is not dialog:
            return
        del self._dialogs[dialog.id]
        group_key = (dialog.call_id, dialog.local_tag)
        group = self._by_invite.get(group_key)
        if group is not None:
            group.discard(dialog.id)
            if not group:
                del self._by_invite[group_key]

    def terminate_early(self, call_id: str, local_tag: str) -> None:
        """End every early dialog an INVITE created (12.3), e.g. when its client
        transaction ended without a final response."""
        for dialog_id in list(self._by_invite.get((call_id, local_tag), ())):
            dialog = self._dialogs[dialog_id]
            if dialog.state is DialogState.EARLY:
                dialog.terminate()
                self.remove(dialog)

    def on_response(
        self, request: Request, response: Response, *, secure_transport: bool = False
    ) -> Dialog | None:
        """UAC side: `response` arrived for `request`, which we sent. Creates an early (1xx
        with To tag) or confirmed (2xx) dialog for an INVITE outside a dialog, confirms an
        early one, ends all early ones on a non-2xx final (12.3), and passes responses to
        in-dialog requests to their dialog. Returns the dialog concerned, if any."""
        try:
            call_id = response.call_id
            local_tag = response.from_.tag or ""
            remote_tag = response.to.tag or ""
            in_dialog = bool(request.to.tag)
        except ValueError:
            return None
        dialog = self._dialogs.get(DialogId(call_id, local_tag, remote_tag))
        if in_dialog:
            if dialog is not None:
                dialog.receive_response(response)
                self._prune(dialog)
            return dialog
        if request.method != "INVITE":
            return None
        if response.status >= 300:
            self.terminate_early(call_id, local_tag)
            return dialog
        if dialog is not None:
            dialog.receive_response(response)
            self._prune(dialog)
            return dialog
        if response.status > 100 and remote_tag:
            return self.add(Dialog.from_uac(request, response, secure_transport=secure_transport))
        return None

    def on_request(self, request: Request) -> tuple[Dialog | None, Response | None]:
        """UAS side: a request arrived. Returns its dialog (None outside a dialog, i.e.
        without a To tag) and the response to send instead of processing it: 481 when the
        To tag names no dialog (12.2.2), or what `Dialog.receive_request` refuses."""
        try:
            to_tag = request.to.tag
            remote_tag = request.from_.tag or ""
            call_id = request.call_id
        except ValueError:
            return None, None
        if not to_tag:
            return None, None
        dialog = self._dialogs.get(DialogId(call_id, to_tag, remote_tag))
        if dialog is None or dialog.terminated:
            # An ACK cannot be answered (17); a stray one is dropped.
            return None, None if request.method == "ACK" else make_response(request, 481)
        refusal = dialog.receive_request(request)
        self._prune(dialog)
        return dialog, refusal

    def on_response_sent(
        self, request: Request, response: Response, *, secure_transport: bool = False
    ) -> Dialog | None:
        """UAS side: the TU answered `request` with `response`. A 101-299 with a To tag to
        an INVITE outside a dialog creates the dialog (12.1.1); a final confirms or ends an
        early one. Raises DialogError when the INVITE cannot make a dialog (no Contact)."""
        try:
            call_id = request.call_id
            remote_tag = request.from_.tag or ""
            request_tag = request.to.tag
            local_tag = response.to.tag or ""
        except ValueError:
            return None
        if request_tag:
            dialog = self._dialogs.get(DialogId(call_id, request_tag, remote_tag))
        elif request.method == "INVITE" and local_tag:
            dialog = self._dialogs.get(DialogId(call_id, local_tag, remote_tag))
            if dialog is None and 101 <= response.status <= 299:
                return self.add(
                    Dialog.from_uas(request, response, secure_transport=secure_transport)
                )
        else:
            return None
        if dialog is not None:
            dialog.response_sent(response)
            self._prune(dialog)
        return dialog

    def _prune(self, dialog: Dialog) -> None:
        if dialog.terminated:
            self.remove(dialog)
