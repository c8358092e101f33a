"""A small read-only console: a page that shows an account's trunks and numbers via the API."""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

# The page only talks to this origin and runs only its own inline script.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"
)


@cache
def page() -> str:
    return resources.files("trunkline.api").joinpath("console.html").read_text()


async def console(request: Request) -> Response:
    return HTMLResponse(
        page(),
        headers={
            "Content-Security-Policy": CSP,
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        },
    )


def routes() -> list[Route]:
    return [Route("/console", console, methods=["GET"])]
