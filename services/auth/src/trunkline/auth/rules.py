"""Who may place a call through a trunk: the rules behind the auth service's two RPCs.

Termination (`authorize_termination`, the seed's "Authentifizierung"):
- a locked-out source (see `trunkline.auth.lockout`) is IGNOREd, before anything is read;
- a trunk with neither an IP access control list nor a credential list lets no one in
  (DENY 403, 32200);
- with ACLs, the source address must lie in one of their CIDR blocks (DENY 403, 32201);
- with credential lists, a digest (RFC 7616, SHA-256 and MD5) must be right: CHALLENGE
  until a Proxy-Authorization arrives, DENY 403 (32202) for a wrong one, DENY 400 (32112)
  for a malformed one, CHALLENGE with stale=true for a right one on an expired nonce;
- with both, both: the ACL is checked first, then the digest.
ACL misses and digest failures count towards the source's lockout.

An ALLOW that rests on an IP ACL alone (a trunk without credential lists) carries
`reuse_seconds` (the `verdict_reuse` setting, at most the configuration cache's TTL): it
depends only on configuration, so signaling may answer the same trunk, source, transport and
caller ID with it until a configuration change, instead of a round trip per call. A digest
ALLOW is never reusable (each request carries its own credentials and nonce).

Caller (`authorize_caller`): the caller ID must be a phone number of the account or one of
its verified outgoing caller IDs (DENY 403, 21212), and a trial account may only call its
verified caller IDs (DENY 403, 32100).

Status codes and Twilio error codes come from `trunkline.domain.errors.Error`. Nothing here
logs a password, an HA1, a nonce secret or a credentials value; reasons are fixed phrases.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence

from prometheus_client import Counter

from trunkline.auth.lockout import Lockout, SourceAddress, source_key
from trunkline.digest import sip
from trunkline.digest.sip import (
    Authenticated,
    BadCredentials,
    Credentials,
    DigestError,
    DigestServer,
    Malformed,
    StaleNonce,
    parse_credentials,
)
from trunkline.domain import claims
from trunkline.domain.errors import Error
from trunkline.domain.model import (
    Account,
    AccountStatus,
    AccountType,
    Credential,
    IpAddress,
    OutgoingCallerId,
    PhoneNumber,
    Trunk,
    TrunkCredentialList,
    TrunkIpAccessControlList,
)
from trunkline.store.cache import ConfigCache
from trunkline.v1.auth_pb2 import CallerRequest, TerminationRequest, Verdict

__all__ = ["Authorizer", "InvalidRequest", "allow", "deny", "parse_source"]

log = logging.getLogger("trunkline.auth")

VERDICTS = Counter(
    "trunkline_auth_verdicts",
    "Verdicts of the auth service by RPC, outcome and Twilio error code (0: none)",
    ["rpc", "outcome", "error_code"],
)
LOCKOUTS = Counter(
    "trunkline_auth_lockouts",
    "Sources locked out after repeated authentication failures",
)


class InvalidRequest(ValueError):
    """The RPC itself is wrong (a bug in the caller, not the SIP peer's fault)."""


# --- verdicts ---------------------------------------------------------------------------


def allow(username: str = "") -> Verdict:
    return Verdict(outcome=Verdict.ALLOW, username=username)


def deny(error: Error, reason: str) -> Verdict:
    spec = error.value
    if spec.sip_status is None:
        raise ValueError(f"{error.name} is not an answer to a SIP request")
    return Verdict(
        outcome=Verdict.DENY, sip_status=spec.sip_status, reason=reason, error_code=spec.code
    )


def _challenge(values: Sequence[str]) -> Verdict:
    return Verdict(outcome=Verdict.CHALLENGE, challenges=list(values))


_IGNORE = Verdict(outcome=Verdict.IGNORE)


def _counted(rpc: str, verdict: Verdict) -> Verdict:
    outcome = Verdict.Outcome.Name(verdict.outcome).lower()
    VERDICTS.labels(rpc=rpc, outcome=outcome, error_code=str(verdict.error_code)).inc()
    return verdict


# --- addresses --------------------------------------------------------------------------


def parse_source(text: str) -> SourceAddress:
    """The request's source address: IPv4, or IPv6 without a zone; an IPv4-mapped IPv6
    address (a dual-stack socket's view of an IPv4 peer) is its IPv4 address."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidRequest("source_ip is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


@functools.lru_cache(maxsize=65536)
def _network(address: str, prefix_length: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # strict=False: an entry like 192.0.2.7/24 means its whole /24, as Twilio reads it.
    return ipaddress.ip_network(f"{address}/{prefix_length}", strict=False)


def _contains(record: IpAddress, source: SourceAddress) -> bool:
    try:
        network = _network(record.ip_address, record.cidr_prefix_length)
    except ValueError:
        log.error("unusable IP address entry skipped", extra={"ip_address_sid": record.sid})
        return False
    return network.version == source.version and source in network


# --- the rules --------------------------------------------------------------------------


class Authorizer:
    """The rules over cached configuration. `digest` holds the realm and nonce secret;
    `clock` is wall-clock seconds for nonces (they cross pods); `lockout` has its own."""

    def __init__(
        self,
        config: ConfigCache,
        digest: DigestServer,
        lockout: Lockout,
        *,
        clock: Callable[[], float] = time.time,
        verdict_reuse: float = 0.0,
    ) -> None:
        self.config = config
        self.digest = digest
        self.lockout = lockout
        self._clock = clock
        # Whole seconds, and never longer than a configuration read may be cached here: a
        # reused verdict must not outlive what it was decided from.
        self.verdict_reuse = int(min(verdict_reuse, config.ttl))

    # termination ---------------------------------------------------------------------

    async def authorize_termination(self, request: TerminationRequest) -> Verdict:
        verdict = _counted("termination", await self._termination(request))
        if verdict.outcome != Verdict.ALLOW or not request.HasField("caller"):
            return verdict
        caller = await self.authorize_caller(request.caller)
        if caller.outcome != Verdict.ALLOW:
            return caller
        verdict.reuse_per_destination = caller.reuse_per_destination
        return verdict  # keeps the authenticated username

    async def _termination(self, request: TerminationRequest) -> Verdict:
        if not request.trunk_sid:
            raise InvalidRequest("trunk_sid is required")
        source = parse_source(request.source_ip)
        if self.lockout.locked(source):
            return _IGNORE
        trunk = await self.config.get(Trunk, request.trunk_sid)
        if trunk is None or (request.account_sid and trunk.account_sid != request.account_sid):
            return deny(Error.NOT_FOUND, "Trunk not found")
        acls = await self.config.list_all(TrunkIpAccessControlList, "trunk", trunk.sid)
        credential_lists = await self.config.list_all(TrunkCredentialList, "trunk", trunk.sid)
        if not acls and not credential_lists:
            return deny(
                Error.TRUNK_WITHOUT_AUTHENTICATION,
                "Trunk has no IP access control list and no credential list",
            )
        if acls and not await self._in_acls(source, acls):
            log.info(
                "source not in the trunk's ACLs",
                extra={"trunk_sid": trunk.sid, "source_ip": str(source)},
            )
            return self._failed(
                request, source, deny(Error.SOURCE_NOT_IN_ACL, "Source IP address not in ACL")
            )
        if not credential_lists:
            verdict = allow()
            verdict.reuse_seconds = self.verdict_reuse
            return verdict
        return await self._digest(request, source, credential_lists)

    async def _in_acls(
        self, source: SourceAddress, acls: Sequence[TrunkIpAccessControlList]
    ) -> bool:
        for link in acls:
            entries = await self.config.list_all(IpAddress, "list", link.ip_access_control_list_sid)
            if any(_contains(entry, source) for entry in entries):
                return True
        return False

    async def _digest(
        self,
        request: TerminationRequest,
        source: SourceAddress,
        credential_lists: Sequence[TrunkCredentialList],
    ) -> Verdict:
        now = self._clock()
        bound = str(source) if self.digest.bind_source else None
        values = list(request.proxy_authorization)
        value = self.digest.select(values)
        if value is None:
            # A Digest value that names no realm we can read is broken, not someone else's.
            for other in values:
                if _is_digest(other):
                    try:
                        parse_credentials(other)
                    except DigestError as error:
                        return self._malformed(request, source, error.reason)
            return _challenge(self.digest.challenge(now=now, source=bound))
        if not request.method or not request.request_uri:
            raise InvalidRequest("method and request_uri are required to check a digest")
        try:
            credentials = parse_credentials(value)
        except DigestError as error:
            return self._malformed(request, source, error.reason)
        verdict = await self._check(credentials, request, credential_lists, now, bound)
        match verdict:
            case Authenticated(username=username):
                return allow(username)
            case StaleNonce():
                return _challenge(self.digest.challenge(now=now, source=bound, stale=True))
            case BadCredentials(rechallenge=True):
                # The nonce, realm or opaque is not ours (an old secret, another realm): no
                # password was tried, so a fresh challenge, not a failure.
                return _challenge(self.digest.challenge(now=now, source=bound))
            case BadCredentials(reason=reason):
                log.info(
                    "digest authentication failed",
                    extra={
                        "trunk_sid": request.trunk_sid,
                        "source_ip": str(source),
                        "reason": reason,
                    },
                )
                return self._failed(
                    request, source, deny(Error.BAD_CREDENTIALS, "Bad user credentials")
                )
            case Malformed(reason=reason):
                return self._malformed(request, source, reason)
        raise AssertionError(f"unexpected digest verdict {verdict!r}")

    async def _check(
        self,
        credentials: Credentials,
        request: TerminationRequest,
        credential_lists: Sequence[TrunkCredentialList],
        now: float,
        bound: str | None,
    ) -> sip.Verdict:
        """Check against the user's HA1 in each of the trunk's lists that has the user (one
        name may be in several lists, with different passwords): the first that is not a
        wrong password decides."""
        candidates: list[str | None] = [*await self._ha1s(credentials, credential_lists)]
        verdict: sip.Verdict | None = None
        for ha1 in candidates or [None]:  # None: an unknown user, still checked in full
            verdict = self.digest.check(
                credentials,
                method=request.method,
                request_uri=request.request_uri,
                ha1=ha1,
                now=now,
                source=bound,
            )
            if not isinstance(verdict, BadCredentials) or verdict.rechallenge:
                return verdict
        assert verdict is not None
        return verdict

    async def _ha1s(
        self, credentials: Credentials, credential_lists: Sequence[TrunkCredentialList]
    ) -> list[str]:
        base = credentials.algorithm.upper().removesuffix("-SESS")
        if base not in ("MD5", "SHA-256"):
            return []  # check() refuses the algorithm before looking at any HA1
        found: list[str] = []
        for link in credential_lists:
            claim = f"{link.credential_list_sid}:{credentials.username}"
            sid = await self.config.holder(claims.CREDENTIAL_USERNAME, claim)
            if sid is None:
                continue
            credential = await self.config.get(Credential, sid)
            if credential is None or credential.realm != self.digest.realm:
                # Hashed under another realm (TRUNKLINE_REALM changed): it cannot match.
                continue
            found.append(credential.ha1_md5 if base == "MD5" else credential.ha1_sha256)
        return found

    def _malformed(
        self, request: TerminationRequest, source: SourceAddress, reason: str
    ) -> Verdict:
        return self._failed(request, source, deny(Error.INVALID_SIP_HEADER, reason))

    def _failed(
        self, request: TerminationRequest, source: SourceAddress, verdict: Verdict
    ) -> Verdict:
        if self.lockout.failed(source):
            LOCKOUTS.inc()
            log.warning(
                "source locked out after repeated authentication failures",
                extra={
                    "source_ip": str(source),
                    "source": source_key(source),
                    "trunk_sid": request.trunk_sid,
                    "failures": self.lockout.failures,
                    "window_seconds": self.lockout.window,
                    "lockout_seconds": self.lockout.duration,
                },
            )
        return verdict

    # caller ID -----------------------------------------------------------------------

    async def authorize_caller(self, request: CallerRequest) -> Verdict:
        return _counted("caller", await self._caller(request))

    async def _caller(self, request: CallerRequest) -> Verdict:
        if not request.account_sid:
            raise InvalidRequest("account_sid is required")
        account = await self.config.get(Account, request.account_sid)
        if account is None:
            return deny(Error.NOT_FOUND, "Account not found")
        if account.status != AccountStatus.ACTIVE:
            return deny(Error.ACCOUNT_NOT_ACTIVE, "Account not active")
        caller_id = request.caller_id
        if not (await self._owns(account, caller_id) or await self._verified(account, caller_id)):
            return deny(
                Error.INVALID_CALLER_ID,
                "Caller ID is not a number of the account or a verified caller ID",
            )
        if account.type != AccountType.TRIAL:
            return allow()
        if not await self._verified(account, request.destination):
            return deny(
                Error.TRIAL_UNVERIFIED_DESTINATION,
                "Trial accounts can only call verified caller IDs",
            )
        verdict = allow()
        verdict.reuse_per_destination = True  # the destination was part of the decision
        return verdict

    async def _owns(self, account: Account, number: str) -> bool:
        if not number:
            return False
        sid = await self.config.holder(claims.PHONE_NUMBER, number)
        if sid is None:
            return False
        record = await self.config.get(PhoneNumber, sid)
        return record is not None and record.account_sid == account.sid

    async def _verified(self, account: Account, number: str) -> bool:
        if not number:
            return False
        sid = await self.config.holder(
            claims.CALLER_ID, claims.caller_id_claim(account.sid, number)
        )
        if sid is None:
            return False
        record = await self.config.get(OutgoingCallerId, sid)
        return record is not None and record.account_sid == account.sid


def _is_digest(value: str) -> bool:
    scheme = value.split(None, 1)
    return bool(scheme) and scheme[0].lower() == "digest"
