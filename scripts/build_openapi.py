"""Build the OpenAPI document the API serves at /openapi.json.

Twilio publishes OpenAPI descriptions of the APIs we match (../shared/reference/); the API's
document is those descriptions cut down to the paths and methods this server implements
(read from the app's own route table, so the document cannot promise a route we lack),
with `servers` pointing at this server, plus the platform operator's admin API.

    .venv/bin/python scripts/build_openapi.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from trunkline.api.openapi import served_operations

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"
OUT = ROOT / "services/api/src/trunkline/api/openapi.json"

ADMIN_PATHS: dict[str, dict[str, Any]] = {
    "/admin/v1/Accounts": {
        "get": {"summary": "List main accounts (tenants)", "operationId": "AdminListAccounts"},
        "post": {
            "summary": "Create a main account; the response shows its auth token once",
            "operationId": "AdminCreateAccount",
        },
    },
    "/admin/v1/PhoneNumbers": {
        "get": {"summary": "List the phone-number inventory", "operationId": "AdminListNumbers"}
    },
    "/admin/v1/PhoneNumbers/Import": {
        "post": {
            "summary": "Import inventory numbers from CSV (text/csv), all or nothing",
            "operationId": "AdminImportNumbers",
        }
    },
    "/admin/v1/Accounts/{AccountSid}/OutgoingCallerIds": {
        "post": {
            "summary": "Mark a caller ID verified for an account",
            "operationId": "AdminVerifyCallerId",
        }
    },
}


def referenced(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            found.add(ref)
        for value in node.values():
            referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            referenced(value, found)


def build() -> dict[str, Any]:
    v1 = yaml.safe_load((REFERENCE / "twilio_trunking_v1.yaml").read_text())
    v2010 = json.loads((REFERENCE / "twilio_api_v2010_subset.json").read_text())
    wanted = served_operations()
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    missing = []
    for spec in (v1, v2010):
        for path, item in spec["paths"].items():
            methods = {m for (p, m) in wanted if p == path}
            kept = {m: op for m, op in item.items() if m in methods}
            if not kept:
                continue
            kept.pop("servers", None)
            paths[path] = {**{k: v for k, v in item.items() if k == "description"}, **kept}
        for section, entries in spec.get("components", {}).items():
            components.setdefault(section, {}).update(entries)
    for path, method in sorted(wanted):
        if path.startswith("/admin/"):
            continue
        if method not in paths.get(path, {}):
            missing.append(f"{method.upper()} {path}")
    paths.update(ADMIN_PATHS)
    refs: set[str] = set()
    referenced(paths, refs)
    # Follow references transitively so the document is self-contained.
    pending = set(refs)
    while pending:
        ref = pending.pop()
        _, _, section, name = ref.split("/", 3)
        inner: set[str] = set()
        referenced(components.get(section, {}).get(name), inner)
        pending |= inner - refs
        refs |= inner
    kept_components: dict[str, dict[str, Any]] = {}
    for ref in sorted(refs):
        _, _, section, name = ref.split("/", 3)
        if name in components.get(section, {}):
            kept_components.setdefault(section, {})[name] = components[section][name]
    kept_components["securitySchemes"] = components.get("securitySchemes", {})
    return {
        "openapi": "3.0.1",
        "info": {
            "title": "Trunkline API",
            "description": "Twilio-compatible Elastic SIP Trunking API (Trunking v1 and the "
            "2010-04-01 resources a trunk depends on), derived from Twilio's OpenAPI "
            "descriptions. Routes without a Twilio description: "
            + (", ".join(missing) or "none")
            + ".",
            "version": "1.0.0",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": kept_components,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    text = json.dumps(build(), indent=1, sort_keys=False) + "\n"
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run scripts/build_openapi.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
