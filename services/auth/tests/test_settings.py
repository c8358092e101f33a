"""Settings from the environment: defaults, the realm's fallback, refusals that name the
variable but never echo a secret."""

from __future__ import annotations

import pytest

from trunkline.auth.settings import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.grpc_address == "127.0.0.1:7200"
    assert settings.realm == "trunkline.local"
    assert settings.nonce_secret is None
    assert (settings.lockout_failures, settings.lockout_window, settings.lockout_seconds) == (
        10,
        60.0,
        300.0,
    )
    assert settings.cache_ttl == 30.0
    assert settings.nats_url is None
    assert settings.verdict_reuse == 10.0
    assert Settings.from_env({"TRUNKLINE_AUTH_VERDICT_REUSE": "0"}).verdict_reuse == 0.0


def test_the_realm_defaults_to_the_zone() -> None:
    assert Settings.from_env({"TRUNKLINE_ZONE": "pstn.example"}).realm == "pstn.example"
    env = {"TRUNKLINE_ZONE": "pstn.example", "TRUNKLINE_REALM": "sip.example"}
    assert Settings.from_env(env).realm == "sip.example"


def test_secrets_are_read_and_never_shown() -> None:
    env = {
        "TRUNKLINE_AUTH_NONCE_SECRET": "current-secret-0123456789",
        "TRUNKLINE_AUTH_NONCE_PREVIOUS_SECRETS": "older-secret-0123456789, old-secret-0123456789",
    }
    settings = Settings.from_env(env)
    assert settings.nonce_secret == b"current-secret-0123456789"
    assert settings.previous_nonce_secrets == (
        b"older-secret-0123456789",
        b"old-secret-0123456789",
    )
    assert "secret-0123456789" not in repr(settings)
    with pytest.raises(SystemExit, match="at least 16 bytes") as refused:
        Settings.from_env({"TRUNKLINE_AUTH_NONCE_SECRET": "short-secret"})
    assert "short-secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRUNKLINE_AUTH_LOCKOUT_FAILURES", "many"),
        ("TRUNKLINE_AUTH_LOCKOUT_FAILURES", "0"),
        ("TRUNKLINE_AUTH_LOCKOUT_WINDOW", "-1"),
        ("TRUNKLINE_AUTH_LOCKOUT_SECONDS", "0"),
        ("TRUNKLINE_AUTH_HEALTH_PORT", "x"),
        ("TRUNKLINE_CONFIG_CACHE_TTL", "later"),
        ("TRUNKLINE_AUTH_VERDICT_REUSE", "-1"),
        ("TRUNKLINE_AUTH_VERDICT_REUSE", "soon"),
    ],
)
def test_unusable_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=name):
        Settings.from_env({name: value})
