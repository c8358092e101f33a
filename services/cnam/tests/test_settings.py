"""Settings from the environment: defaults, the provider URL's rules, refusals that name the
variable but never echo a URL or token that may carry a secret."""

from __future__ import annotations

import pytest

from trunkline.cnam.settings import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.grpc_address == "127.0.0.1:7300"
    assert settings.health_port == 0
    assert settings.store_url == "sqlite:///./data/trunkline.db"
    assert settings.nats_url is None
    assert settings.provider_url is None and settings.provider_host is None
    assert (settings.provider_timeout, settings.cache_ttl, settings.cache_size) == (
        1.0,
        3600.0,
        100_000,
    )


def test_the_provider_is_read_and_never_shown() -> None:
    url = "https://cnam.example/v1/{number}?key=s3cr3t-key"
    env = {
        "TRUNKLINE_CNAM_PROVIDER_URL": url,
        "TRUNKLINE_CNAM_PROVIDER_TOKEN": "t0ken-value",
        "TRUNKLINE_CNAM_PROVIDER_TIMEOUT": "0.25",
        "TRUNKLINE_CNAM_CACHE_TTL": "0",
    }
    settings = Settings.from_env(env)
    assert settings.provider_url == url
    assert settings.provider_token == "t0ken-value"
    assert settings.provider_host == "cnam.example"
    assert (settings.provider_timeout, settings.cache_ttl) == (0.25, 0.0)
    assert "s3cr3t" not in repr(settings) and "t0ken" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://cnam.example/{number}?key=s3cr3t", "http:// or https://"),
        ("https://cnam.example/lookup?key=s3cr3t", "{number}"),
    ],
)
def test_an_unusable_provider_url_is_refused_without_echoing_it(url: str, why: str) -> None:
    with pytest.raises(SystemExit, match="TRUNKLINE_CNAM_PROVIDER_URL") as refused:
        Settings.from_env({"TRUNKLINE_CNAM_PROVIDER_URL": url})
    assert why in str(refused.value)
    assert "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRUNKLINE_CNAM_HEALTH_PORT", "x"),
        ("TRUNKLINE_CNAM_PROVIDER_TIMEOUT", "soon"),
        ("TRUNKLINE_CNAM_PROVIDER_TIMEOUT", "0"),
        ("TRUNKLINE_CNAM_CACHE_TTL", "-1"),
        ("TRUNKLINE_CNAM_CACHE_SIZE", "0"),
        ("TRUNKLINE_CNAM_CACHE_SIZE", "many"),
    ],
)
def test_unusable_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=name):
        Settings.from_env({name: value})
