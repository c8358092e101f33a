"""Session fixtures for the real components: `harness_<name>` gives its endpoints.

A component that `trunkline-harness up` already started is reused and left running; one the
session starts itself is stopped when the session ends. A component switched off with
TRUNKLINE_HARNESS_DISABLE makes the tests that need it skip, saying so; nothing else skips.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from trunkline.harness import registry


def _component_fixture(name: str) -> Any:
    @pytest.fixture(scope="session", name=f"harness_{name}")
    def fixture() -> Iterator[Mapping[str, Any]]:
        if name in registry.disabled():
            pytest.skip(f"{name} is disabled by {registry.DISABLE_VARIABLE}")
        endpoints, started = registry.up(name)
        try:
            yield endpoints
        finally:
            if started:
                registry.down(name)

    return fixture


harness_nats = _component_fixture("nats")
harness_cassandra = _component_fixture("cassandra")
harness_kube = _component_fixture("kube")
harness_jaeger = _component_fixture("jaeger")
harness_powerdns = _component_fixture("powerdns")
harness_sip = _component_fixture("sip")
