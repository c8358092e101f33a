"""The API application: Twilio-compatible routes, the admin API, health and metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trunkline.api import console, openapi
from trunkline.api.context import Platform
from trunkline.api.wire import JSON, error_body

REQUESTS = Counter(
    "trunkline_api_requests_total", "API requests by route and status", ["route", "status"]
)
LATENCY = Histogram(
    "trunkline_api_request_seconds",
    "API request latency by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def route_modules() -> Sequence[Callable[[Platform], list[Route]]]:
    from trunkline.api import admin
    from trunkline.api.resources import (
        accounts,
        available_numbers,
        caller_ids,
        calls,
        credential_lists,
        ip_access_control_lists,
        origination_urls,
        phone_numbers,
        trunks,
    )

    return [
        trunks.routes,
        origination_urls.routes,
        credential_lists.routes,
        ip_access_control_lists.routes,
        phone_numbers.routes,
        available_numbers.routes,
        accounts.routes,
        caller_ids.routes,
        calls.routes,
        admin.routes,
    ]


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok", "service": "api"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class Instrumented:
    """Counts and times each request by its route template (not the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    def template(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE and isinstance(route, Route):
                return route.path
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_see(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            route = self.template(scope)
            REQUESTS.labels(route, str(status["code"])).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)


def build_app(platform: Platform, *, on_shutdown: Sequence[Callable[[], Any]] = ()) -> ASGIApp:
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *openapi.routes(),
        *console.routes(),
    ]
    for module_routes in route_modules():
        routes.extend(module_routes(platform))

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSON(
            error_body(20404, f"The requested resource {request.url.path} was not found", 404), 404
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSON(
            error_body(20004, f"Method {request.method} not allowed on {request.url.path}", 405),
            405,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for hook in on_shutdown:
            await hook()

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
    # One server span per request: the trace that a configuration change starts, which the
    # NATS announcement carries on (trunkline.events puts the context in its headers).
    traced = OpenTelemetryMiddleware(app, exclude_spans=["receive", "send"])
    return Instrumented(traced, routes)
