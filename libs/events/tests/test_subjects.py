from __future__ import annotations

import pytest

from trunkline.events.subjects import (
    CALL_EVENT_KINDS,
    CALLS_WILDCARD,
    CONFIG_RESOURCES,
    CONFIG_WILDCARD,
    call_subject,
    config_subject,
)

ACCOUNT = "AC" + "0" * 32


def test_config_subject_is_prefix_account_resource() -> None:
    assert config_subject(ACCOUNT, "trunks") == f"trunkline.config.{ACCOUNT}.trunks"


def test_every_announced_resource_makes_a_valid_subject() -> None:
    for resource in CONFIG_RESOURCES:
        assert config_subject(ACCOUNT, resource).split(".") == [
            "trunkline",
            "config",
            ACCOUNT,
            resource,
        ]


def test_the_wildcard_covers_every_config_subject() -> None:
    assert CONFIG_WILDCARD == "trunkline.config.>"


@pytest.mark.parametrize("bad", ["", "AC.1", "AC*", "AC>", "AC 1", "AC\t1", "AC\n"])
def test_tokens_that_would_change_the_subject_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="account_sid"):
        config_subject(bad, "trunks")
    with pytest.raises(ValueError, match="resource"):
        config_subject(ACCOUNT, bad)


def test_call_subject_is_prefix_account_call_kind() -> None:
    call = "CA" + "1" * 32
    assert call_subject(ACCOUNT, call, "ended") == f"trunkline.calls.{ACCOUNT}.{call}.ended"
    assert [call_subject(ACCOUNT, call, k).rsplit(".", 1)[1] for k in CALL_EVENT_KINDS] == [
        "started",
        "ringing",
        "answered",
        "ended",
    ]
    assert CALLS_WILDCARD == "trunkline.calls.>"


@pytest.mark.parametrize("bad", ["", "AC.1", "AC*", "AC>", "AC 1"])
def test_call_subject_refuses_tokens_that_would_change_its_shape(bad: str) -> None:
    with pytest.raises(ValueError, match="account_sid"):
        call_subject(bad, "CA" + "1" * 32, "started")
    with pytest.raises(ValueError, match="call_sid"):
        call_subject(ACCOUNT, bad, "started")


def test_call_subject_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        call_subject(ACCOUNT, "CA" + "1" * 32, "STARTED")
