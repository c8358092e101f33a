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
from trunkline.domain.model import Trunk

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
    "/admin/v1/Cnam/Import": {
        "post": {
            "summary": "Import caller names (CNAM) of North American numbers from CSV "
            "(text/csv: number,caller_name), all or nothing",
            "operationId": "AdminImportCnam",
        }
    },
    "/admin/v1/Cnam/{PhoneNumber}": {
        "get": {"summary": "Fetch a number's caller name", "operationId": "AdminFetchCnam"},
        "delete": {
            "summary": "Remove a number's caller name",
            "operationId": "AdminDeleteCnam",
        },
    },
}


# Trunkline extensions to Twilio's resources: request parameters (by operationId) and response
# fields (by schema), each marked `x-trunkline-extension` so clients can tell them apart.
EXTENSION = {"x-trunkline-extension": True}
DEFAULT_NOTE = " Not set, or set to an empty value: the platform default applies."
TRUNK_PARAMETERS: dict[str, dict[str, Any]] = {
    "SymmetricRtpEnabled": {
        "type": "boolean",
        "description": "Whether Symmetric RTP is enabled for the trunk (Twilio sets this only "
        "in its console; Trunkline accepts it here).",
    },
    "CpsLimit": {
        "type": "integer",
        "minimum": 1,
        "maximum": Trunk.MAX_CPS_LIMIT,
        "description": "Termination calls per second allowed on the trunk at each edge "
        "(a token bucket per trunk and edge); calls beyond it are answered `503` (error "
        "32001)." + DEFAULT_NOTE,
    },
    "ConcurrentCallsLimit": {
        "type": "integer",
        "minimum": 1,
        "maximum": Trunk.MAX_CONCURRENT_CALLS_LIMIT,
        "description": "Termination calls the trunk may have in progress at once; calls "
        "beyond it are answered `503` (error 32001)." + DEFAULT_NOTE,
    },
}
PARAMETER_EXTENSIONS = {
    "CreateTrunk": TRUNK_PARAMETERS,
    "UpdateTrunk": TRUNK_PARAMETERS,
}
FIELD_EXTENSIONS: dict[str, dict[str, dict[str, Any]]] = {
    "trunking.v1.trunk": {
        "cps_limit": {
            "type": "integer",
            "nullable": True,
            "description": "Termination calls per second allowed on the trunk at each edge; "
            "`null` when the platform default applies. Set with `CpsLimit`.",
        },
        "concurrent_calls_limit": {
            "type": "integer",
            "nullable": True,
            "description": "Termination calls the trunk may have in progress at once; `null` "
            "when the platform default applies. Set with `ConcurrentCallsLimit`.",
        },
    },
}


def extend(paths: dict[str, Any], components: dict[str, dict[str, Any]]) -> None:
    """Add the extensions; fail if Twilio's description no longer has their place."""
    found = set()
    for item in paths.values():
        for op in item.values():
            if not isinstance(op, dict) or op.get("operationId") not in PARAMETER_EXTENSIONS:
                continue
            body = op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
            for name, schema in PARAMETER_EXTENSIONS[op["operationId"]].items():
                if name in body["properties"]:
                    raise RuntimeError(f"Twilio now describes {name} in {op['operationId']}")
                body["properties"][name] = {**schema, **EXTENSION}
            found.add(op["operationId"])
    if missing := set(PARAMETER_EXTENSIONS) - found:
        raise RuntimeError(f"operations to extend not found: {sorted(missing)}")
    for schema_name, fields in FIELD_EXTENSIONS.items():
        properties = components["schemas"][schema_name]["properties"]
        for name, schema in fields.items():
            if name in properties:
                raise RuntimeError(f"Twilio now describes {name} in {schema_name}")
            properties[name] = {**schema, **EXTENSION}


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
    extend(paths, components)
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
            + ". Parameters and fields marked `x-trunkline-extension` are Trunkline's own.",
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
