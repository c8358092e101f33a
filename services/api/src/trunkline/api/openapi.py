"""The OpenAPI document (built by scripts/build_openapi.py) and the routes it must describe."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.wire import JSON

UNDOCUMENTED = {"/healthz", "/metrics", "/openapi.json", "/console"}


def served_operations() -> set[tuple[str, str]]:
    """(path, method) of every API route the app serves, from its own route table."""
    from trunkline.api.app import route_modules
    from trunkline.api.context import Platform
    from trunkline.api.settings import Settings

    platform = Platform(Settings(), None, None)  # type: ignore[arg-type]  # tables only
    found: set[tuple[str, str]] = set()
    for module_routes in route_modules():
        for route in module_routes(platform):
            if route.path in UNDOCUMENTED:
                continue
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((route.path, method.lower()))
    return found


@cache
def document() -> dict[str, Any]:
    text = resources.files("trunkline.api").joinpath("openapi.json").read_text()
    return dict(json.loads(text))


async def openapi(request: Request) -> Response:
    return JSON(document())


def routes() -> list[Route]:
    return [Route("/openapi.json", openapi, methods=["GET"])]
