"""Which components exist, and the state of the running harness."""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from trunkline.harness.component import Component, run_dir

# Start order: the store and the bus first, then what depends on nothing else.
NAMES: tuple[str, ...] = ("nats", "cassandra", "kube", "jaeger", "powerdns", "sip")
DISABLE_VARIABLE = "TRUNKLINE_HARNESS_DISABLE"


def component(name: str) -> Component:
    if name not in NAMES:
        raise KeyError(f"unknown component {name!r}; known: {', '.join(NAMES)}")
    module = importlib.import_module(f"trunkline.harness.components.{name}")
    return cast(Component, module.COMPONENT)


def disabled() -> set[str]:
    """Components the user switched off on purpose (tests needing them skip and say so)."""
    raw = os.environ.get(DISABLE_VARIABLE, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


@contextmanager
def locked_state() -> Iterator[dict[str, Any]]:
    """The state file, locked for the block, written back after it."""
    path = run_dir() / "state.json"
    with (run_dir() / "state.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        yield state
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)


def running(name: str) -> Mapping[str, Any] | None:
    """The endpoints of `name` if the state says it runs and it answers now."""
    with locked_state() as state:
        endpoints = state.get(name)
    if endpoints is None:
        return None
    try:
        if component(name).ready(endpoints):
            return cast(Mapping[str, Any], endpoints)
    except Exception:  # a dead component is simply not running
        return None
    return None


def up(name: str) -> tuple[Mapping[str, Any], bool]:
    """Install and start `name` unless it runs; (endpoints, whether this call started it)."""
    found = running(name)
    if found is not None:
        return found, False
    comp = component(name)
    started = time.monotonic()
    comp.install()
    installed = time.monotonic()
    endpoints = comp.start()
    endpoints = {
        **endpoints,
        "install_seconds": round(installed - started, 1),
        "start_seconds": round(time.monotonic() - installed, 1),
    }
    with locked_state() as state:
        state[name] = endpoints
    return endpoints, True


def down(name: str) -> bool:
    with locked_state() as state:
        endpoints = state.pop(name, None)
    if endpoints is None:
        return False
    component(name).stop(endpoints)
    return True
