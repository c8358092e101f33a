"""Digest authentication (RFC 7616, RFC 8760, RFC 3261 22): vectors, round trips, hostility."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.digest.sip import (
    MAX_HEADER_LENGTH,
    Authenticated,
    AuthKind,
    BadCredentials,
    Challenge,
    DigestClient,
    DigestError,
    DigestServer,
    Malformed,
    NonceCountGuard,
    StaleNonce,
    Verdict,
    digest_response,
    parse_auth_params,
    parse_challenge,
    parse_credentials,
)
from trunkline.domain.credentials import ha1

# RFC 7616 3.9.1
RFC_USER = "Mufasa"
RFC_PASSWORD = "Circle of Life"
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_URI = "/dir/index.html"
RFC_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"

SECRET = b"s" * 32
REALM = "sip.trunkline.example"
USER = "alice"
PASSWORD = "Correct-Horse-9"
URI = "sip:+14155550100@sip.trunkline.example;transport=tcp"
NOW = 1_700_000_000.0


def lookup_for(password: str = PASSWORD, user: str = USER) -> Callable[[str, str], str | None]:
    def lookup(username: str, algorithm: str) -> str | None:
        return ha1(algorithm, username, REALM, password) if username == user else None

    return lookup


def login(
    server: DigestServer,
    client: DigestClient,
    *,
    method: str = "INVITE",
    uri: str = URI,
    issued: float = NOW,
    at: float = NOW,
    request_uri: str | None = None,
    password: str = PASSWORD,
) -> Verdict:
    [value] = client.authorize(server.challenge(now=issued), method=method, uri=uri)
    return server.verify(
        value,
        method=method,
        request_uri=request_uri or uri,
        lookup=lookup_for(password),
        now=at,
    )


@pytest.fixture
def server() -> DigestServer:
    return DigestServer(REALM, SECRET)


@pytest.fixture
def client() -> DigestClient:
    return DigestClient(USER, PASSWORD)


# --- RFC 7616 test vectors ----------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC_MD5), ("SHA-256", RFC_SHA256)])
def test_rfc7616_3_9_1_response(algorithm: str, expected: str) -> None:
    response = digest_response(
        algorithm,
        ha1=ha1(algorithm, RFC_USER, RFC_REALM, RFC_PASSWORD),
        nonce=RFC_NONCE,
        method="GET",
        uri=RFC_URI,
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
    )
    assert response == expected


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC_MD5), ("SHA-256", RFC_SHA256)])
def test_client_answers_the_rfc7616_3_9_1_challenge(algorithm: str, expected: str) -> None:
    challenge = (
        f'Digest realm="{RFC_REALM}", qop="auth", algorithm={algorithm}, '
        f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )
    client = DigestClient(RFC_USER, RFC_PASSWORD, cnonce_factory=lambda: RFC_CNONCE)
    [value] = client.authorize([challenge], method="GET", uri=RFC_URI)
    credentials = parse_credentials(value)
    assert credentials.response == expected
    assert credentials.username == RFC_USER
    assert credentials.realm == RFC_REALM
    assert credentials.nonce == RFC_NONCE
    assert credentials.opaque == RFC_OPAQUE
    assert credentials.algorithm == algorithm
    assert (credentials.qop, credentials.nc, credentials.cnonce) == ("auth", "00000001", RFC_CNONCE)


def test_rfc7616_3_9_2_sha512_256_response() -> None:
    # The response printed in RFC 7616 3.9.2 does not follow from its own formula (reported
    # as erratum 4897); this is what section 3.4.1 gives for the example's inputs.
    client = DigestClient(
        "J\u00e4s\u00f8n Doe",
        "Secret, or not?",
        cnonce_factory=lambda: "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )
    challenge = (
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8'
    )
    [value] = client.authorize([challenge], method="GET", uri="/doe.json")
    assert parse_credentials(value).response == (
        "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
    )


def test_rfc2069_response_without_qop() -> None:
    # RFC 2069 / RFC 2617 3.2.2.1: response = H(HA1:nonce:HA2) when qop is absent.
    ha1_md5 = ha1("MD5", RFC_USER, RFC_REALM, RFC_PASSWORD)
    ha2 = hashlib.md5(f"GET:{RFC_URI}".encode(), usedforsecurity=False).hexdigest()
    expected = hashlib.md5(
        f"{ha1_md5}:{RFC_NONCE}:{ha2}".encode(), usedforsecurity=False
    ).hexdigest()
    got = digest_response("MD5", ha1=ha1_md5, nonce=RFC_NONCE, method="GET", uri=RFC_URI, qop=None)
    assert got == expected


def test_digest_response_rejects_misuse() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        digest_response("SHA-1", ha1="x", nonce="n", method="M", uri="u", qop=None)
    with pytest.raises(ValueError, match="cnonce"):
        digest_response("MD5-sess", ha1="x", nonce="n", method="M", uri="u", qop=None)
    with pytest.raises(ValueError, match="nc"):
        digest_response("MD5", ha1="x", nonce="n", method="M", uri="u", qop="auth")


# --- challenges ---------------------------------------------------------------------------


def test_challenge_offers_sha256_then_md5_with_one_nonce(server: DigestServer) -> None:
    values = server.challenge(now=NOW)
    challenges = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.realm == REALM and c.qop == ("auth",) and not c.stale for c in challenges)
    assert challenges[0].nonce == challenges[1].nonce
    assert challenges[0].opaque == server.opaque
    assert 'qop="auth"' in values[0]
    assert "stale" not in values[0]


def test_stale_challenge_says_stale_true(server: DigestServer) -> None:
    values = server.challenge(now=NOW, stale=True)
    assert all(v.endswith("stale=true") for v in values)
    assert all(parse_challenge(v).stale for v in values)


def test_each_challenge_has_a_fresh_nonce(server: DigestServer) -> None:
    first = parse_challenge(server.challenge(now=NOW)[0]).nonce
    second = parse_challenge(server.challenge(now=NOW)[0]).nonce
    assert first != second


def test_auth_kind_names_the_headers() -> None:
    assert (AuthKind.USER.status, AuthKind.USER.challenge_header) == (401, "WWW-Authenticate")
    assert AuthKind.USER.credentials_header == "Authorization"
    assert (AuthKind.PROXY.status, AuthKind.PROXY.challenge_header) == (407, "Proxy-Authenticate")
    assert AuthKind.PROXY.credentials_header == "Proxy-Authorization"


def test_server_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DigestServer(REALM, b"short")
    with pytest.raises(ValueError, match="16 bytes"):
        DigestServer(REALM, SECRET, previous_secrets=[b"old"])
    with pytest.raises(ValueError, match="no HA1"):
        DigestServer(REALM, SECRET, algorithms=["SHA-512-256"])
    with pytest.raises(ValueError, match="no HA1"):
        DigestServer(REALM, SECRET, algorithms=["SHA-1"])
    with pytest.raises(ValueError, match="at least one"):
        DigestServer(REALM, SECRET, algorithms=[])
    with pytest.raises(ValueError, match="lifetime"):
        DigestServer(REALM, SECRET, nonce_lifetime=0)
    with pytest.raises(ValueError, match="control"):
        DigestServer("bad\r\nrealm", SECRET)


# --- round trips --------------------------------------------------------------------------


def test_round_trip_picks_sha256(server: DigestServer, client: DigestClient) -> None:
    assert login(server, client) == Authenticated(USER, "SHA-256")


def test_round_trip_with_md5_only() -> None:
    server = DigestServer(REALM, SECRET, algorithms=["MD5"])
    assert login(server, DigestClient(USER, PASSWORD)) == Authenticated(USER, "MD5")


@pytest.mark.parametrize("algorithm", ["MD5-sess", "SHA-256-sess"])
def test_round_trip_with_session_algorithms(algorithm: str) -> None:
    server = DigestServer(REALM, SECRET, algorithms=[algorithm])
    assert login(server, DigestClient(USER, PASSWORD)) == Authenticated(USER, algorithm)


def test_round_trip_for_a_register(server: DigestServer, client: DigestClient) -> None:
    uri = "sip:sip.trunkline.example"
    assert login(server, client, method="REGISTER", uri=uri) == Authenticated(USER, "SHA-256")


def test_client_counts_requests_per_nonce(server: DigestServer, client: DigestClient) -> None:
    challenges = server.challenge(now=NOW)
    ncs = [
        parse_credentials(client.authorize(challenges, method="INVITE", uri=URI)[0]).nc
        for _ in range(3)
    ]
    assert ncs == ["00000001", "00000002", "00000003"]
    fresh = server.challenge(now=NOW)
    assert parse_credentials(client.authorize(fresh, method="INVITE", uri=URI)[0]).nc == (
        "00000001"
    )


def test_client_cnonces_differ(server: DigestServer, client: DigestClient) -> None:
    challenges = server.challenge(now=NOW)
    first = parse_credentials(client.authorize(challenges, method="INVITE", uri=URI)[0])
    second = parse_credentials(client.authorize(challenges, method="INVITE", uri=URI)[0])
    assert first.cnonce != second.cnonce


def test_nonce_is_good_within_its_lifetime(server: DigestServer, client: DigestClient) -> None:
    assert login(server, client, at=NOW + 299) == Authenticated(USER, "SHA-256")


def test_verify_with_check_and_a_prefetched_ha1(server: DigestServer) -> None:
    client = DigestClient(USER, PASSWORD)
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    credentials = parse_credentials(value)
    stored = ha1("SHA-256", credentials.username, REALM, PASSWORD)
    verdict = server.check(credentials, method="INVITE", request_uri=URI, ha1=stored, now=NOW)
    assert verdict == Authenticated(USER, "SHA-256")


def test_check_skips_the_lookup_for_a_forged_nonce(server: DigestServer) -> None:
    calls: list[str] = []

    def fetch() -> str | None:
        calls.append("fetched")
        return None

    forged = Challenge(realm=REALM, nonce="forged", algorithm="SHA-256", qop=("auth",))
    value = DigestClient(USER, PASSWORD).answer(forged, method="INVITE", uri=URI)
    verdict = server.check(
        parse_credentials(value), method="INVITE", request_uri=URI, ha1=fetch, now=NOW
    )
    assert verdict == BadCredentials("Invalid nonce", rechallenge=True)
    assert calls == []


# --- stale, tampered and foreign nonces ---------------------------------------------------


def test_expired_nonce_with_the_right_password_is_stale(
    server: DigestServer, client: DigestClient
) -> None:
    assert login(server, client, at=NOW + 301) == StaleNonce("Nonce expired")


def test_expired_nonce_with_a_wrong_password_is_not_stale(server: DigestServer) -> None:
    # RFC 7616 3.3: stale=true only for a valid digest.
    client = DigestClient(USER, "wrong-password-1A")
    assert login(server, client, at=NOW + 301) == BadCredentials("Wrong password")


def test_nonce_lifetime_is_configurable(client: DigestClient) -> None:
    server = DigestServer(REALM, SECRET, nonce_lifetime=10)
    assert login(server, client, at=NOW + 10) == Authenticated(USER, "SHA-256")
    assert login(server, client, at=NOW + 11) == StaleNonce("Nonce expired")


def test_nonce_from_the_future_is_invalid(server: DigestServer, client: DigestClient) -> None:
    verdict = login(server, client, issued=NOW + 3600, at=NOW)
    assert verdict == BadCredentials("Invalid nonce", rechallenge=True)


def test_small_clock_skew_between_pods_is_tolerated(
    server: DigestServer, client: DigestClient
) -> None:
    assert login(server, client, issued=NOW + 5, at=NOW) == Authenticated(USER, "SHA-256")


def _answer_with_nonce(nonce: str) -> str:
    challenge = Challenge(realm=REALM, nonce=nonce, algorithm="SHA-256", qop=("auth",))
    return DigestClient(USER, PASSWORD).answer(challenge, method="INVITE", uri=URI)


def _verify(server: DigestServer, value: str, *, now: float = NOW, **kw: str) -> Verdict:
    return server.verify(
        value, method="INVITE", request_uri=URI, lookup=lookup_for(), now=now, **kw
    )


@pytest.mark.parametrize("position", [0, 1, 9, 17, 30, 43])
def test_tampered_nonce_is_invalid(server: DigestServer, position: int) -> None:
    nonce = parse_challenge(server.challenge(now=NOW)[0]).nonce
    flipped = "A" if nonce[position] != "A" else "B"
    tampered = nonce[:position] + flipped + nonce[position + 1 :]
    verdict = _verify(server, _answer_with_nonce(tampered))
    assert verdict == BadCredentials("Invalid nonce", rechallenge=True)


@pytest.mark.parametrize(
    "nonce",
    ["", "abc", "!" * 44, "A" * 43, "A" * 45, "A" * 44, "é" * 44, "A" * 4000],
)
def test_foreign_nonce_is_invalid(server: DigestServer, nonce: str) -> None:
    verdict = _verify(server, _answer_with_nonce(nonce))
    assert verdict == BadCredentials("Invalid nonce", rechallenge=True)


def test_nonce_with_padding_or_stray_characters_is_invalid(server: DigestServer) -> None:
    nonce = parse_challenge(server.challenge(now=NOW)[0]).nonce
    for variant in (nonce + "=", nonce[:20] + "." + nonce[20:], " " + nonce):
        verdict = _verify(server, _answer_with_nonce(variant))
        assert verdict == BadCredentials("Invalid nonce", rechallenge=True)


def test_nonce_from_another_realm_is_invalid(client: DigestClient) -> None:
    other = DigestServer("other.example", SECRET)
    nonce = parse_challenge(other.challenge(now=NOW)[0]).nonce
    verdict = _verify(DigestServer(REALM, SECRET), _answer_with_nonce(nonce))
    assert verdict == BadCredentials("Invalid nonce", rechallenge=True)


def test_another_pod_with_the_secret_verifies_the_nonce(client: DigestClient) -> None:
    issuing, verifying = DigestServer(REALM, SECRET), DigestServer(REALM, SECRET)
    [value] = client.authorize(issuing.challenge(now=NOW), method="INVITE", uri=URI)
    assert _verify(verifying, value) == Authenticated(USER, "SHA-256")


def test_rotated_secret_still_verifies_nonces_in_flight(client: DigestClient) -> None:
    old = DigestServer(REALM, SECRET)
    [value] = client.authorize(old.challenge(now=NOW), method="INVITE", uri=URI)
    rotated = DigestServer(REALM, b"n" * 32, previous_secrets=[SECRET])
    assert _verify(rotated, value) == Authenticated(USER, "SHA-256")
    forgotten = DigestServer(REALM, b"n" * 32)
    assert _verify(forgotten, value) == BadCredentials("Invalid nonce", rechallenge=True)


def test_nonce_bound_to_the_source_address(client: DigestClient) -> None:
    server = DigestServer(REALM, SECRET, bind_source=True)
    challenges = server.challenge(now=NOW, source="192.0.2.10")
    [value] = client.authorize(challenges, method="INVITE", uri=URI)
    assert _verify(server, value, source="192.0.2.10") == Authenticated(USER, "SHA-256")
    assert _verify(server, value, source="192.0.2.11") == BadCredentials(
        "Invalid nonce", rechallenge=True
    )
    with pytest.raises(ValueError, match="source"):
        server.challenge(now=NOW)


def test_unbound_server_ignores_the_source(server: DigestServer, client: DigestClient) -> None:
    [value] = client.authorize(
        server.challenge(now=NOW, source="192.0.2.10"), method="INVITE", uri=URI
    )
    assert _verify(server, value, source="198.51.100.7") == Authenticated(USER, "SHA-256")


# --- wrong credentials --------------------------------------------------------------------


def test_wrong_password(server: DigestServer) -> None:
    verdict = login(server, DigestClient(USER, "Not-the-password-1"))
    assert verdict == BadCredentials("Wrong password")
    assert isinstance(verdict, BadCredentials) and not verdict.rechallenge


def test_unknown_user(server: DigestServer) -> None:
    assert login(server, DigestClient("mallory", PASSWORD)) == BadCredentials("Unknown user")


def test_credentials_for_another_realm(server: DigestServer, client: DigestClient) -> None:
    nonce = parse_challenge(server.challenge(now=NOW)[0]).nonce
    challenge = Challenge(realm="elsewhere", nonce=nonce, algorithm="SHA-256", qop=("auth",))
    value = client.answer(challenge, method="INVITE", uri=URI)
    assert _verify(server, value) == BadCredentials("Realm mismatch", rechallenge=True)


def test_credentials_for_another_uri(server: DigestServer, client: DigestClient) -> None:
    # RFC 7616 3.4.6: a uri naming another resource is answered 400.
    verdict = login(server, client, uri=URI, request_uri="sip:+14155550199@sip.example")
    assert verdict == Malformed("URI mismatch")


def test_credentials_for_another_method(server: DigestServer, client: DigestClient) -> None:
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    verdict = server.verify(value, method="BYE", request_uri=URI, lookup=lookup_for(), now=NOW)
    assert verdict == BadCredentials("Wrong password")


def test_changed_opaque(server: DigestServer, client: DigestClient) -> None:
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    changed = value.replace(server.opaque, "0" * 32)
    assert _verify(server, changed) == BadCredentials("Opaque mismatch", rechallenge=True)


def test_missing_opaque_is_tolerated(server: DigestServer, client: DigestClient) -> None:
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    without = value.replace(f', opaque="{server.opaque}"', "")
    assert "opaque" not in without
    assert _verify(server, without) == Authenticated(USER, "SHA-256")


def test_upper_case_response_is_accepted(server: DigestServer, client: DigestClient) -> None:
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    response = parse_credentials(value).response
    assert _verify(server, value.replace(response, response.upper())) == Authenticated(
        USER, "SHA-256"
    )


def test_tampered_response(server: DigestServer, client: DigestClient) -> None:
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    response = parse_credentials(value).response
    forged = ("0" if response[0] != "0" else "1") + response[1:]
    assert _verify(server, value.replace(response, forged)) == BadCredentials("Wrong password")


def test_tampered_cnonce_or_nc(server: DigestServer, client: DigestClient) -> None:
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    cnonce = parse_credentials(value).cnonce
    assert cnonce is not None
    assert _verify(server, value.replace(cnonce, "x" + cnonce)) == BadCredentials("Wrong password")
    assert _verify(server, value.replace("nc=00000001", "nc=00000002")) == BadCredentials(
        "Wrong password"
    )


# --- replays ------------------------------------------------------------------------------


def test_replayed_nonce_count_is_stale_with_a_guard(client: DigestClient) -> None:
    server = DigestServer(REALM, SECRET, replay_guard=NonceCountGuard())
    challenges = server.challenge(now=NOW)
    [first] = client.authorize(challenges, method="INVITE", uri=URI)
    [second] = client.authorize(challenges, method="INVITE", uri=URI)
    assert _verify(server, first) == Authenticated(USER, "SHA-256")
    assert _verify(server, first) == StaleNonce("Nonce count reused")
    assert _verify(server, second) == Authenticated(USER, "SHA-256")
    assert _verify(server, second) == StaleNonce("Nonce count reused")


def test_replay_guard_ignores_failed_attempts(client: DigestClient) -> None:
    # A forged response must not burn the nc of the honest UA that holds the nonce.
    server = DigestServer(REALM, SECRET, replay_guard=NonceCountGuard())
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    response = parse_credentials(value).response
    assert _verify(server, value.replace(response, "0" * 64)) == BadCredentials("Wrong password")
    assert _verify(server, value) == Authenticated(USER, "SHA-256")


def test_without_a_guard_a_replay_is_only_bounded_by_the_lifetime(
    server: DigestServer, client: DigestClient
) -> None:
    [value] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    assert _verify(server, value) == Authenticated(USER, "SHA-256")
    assert _verify(server, value) == Authenticated(USER, "SHA-256")
    assert _verify(server, value, now=NOW + 301) == StaleNonce("Nonce expired")


def test_guard_accepts_out_of_order_counts_within_its_window() -> None:
    guard = NonceCountGuard(window=8)
    accept = [guard.accept("n", nc, now=0, expires=10) for nc in (1, 3, 2, 3, 10, 4, 2, 9, 10)]
    assert accept == [True, True, True, False, True, True, False, True, False]


def test_guard_forgets_expired_nonces_and_stays_bounded() -> None:
    guard = NonceCountGuard(max_nonces=3)
    for i in range(10):
        assert guard.accept(f"n{i}", 1, now=0, expires=100)
    assert len(guard) == 3
    assert guard.accept("n9", 2, now=0, expires=100)
    assert not guard.accept("n9", 2, now=0, expires=100)
    assert guard.accept("later", 1, now=200, expires=300)
    assert len(guard) == 1
    with pytest.raises(ValueError):
        NonceCountGuard(window=0)


def test_rfc2069_nonce_is_single_use_with_a_guard() -> None:
    server = DigestServer(REALM, SECRET, allow_rfc2069=True, replay_guard=NonceCountGuard())
    nonce = parse_challenge(server.challenge(now=NOW)[0]).nonce
    legacy = Challenge(realm=REALM, nonce=nonce, algorithm="SHA-256", opaque=server.opaque)
    value = DigestClient(USER, PASSWORD).answer(legacy, method="INVITE", uri=URI)
    assert _verify(server, value) == Authenticated(USER, "SHA-256")
    assert _verify(server, value) == StaleNonce("Nonce count reused")


# --- malformed headers --------------------------------------------------------------------


def _valid(server: DigestServer) -> str:
    client = DigestClient(USER, PASSWORD)
    return client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)[0]


@pytest.mark.parametrize("param", ["username", "realm", "nonce", "uri", "response"])
def test_missing_required_parameter(server: DigestServer, param: str) -> None:
    params = parse_auth_params(_valid(server)[len("Digest ") :])
    del params[param]
    value = "Digest " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    assert _verify(server, value) == Malformed(f"Missing {param}")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "Unsupported authentication scheme"),
        ("Digest", "Missing username"),
        ("Basic dXNlcjpwYXNz", "Unsupported authentication scheme"),
        ('Digest username="alice', "Unterminated quoted string"),
        ('Digest username="alice\\"', "Unterminated quoted string"),
        ('Digest username="al\x00ice"', "Invalid character in quoted string"),
        ('Digest username="al\\\rice"', "Invalid character in quoted string"),
        ('Digest username="a", username="b"', "Duplicate username"),
        ('Digest username="a", USERNAME="b"', "Duplicate username"),
        ('Digest username="a", x-a=1, x-a=2', "Duplicate parameter"),
        ('Digest username "a"', "Missing value for username"),
        ("Digest username=", "Missing value for username"),
        ('Digest username="a" realm="b"', "Expected a comma after username"),
        ("Digest =x", "Invalid authentication parameter name"),
        ('Digest username="a", (x)=1', "Invalid authentication parameter name"),
        ("Digest " + ", ".join(f"p{i}=1" for i in range(40)), "Too many authentication parameters"),
        ('Digest username="' + "a" * MAX_HEADER_LENGTH + '"', "Authentication header too long"),
        ('Digest username="\udcff\udc00\ud800"', "Invalid character in authentication header"),
    ],
)
def test_malformed_header(server: DigestServer, value: str, reason: str) -> None:
    assert _verify(server, value) == Malformed(reason)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("qop=auth, ", "qop=auth-int, "), "Unsupported qop"),
        (("algorithm=SHA-256", "algorithm=SHA-1"), "Unsupported algorithm"),
        (("algorithm=SHA-256", "algorithm=MD5-sess"), "Unsupported algorithm"),
        (("nc=00000001", "nc=1"), "Invalid nc"),
        (("nc=00000001", "nc=0000000g"), "Invalid nc"),
        (("qop=auth, nc=00000001", "qop=auth"), "Missing nc"),
    ],
)
def test_malformed_credentials(server: DigestServer, change: tuple[str, str], reason: str) -> None:
    value = _valid(server)
    assert change[0] in value
    assert _verify(server, value.replace(*change)) == Malformed(reason)


def test_missing_cnonce(server: DigestServer) -> None:
    value = _valid(server)
    cnonce = parse_credentials(value).cnonce
    assert _verify(server, value.replace(f', cnonce="{cnonce}"', "")) == Malformed("Missing cnonce")


def test_missing_qop_is_refused_unless_rfc2069_is_allowed(server: DigestServer) -> None:
    nonce = parse_challenge(server.challenge(now=NOW)[0]).nonce
    legacy = Challenge(realm=REALM, nonce=nonce, algorithm="SHA-256")
    value = DigestClient(USER, PASSWORD).answer(legacy, method="INVITE", uri=URI)
    assert _verify(server, value) == Malformed("Missing qop")
    lenient = DigestServer(REALM, SECRET, allow_rfc2069=True)
    assert _verify(lenient, value) == Authenticated(USER, "SHA-256")


def test_response_of_the_wrong_length(server: DigestServer) -> None:
    value = _valid(server)
    response = parse_credentials(value).response
    for bad in (response[:32], response + "0", "z" * 64, ""):
        assert _verify(server, value.replace(response, bad)) == Malformed("Invalid response")


def test_userhash_is_not_offered(server: DigestServer) -> None:
    assert _verify(server, _valid(server) + ", userhash=true") == Malformed("Unsupported userhash")


def test_absent_algorithm_means_md5() -> None:
    server = DigestServer(REALM, SECRET, algorithms=["MD5"])
    value = _valid(server).replace(", algorithm=MD5", "")
    assert "algorithm" not in value
    assert _verify(server, value) == Authenticated(USER, "MD5")


def test_reasons_never_echo_the_input(server: DigestServer) -> None:
    verdict = _verify(server, 'Digest evil\r\nX-Injected: 1="a"')
    assert isinstance(verdict, Malformed)
    assert "\r" not in verdict.reason and "Injected" not in verdict.reason


# --- the auth-param parser ----------------------------------------------------------------


def test_parser_handles_quotes_commas_and_escapes() -> None:
    params = parse_auth_params(
        'realm="a, b", nonce="x\\"y\\\\z", Opaque="", qop="auth,auth-int",'
        ' algorithm=MD5 , x-vendor="v", uri=sip:bob@example.com;transport=tcp'
    )
    assert params == {
        "realm": "a, b",
        "nonce": 'x"y\\z',
        "opaque": "",
        "qop": "auth,auth-int",
        "algorithm": "MD5",
        "x-vendor": "v",
        "uri": "sip:bob@example.com;transport=tcp",
    }


def test_parser_tolerates_blanks_and_empty_list_elements() -> None:
    assert parse_auth_params(' ,, a = "1" ,\tb=2,, ') == {"a": "1", "b": "2"}
    assert parse_auth_params("") == {}


def test_parser_accepts_utf8_in_quoted_strings() -> None:
    assert parse_auth_params('username="J\u00e4s\u00f8n"') == {"username": "J\u00e4s\u00f8n"}


def test_scheme_is_case_insensitive_and_params_are_kept() -> None:
    credentials = parse_credentials(
        'DIGEST  username="a", realm="r", nonce="n", uri="u", response="x", x-extra="1"'
    )
    assert credentials.username == "a"
    assert credentials.params["x-extra"] == "1"
    assert credentials.algorithm == "MD5"
    assert credentials.qop is None


def test_username_star_rfc8187() -> None:
    credentials = parse_credentials(
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n",'
        ' uri="u", response="x"'
    )
    assert credentials.username == "J\u00e4s\u00f8n Doe"
    for bad in ("latin-1''x", "UTF-8'x", "UTF-8''%ff"):
        with pytest.raises(DigestError, match="username"):
            parse_credentials(f'Digest username*={bad}, realm="r"')
    with pytest.raises(DigestError, match="Both"):
        parse_credentials("Digest username=\"a\", username*=UTF-8''a")


def test_parse_challenge_reads_the_options() -> None:
    challenge = parse_challenge(
        'Digest realm="r", nonce="n", qop="auth-int, auth", algorithm=sha-256-SESS,'
        ' stale=TRUE, opaque="o", domain="sip:a sip:b"'
    )
    assert challenge.qop == ("auth-int", "auth")
    assert challenge.algorithm == "SHA-256-sess"
    assert challenge.stale is True
    assert challenge.opaque == "o"
    assert challenge.params["domain"] == "sip:a sip:b"
    with pytest.raises(DigestError, match="Missing nonce"):
        parse_challenge('Digest realm="r"')


def test_select_finds_the_credentials_for_our_realm(server: DigestServer) -> None:
    ours = _valid(server)
    theirs = 'Digest username="x", realm="upstream.example", nonce="n", uri="u", response="r"'
    assert server.select([theirs, "garbage", ours]) == ours
    assert server.select([theirs, 'Digest realm="unterminated']) is None


_TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from('"\\=, \t'), max_size=200)


@given(_TEXT)
@settings(max_examples=500, deadline=None)
def test_parser_raises_nothing_but_digest_error(text: str) -> None:
    try:
        params = parse_auth_params(text)
    except DigestError as error:
        assert error.reason and "\n" not in error.reason
    else:
        assert all(name == name.lower() for name in params)


@given(st.text(st.characters(exclude_categories=()), max_size=300))
@settings(max_examples=500, deadline=None)
def test_any_text_parses_or_raises_digest_error(text: str) -> None:
    for parse in (parse_auth_params, parse_challenge, parse_credentials):
        with contextlib.suppress(DigestError):
            parse(text)


_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
_VALUES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]) | st.just("\t"),
    max_size=40,
)


@given(st.dictionaries(_NAMES, _VALUES, max_size=10))
@settings(max_examples=300, deadline=None)
def test_quoted_values_round_trip(params: dict[str, str]) -> None:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    text = ", ".join(f"{name}={quote(value)}" for name, value in params.items())
    assert parse_auth_params(text) == params


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_verify_returns_a_verdict_for_any_text(text: str) -> None:
    server = DigestServer(REALM, SECRET, replay_guard=NonceCountGuard())
    for value in (text, "Digest " + text):
        verdict = _verify(server, value)
        assert isinstance(verdict, Authenticated | StaleNonce | BadCredentials | Malformed)
        assert not isinstance(verdict, Authenticated)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_verify_survives_mutations_of_a_valid_header(data: st.DataObject) -> None:
    server = DigestServer(REALM, SECRET)
    value = _valid(server)
    start = data.draw(st.integers(0, len(value)))
    stop = data.draw(st.integers(start, min(len(value), start + 8)))
    insert = data.draw(st.text(alphabet='"\\,= \t\r\nabc\x00\u00e4', max_size=6))
    mutated = value[:start] + insert + value[stop:]
    verdict = _verify(server, mutated)
    assert isinstance(verdict, Authenticated | StaleNonce | BadCredentials | Malformed)


# --- the client ---------------------------------------------------------------------------


def test_client_prefers_sha256_whatever_the_order(server: DigestServer) -> None:
    md5_first = list(reversed(server.challenge(now=NOW)))
    [value] = DigestClient(USER, PASSWORD).authorize(md5_first, method="INVITE", uri=URI)
    assert parse_credentials(value).algorithm == "SHA-256"
    assert _verify(server, value) == Authenticated(USER, "SHA-256")


def test_client_prefers_sha512_256_when_offered() -> None:
    offered = [
        'Digest realm="c", nonce="n", algorithm=MD5, qop="auth"',
        'Digest realm="c", nonce="n", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="c", nonce="n", algorithm=SHA-256, qop="auth"',
    ]
    [value] = DigestClient(USER, PASSWORD).authorize(offered, method="INVITE", uri=URI)
    assert parse_credentials(value).algorithm == "SHA-512-256"


def test_client_answers_each_realm_once() -> None:
    # RFC 3261 22.3: each proxy that challenges gets its own Proxy-Authorization.
    offered = [
        'Digest realm="edge", nonce="1", algorithm=MD5, qop="auth"',
        'Digest realm="core", nonce="2", algorithm=SHA-256, qop="auth"',
        'Digest realm="edge", nonce="1", algorithm=SHA-256, qop="auth"',
    ]
    values = DigestClient(USER, PASSWORD).authorize(offered, method="INVITE", uri=URI)
    answered = [(c.realm, c.algorithm) for c in map(parse_credentials, values)]
    assert answered == [("edge", "SHA-256"), ("core", "SHA-256")]


def test_client_skips_what_it_cannot_answer() -> None:
    offered = [
        'Digest realm="c", nonce="n", algorithm=SHA-1, qop="auth"',
        'Digest realm="c", nonce="n", algorithm=MD5, qop="auth-conf"',
        'Basic realm="c"',
        'Digest realm="c", nonce="unterminated',
        'Digest realm="c", nonce="n", algorithm=MD5, qop="auth"',
    ]
    [value] = DigestClient(USER, PASSWORD).authorize(offered, method="INVITE", uri=URI)
    assert parse_credentials(value).algorithm == "MD5"
    with pytest.raises(DigestError, match="No supported challenge"):
        DigestClient(USER, PASSWORD).authorize(offered[:4], method="INVITE", uri=URI)
    with pytest.raises(DigestError, match="Unsupported challenge"):
        DigestClient(USER, PASSWORD).answer(parse_challenge(offered[0]), method="I", uri="u")


def test_client_answers_an_rfc2069_challenge_without_qop() -> None:
    challenge = 'Digest realm="legacy", nonce="abc", opaque="o"'
    [value] = DigestClient(USER, PASSWORD).authorize([challenge], method="INVITE", uri=URI)
    credentials = parse_credentials(value)
    assert (credentials.qop, credentials.nc, credentials.cnonce) == (None, None, None)
    assert credentials.algorithm == "MD5"
    assert credentials.opaque == "o"
    expected = digest_response(
        "MD5",
        ha1=ha1("MD5", USER, "legacy", PASSWORD),
        nonce="abc",
        method="INVITE",
        uri=URI,
        qop=None,
    )
    assert credentials.response == expected


def test_client_uses_auth_int_when_only_that_is_offered() -> None:
    challenge = 'Digest realm="c", nonce="n", algorithm=SHA-256, qop="auth-int"'
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    client = DigestClient(USER, PASSWORD, cnonce_factory=lambda: "cn")
    [value] = client.authorize([challenge], method="INVITE", uri=URI, body=body)
    credentials = parse_credentials(value)
    assert credentials.qop == "auth-int"
    assert credentials.response == digest_response(
        "SHA-256",
        ha1=ha1("SHA-256", USER, "c", PASSWORD),
        nonce="n",
        method="INVITE",
        uri=URI,
        qop="auth-int",
        nc="00000001",
        cnonce="cn",
        body=body,
    )


def test_client_prefers_auth_over_auth_int() -> None:
    challenge = 'Digest realm="c", nonce="n", algorithm=MD5, qop="auth-int,auth"'
    [value] = DigestClient(USER, PASSWORD).authorize([challenge], method="INVITE", uri=URI)
    assert parse_credentials(value).qop == "auth"


def test_client_hashes_the_username_when_asked() -> None:
    challenge = 'Digest realm="c", nonce="n", algorithm=SHA-256, qop="auth", userhash=true'
    [value] = DigestClient(USER, PASSWORD).authorize([challenge], method="INVITE", uri=URI)
    credentials = parse_credentials(value)
    assert credentials.userhash
    assert credentials.username == hashlib.sha256(f"{USER}:c".encode()).hexdigest()


def test_client_quotes_what_it_sends() -> None:
    client = DigestClient('we"ird\\user', PASSWORD)
    challenge = Challenge(realm='r"1', nonce="n,2", algorithm="MD5", qop=("auth",))
    credentials = parse_credentials(client.answer(challenge, method="INVITE", uri=URI))
    assert (credentials.username, credentials.realm, credentials.nonce) == (
        'we"ird\\user',
        'r"1',
        "n,2",
    )
    with pytest.raises(ValueError, match="control"):
        DigestClient("bad\nuser", PASSWORD)


def test_client_forgets_old_nonce_counts() -> None:
    client = DigestClient(USER, PASSWORD, max_nonces=2)
    for nonce in ("a", "b", "c"):
        client.answer(Challenge(realm="r", nonce=nonce, qop=("auth",)), method="M", uri="u")
    again = client.answer(Challenge(realm="r", nonce="a", qop=("auth",)), method="M", uri="u")
    assert parse_credentials(again).nc == "00000001"


def test_client_retries_a_stale_challenge(server: DigestServer, client: DigestClient) -> None:
    [first] = client.authorize(server.challenge(now=NOW), method="INVITE", uri=URI)
    assert _verify(server, first, now=NOW + 400) == StaleNonce("Nonce expired")
    retry = server.challenge(now=NOW + 400, stale=True)
    [second] = client.authorize(retry, method="INVITE", uri=URI)
    assert _verify(server, second, now=NOW + 400) == Authenticated(USER, "SHA-256")
