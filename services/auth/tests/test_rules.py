"""The auth rules over a real SQLite store: ACLs, digest, both, lockout, caller IDs."""

from __future__ import annotations

import logging

import pytest

from trunkline.auth.lockout import Lockout
from trunkline.auth.rules import Authorizer, InvalidRequest, parse_source
from trunkline.auth.testing import ConfigWriter
from trunkline.digest.sip import (
    DigestClient,
    DigestServer,
    NonceCountGuard,
    parse_challenge,
    parse_credentials,
)
from trunkline.domain.model import AccountStatus, Trunk
from trunkline.store import Repository
from trunkline.store.cache import ConfigCache
from trunkline.v1.auth_pb2 import CallerRequest, TerminationRequest, Verdict

REALM = "trunkline.test"  # as conftest's writer
SECRET = b"nonce-secret-for-tests-0123456789"
NOW = 1_800_000_000.0
PBX = "198.51.100.7"
STRANGER = "203.0.113.9"
URI = "sip:+14155550123@acme.pstn.trunkline.test;transport=udp"
USER = "pbx-main"
PASSWORD = "Correct-Horse-9"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> Clock:
    return Clock(NOW)


@pytest.fixture
def monotonic() -> Clock:
    return Clock(100.0)


@pytest.fixture
def lockout(monotonic: Clock) -> Lockout:
    return Lockout(failures=3, window=60.0, duration=300.0, clock=monotonic)


@pytest.fixture
def authorizer(store: Repository, lockout: Lockout, wall: Clock) -> Authorizer:
    digest = DigestServer(REALM, SECRET, bind_source=True, replay_guard=NonceCountGuard())
    # TTL 0: each test sees its own writes at once (the cache has its tests in libs/store).
    return Authorizer(ConfigCache(store, ttl=0), digest, lockout, clock=wall)


def termination(trunk: Trunk, source: str = PBX, *authorization: str) -> TerminationRequest:
    return TerminationRequest(
        trunk_sid=trunk.sid,
        account_sid=trunk.account_sid,
        source_ip=source,
        transport="UDP",
        method="INVITE",
        request_uri=URI,
        proxy_authorization=list(authorization),
    )


def denied(verdict: Verdict) -> tuple[int, int]:
    assert verdict.outcome == Verdict.DENY, verdict
    assert verdict.reason
    return verdict.sip_status, verdict.error_code


async def answer(
    authorizer: Authorizer,
    trunk: Trunk,
    *,
    password: str = PASSWORD,
    algorithm: str = "SHA-256",
    source: str = PBX,
    user: str = USER,
) -> Verdict:
    """Send the INVITE without credentials, then answer the 407's challenge of `algorithm`."""
    first = await authorizer.authorize_termination(termination(trunk, source))
    assert first.outcome == Verdict.CHALLENGE, first
    [challenge] = [c for c in map(parse_challenge, first.challenges) if c.algorithm == algorithm]
    value = DigestClient(user, password).answer(challenge, method="INVITE", uri=URI)
    return await authorizer.authorize_termination(termination(trunk, source, value))


@pytest.fixture
async def trunk(writer: ConfigWriter) -> Trunk:
    return await writer.trunk(await writer.account())


# --- which trunks may terminate at all --------------------------------------------------


async def test_a_trunk_without_acl_or_credential_list_cannot_terminate(
    authorizer: Authorizer, trunk: Trunk
) -> None:
    verdict = await authorizer.authorize_termination(termination(trunk))
    assert denied(verdict) == (403, 32200)
    assert "no IP access control list" in verdict.reason


async def test_an_unknown_trunk_or_another_accounts_trunk_is_not_found(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, PBX)
    other = await writer.account()
    wrong_account = termination(trunk)
    wrong_account.account_sid = other.sid
    assert denied(await authorizer.authorize_termination(wrong_account)) == (404, 20404)
    missing = termination(trunk)
    missing.trunk_sid = "TK" + "0" * 32
    assert denied(await authorizer.authorize_termination(missing)) == (404, 20404)


async def test_a_broken_request_is_refused(authorizer: Authorizer, trunk: Trunk) -> None:
    with pytest.raises(InvalidRequest, match="source_ip"):
        await authorizer.authorize_termination(termination(trunk, "not-an-address"))
    with pytest.raises(InvalidRequest, match="trunk_sid"):
        await authorizer.authorize_termination(TerminationRequest(source_ip=PBX))


# --- IP access control lists ------------------------------------------------------------


async def test_a_source_in_the_acl_is_allowed(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, PBX)
    verdict = await authorizer.authorize_termination(termination(trunk))
    assert verdict.outcome == Verdict.ALLOW
    assert verdict.username == ""


async def test_a_source_outside_every_acl_gets_403_32201(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, "192.0.2.1")
    await writer.acl(trunk, "192.0.2.2")
    verdict = await authorizer.authorize_termination(termination(trunk, STRANGER))
    assert denied(verdict) == (403, 32201)
    assert verdict.reason == "Source IP address not in ACL"


async def test_a_cidr_24_covers_its_block_only(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, "198.51.100.0/24")
    for inside in ("198.51.100.0", "198.51.100.7", "198.51.100.255"):
        verdict = await authorizer.authorize_termination(termination(trunk, inside))
        assert verdict.outcome == Verdict.ALLOW, inside
    for outside in ("198.51.101.0", "198.51.99.255"):
        verdict = await authorizer.authorize_termination(termination(trunk, outside))
        assert denied(verdict) == (403, 32201), outside


async def test_an_entry_with_host_bits_means_its_whole_block(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, "198.51.100.77/24")
    verdict = await authorizer.authorize_termination(termination(trunk, "198.51.100.1"))
    assert verdict.outcome == Verdict.ALLOW


async def test_ipv6_acls(authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk) -> None:
    await writer.acl(trunk, "2001:db8:1::/48", "2001:db8:ff::5")
    for inside in ("2001:db8:1::1", "2001:db8:1:ffff::9", "2001:DB8:FF::5"):
        verdict = await authorizer.authorize_termination(termination(trunk, inside))
        assert verdict.outcome == Verdict.ALLOW, inside
    for outside in ("2001:db8:2::1", "2001:db8:ff::6", "198.51.100.7"):
        verdict = await authorizer.authorize_termination(termination(trunk, outside))
        assert denied(verdict) == (403, 32201), outside


async def test_an_ipv4_mapped_source_matches_its_ipv4_entry(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, "198.51.100.0/24")
    verdict = await authorizer.authorize_termination(termination(trunk, "::ffff:198.51.100.7"))
    assert verdict.outcome == Verdict.ALLOW
    assert str(parse_source("fe80::1%eth0")) == "fe80::1"


# --- digest credentials -----------------------------------------------------------------


async def test_credentials_only_challenge_with_sha256_then_md5(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    verdict = await authorizer.authorize_termination(termination(trunk))
    assert verdict.outcome == Verdict.CHALLENGE
    challenges = [parse_challenge(value) for value in verdict.challenges]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.realm == REALM and c.qop == ("auth",) and not c.stale for c in challenges)
    assert len({c.nonce for c in challenges}) == 1


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
async def test_the_right_digest_is_allowed(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk, algorithm: str
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    verdict = await answer(authorizer, trunk, algorithm=algorithm)
    assert verdict.outcome == Verdict.ALLOW
    assert verdict.username == USER


async def test_the_client_picks_sha256_from_the_challenge(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    first = await authorizer.authorize_termination(termination(trunk))
    [value] = DigestClient(USER, PASSWORD).authorize(first.challenges, method="INVITE", uri=URI)
    assert parse_credentials(value).algorithm == "SHA-256"
    verdict = await authorizer.authorize_termination(termination(trunk, PBX, value))
    assert verdict.outcome == Verdict.ALLOW


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
async def test_a_wrong_password_gets_403_32202(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk, algorithm: str
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    verdict = await answer(authorizer, trunk, password="Wrong-Horse-99", algorithm=algorithm)
    assert denied(verdict) == (403, 32202)


async def test_an_unknown_user_looks_like_a_wrong_password(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    verdict = await answer(authorizer, trunk, user="somebody-else")
    assert denied(verdict) == (403, 32202)


async def test_a_user_of_another_trunks_list_is_refused(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    other = await writer.trunk(await writer.account())
    await writer.credentials(other, {"intruder": "Intruder-Pass-1"})
    verdict = await answer(authorizer, trunk, user="intruder", password="Intruder-Pass-1")
    assert denied(verdict) == (403, 32202)


async def test_a_name_in_two_lists_may_use_either_password(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    await writer.credentials(trunk, {USER: "Other-Password-2"})
    assert (await answer(authorizer, trunk)).outcome == Verdict.ALLOW
    verdict = await answer(authorizer, trunk, password="Other-Password-2")
    assert verdict.outcome == Verdict.ALLOW


async def test_a_credential_hashed_under_another_realm_never_matches(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD}, realm="old.realm")
    assert denied(await answer(authorizer, trunk)) == (403, 32202)


async def test_an_expired_nonce_with_the_right_password_is_rechallenged_stale(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk, wall: Clock
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    first = await authorizer.authorize_termination(termination(trunk))
    [value] = DigestClient(USER, PASSWORD).authorize(first.challenges, method="INVITE", uri=URI)
    wall.now += 3600
    verdict = await authorizer.authorize_termination(termination(trunk, PBX, value))
    assert verdict.outcome == Verdict.CHALLENGE
    assert all(parse_challenge(c).stale for c in verdict.challenges)
    # ... and the fresh nonce works.
    [again] = DigestClient(USER, PASSWORD).authorize(verdict.challenges, method="INVITE", uri=URI)
    verdict = await authorizer.authorize_termination(termination(trunk, PBX, again))
    assert verdict.outcome == Verdict.ALLOW


async def test_a_replayed_answer_is_rechallenged(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    first = await authorizer.authorize_termination(termination(trunk))
    [value] = DigestClient(USER, PASSWORD).authorize(first.challenges, method="INVITE", uri=URI)
    ok = await authorizer.authorize_termination(termination(trunk, PBX, value))
    assert ok.outcome == Verdict.ALLOW
    replay = await authorizer.authorize_termination(termination(trunk, PBX, value))
    assert replay.outcome == Verdict.CHALLENGE
    assert all(parse_challenge(c).stale for c in replay.challenges)


async def test_a_nonce_answers_only_from_the_address_it_was_sent_to(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    first = await authorizer.authorize_termination(termination(trunk, PBX))
    [value] = DigestClient(USER, PASSWORD).authorize(first.challenges, method="INVITE", uri=URI)
    verdict = await authorizer.authorize_termination(termination(trunk, STRANGER, value))
    assert verdict.outcome == Verdict.CHALLENGE
    assert not any(parse_challenge(c).stale for c in verdict.challenges)


async def test_a_forged_nonce_is_rechallenged_not_counted(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk, lockout: Lockout
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    forged = parse_challenge(
        DigestServer(REALM, b"another-secret-0123456789").challenge(now=NOW)[0]
    )
    value = DigestClient(USER, PASSWORD).answer(forged, method="INVITE", uri=URI)
    for _ in range(lockout.failures + 1):
        verdict = await authorizer.authorize_termination(termination(trunk, PBX, value))
        assert verdict.outcome == Verdict.CHALLENGE


async def test_a_malformed_authorization_gets_400(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    for value in (
        f'Digest username="{USER}", realm="{REALM}", nonce="abc',  # unterminated
        f'Digest username="{USER}", realm="{REALM}", nonce="x", uri="{URI}"',  # no response
    ):
        verdict = await authorizer.authorize_termination(termination(trunk, PBX, value))
        assert denied(verdict) == (400, 32112), value
        assert USER not in verdict.reason


async def test_a_digest_uri_other_than_the_request_uri_gets_400(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    first = await authorizer.authorize_termination(termination(trunk))
    [value] = DigestClient(USER, PASSWORD).authorize(
        first.challenges, method="INVITE", uri="sip:+14155550999@acme.pstn.trunkline.test"
    )
    verdict = await authorizer.authorize_termination(termination(trunk, PBX, value))
    assert denied(verdict) == (400, 32112)


async def test_credentials_for_another_realm_are_left_alone(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    # RFC 3261 22.3: a proxy consumes only credentials of its own realm.
    await writer.credentials(trunk, {USER: PASSWORD})
    theirs = DigestServer("carrier.example", SECRET).challenge(now=NOW)
    [value] = DigestClient(USER, PASSWORD).authorize(theirs, method="INVITE", uri=URI)
    verdict = await authorizer.authorize_termination(termination(trunk, PBX, value, "Basic x"))
    assert verdict.outcome == Verdict.CHALLENGE


# --- both -----------------------------------------------------------------------------


async def test_with_acl_and_credentials_both_are_enforced(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, "198.51.100.0/24")
    await writer.credentials(trunk, {USER: PASSWORD})
    # In the ACL: still challenged, then the digest decides.
    assert (await answer(authorizer, trunk)).outcome == Verdict.ALLOW
    assert denied(await answer(authorizer, trunk, password="Wrong-Horse-99")) == (403, 32202)
    # Outside the ACL: refused even without trying the digest, and with a right one.
    assert denied(await authorizer.authorize_termination(termination(trunk, STRANGER))) == (
        403,
        32201,
    )
    first = await authorizer.authorize_termination(termination(trunk, PBX))
    [value] = DigestClient(USER, PASSWORD).authorize(first.challenges, method="INVITE", uri=URI)
    verdict = await authorizer.authorize_termination(termination(trunk, STRANGER, value))
    assert denied(verdict) == (403, 32201)


# --- lockout ----------------------------------------------------------------------------


async def test_repeated_wrong_passwords_lock_the_source_out(
    authorizer: Authorizer,
    writer: ConfigWriter,
    trunk: Trunk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    caplog.set_level(logging.INFO, logger="trunkline.auth")
    for _ in range(3):  # the lockout fixture allows 3 failures
        verdict = await answer(authorizer, trunk, password="Wrong-Horse-99")
        assert denied(verdict) == (403, 32202)
    # Locked out: no answer at all, not even to the right password or a first INVITE.
    ignored = await authorizer.authorize_termination(termination(trunk))
    assert ignored.outcome == Verdict.IGNORE
    assert ignored.challenges == [] and ignored.sip_status == 0
    # Another source is unaffected.
    assert (await answer(authorizer, trunk, source=STRANGER)).outcome == Verdict.ALLOW
    locked = [r for r in caplog.records if "locked out" in r.getMessage()]
    assert len(locked) == 1
    assert locked[0].source_ip == PBX  # type: ignore[attr-defined]
    for record in caplog.records:
        text = repr(record.__dict__)
        assert PASSWORD not in text and "Wrong-Horse-99" not in text
        assert "response=" not in text and SECRET.decode() not in text


async def test_acl_misses_count_towards_the_lockout(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.acl(trunk, PBX)
    for _ in range(3):
        verdict = await authorizer.authorize_termination(termination(trunk, STRANGER))
        assert denied(verdict) == (403, 32201)
    verdict = await authorizer.authorize_termination(termination(trunk, STRANGER))
    assert verdict.outcome == Verdict.IGNORE
    assert (await authorizer.authorize_termination(termination(trunk))).outcome == Verdict.ALLOW


async def test_challenges_do_not_count_towards_the_lockout(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    for _ in range(10):
        verdict = await authorizer.authorize_termination(termination(trunk))
        assert verdict.outcome == Verdict.CHALLENGE


async def test_the_lockout_ends_after_its_time(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk, monotonic: Clock
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    for _ in range(3):
        await answer(authorizer, trunk, password="Wrong-Horse-99")
    monotonic.now += 299
    verdict = await authorizer.authorize_termination(termination(trunk))
    assert verdict.outcome == Verdict.IGNORE
    monotonic.now += 2
    assert (await answer(authorizer, trunk)).outcome == Verdict.ALLOW


async def test_failures_spread_wider_than_the_window_do_not_lock_out(
    authorizer: Authorizer, writer: ConfigWriter, trunk: Trunk, monotonic: Clock
) -> None:
    await writer.credentials(trunk, {USER: PASSWORD})
    for _ in range(6):
        verdict = await answer(authorizer, trunk, password="Wrong-Horse-99")
        assert denied(verdict) == (403, 32202)
        monotonic.now += 31  # never 3 failures within 60 s


# --- caller ID ----------------------------------------------------------------------------


def caller(account_sid: str, caller_id: str, destination: str = "+14155550123") -> CallerRequest:
    return CallerRequest(account_sid=account_sid, caller_id=caller_id, destination=destination)


async def test_a_number_of_the_account_may_be_presented(
    authorizer: Authorizer, writer: ConfigWriter
) -> None:
    account = await writer.account()
    await writer.number(account, "+14155550100")
    verdict = await authorizer.authorize_caller(caller(account.sid, "+14155550100"))
    assert verdict.outcome == Verdict.ALLOW


async def test_a_verified_caller_id_may_be_presented(
    authorizer: Authorizer, writer: ConfigWriter
) -> None:
    account = await writer.account()
    await writer.caller_id(account, "+4930123456")
    verdict = await authorizer.authorize_caller(caller(account.sid, "+4930123456"))
    assert verdict.outcome == Verdict.ALLOW


async def test_any_other_caller_id_gets_403_21212(
    authorizer: Authorizer, writer: ConfigWriter
) -> None:
    account = await writer.account()
    other = await writer.account()
    await writer.number(other, "+14155550100")  # someone else's number
    await writer.caller_id(other, "+4930123456")  # someone else's caller ID
    for caller_id in ("+14155550100", "+4930123456", "+15005550006", "anonymous", ""):
        verdict = await authorizer.authorize_caller(caller(account.sid, caller_id))
        assert denied(verdict) == (403, 21212), caller_id


async def test_a_trial_account_may_only_call_verified_numbers(
    authorizer: Authorizer, writer: ConfigWriter
) -> None:
    account = await writer.account(trial=True)
    await writer.number(account, "+14155550100")
    await writer.caller_id(account, "+4930123456")
    allowed = await authorizer.authorize_caller(caller(account.sid, "+14155550100", "+4930123456"))
    assert allowed.outcome == Verdict.ALLOW
    verdict = await authorizer.authorize_caller(caller(account.sid, "+14155550100", "+4930999"))
    assert denied(verdict) == (403, 32100)
    # The caller ID rule comes first.
    verdict = await authorizer.authorize_caller(caller(account.sid, "+15005550006", "+4930999"))
    assert denied(verdict) == (403, 21212)


async def test_a_full_account_may_call_anywhere(
    authorizer: Authorizer, writer: ConfigWriter
) -> None:
    account = await writer.account()
    await writer.number(account, "+14155550100")
    verdict = await authorizer.authorize_caller(caller(account.sid, "+14155550100", "+4930999"))
    assert verdict.outcome == Verdict.ALLOW


async def test_an_inactive_or_unknown_account_may_not_call(
    authorizer: Authorizer, writer: ConfigWriter
) -> None:
    suspended = await writer.account(status=AccountStatus.SUSPENDED)
    await writer.number(suspended, "+14155550100")
    verdict = await authorizer.authorize_caller(caller(suspended.sid, "+14155550100"))
    assert denied(verdict) == (403, 20005)
    verdict = await authorizer.authorize_caller(caller("AC" + "0" * 32, "+14155550100"))
    assert denied(verdict) == (404, 20404)
    with pytest.raises(InvalidRequest):
        await authorizer.authorize_caller(CallerRequest(caller_id="+14155550100"))


async def test_termination_with_a_caller_applies_the_caller_rules_in_the_same_round_trip(
    authorizer: Authorizer, writer: ConfigWriter
) -> None:
    account = await writer.account()
    trunk = await writer.trunk(account)
    await writer.acl(trunk, PBX)
    await writer.number(account, "+14155550100")
    allowed = termination(trunk)
    allowed.caller.CopyFrom(caller(account.sid, "+14155550100"))
    assert (await authorizer.authorize_termination(allowed)).outcome == Verdict.ALLOW
    refused = termination(trunk)
    refused.caller.CopyFrom(caller(account.sid, "+15005550006"))
    assert denied(await authorizer.authorize_termination(refused)) == (403, 21212)
    stranger = termination(trunk, STRANGER)
    stranger.caller.CopyFrom(caller(account.sid, "+15005550006"))
    # The source is checked first: a caller problem never hides an ACL refusal.
    assert denied(await authorizer.authorize_termination(stranger)) == (403, 32201)


# --- reusable verdicts ------------------------------------------------------------------


def reusing(store: Repository, lockout: Lockout, wall: Clock, *, ttl: float = 30.0) -> Authorizer:
    digest = DigestServer(REALM, SECRET, bind_source=True, replay_guard=NonceCountGuard())
    return Authorizer(ConfigCache(store, ttl=ttl), digest, lockout, clock=wall, verdict_reuse=10)


async def test_only_an_acl_allow_may_be_reused(
    store: Repository, lockout: Lockout, wall: Clock, writer: ConfigWriter
) -> None:
    authorizer = reusing(store, lockout, wall)
    account = await writer.account()
    await writer.number(account, "+14155550100")
    acl_only = await writer.trunk(account)
    await writer.acl(acl_only, PBX)
    request = termination(acl_only)
    request.caller.CopyFrom(caller(account.sid, "+14155550100"))
    verdict = await authorizer.authorize_termination(request)
    assert verdict.outcome == Verdict.ALLOW
    assert (verdict.reuse_seconds, verdict.reuse_per_destination) == (10, False)
    # A refusal is never reusable: signaling asks again, and the failure is counted.
    refused = await authorizer.authorize_termination(termination(acl_only, STRANGER))
    assert denied(refused) == (403, 32201) and refused.reuse_seconds == 0
    bad_caller = termination(acl_only)
    bad_caller.caller.CopyFrom(caller(account.sid, "+15005550006"))
    assert (await authorizer.authorize_termination(bad_caller)).reuse_seconds == 0
    # A digest allow rests on the request's own credentials: never reused, with or
    # without an ACL in front of it.
    both = await writer.trunk(account)
    await writer.acl(both, PBX)
    await writer.credentials(both, {USER: PASSWORD})
    digest = await answer(authorizer, both)
    assert digest.outcome == Verdict.ALLOW and digest.reuse_seconds == 0


async def test_a_trial_accounts_verdict_is_reused_per_destination(
    store: Repository, lockout: Lockout, wall: Clock, writer: ConfigWriter
) -> None:
    authorizer = reusing(store, lockout, wall)
    account = await writer.account(trial=True)
    await writer.number(account, "+14155550100")
    await writer.caller_id(account, "+4930123456")
    trunk = await writer.trunk(account)
    await writer.acl(trunk, PBX)
    request = termination(trunk)
    request.caller.CopyFrom(caller(account.sid, "+14155550100", "+4930123456"))
    verdict = await authorizer.authorize_termination(request)
    assert verdict.outcome == Verdict.ALLOW
    assert (verdict.reuse_seconds, verdict.reuse_per_destination) == (10, True)


async def test_a_verdict_is_reused_no_longer_than_configuration_is_cached(
    store: Repository, lockout: Lockout, wall: Clock, writer: ConfigWriter
) -> None:
    trunk = await writer.trunk(await writer.account())
    await writer.acl(trunk, PBX)
    short = reusing(store, lockout, wall, ttl=4.5)
    assert (await short.authorize_termination(termination(trunk))).reuse_seconds == 4
    uncached = reusing(store, lockout, wall, ttl=0)
    assert (await uncached.authorize_termination(termination(trunk))).reuse_seconds == 0
