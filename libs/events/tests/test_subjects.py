from __future__ import annotations

import pytest

from trunkline.events.subjects import CONFIG_RESOURCES, CONFIG_WILDCARD, config_subject

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
