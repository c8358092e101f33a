"""Being written (placeholder so the app imports); replaced before commit."""

from starlette.routing import Route

from trunkline.api.context import Platform


def routes(platform: Platform) -> list[Route]:
    return []
