"""The order in which to try weighted destinations (carrier gateways, origination URLs)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Protocol, TypeVar


class Weighted(Protocol):
    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> int: ...


W = TypeVar("W", bound=Weighted)


def attempt_order(items: Iterable[W], rng: random.Random) -> list[W]:
    """Priorities ascending; within a priority each next item is drawn with probability
    weight / (sum of the weights still left), so the first choice follows the weights and,
    when it fails, the rest share the load by theirs. Items of weight 0 (or less) are last
    resorts within their priority, in a uniformly random order. The input order matters
    only as the draw's tie order: give a stable one for repeatable draws."""
    groups: dict[int, list[W]] = {}
    for item in items:
        groups.setdefault(item.priority, []).append(item)
    order: list[W] = []
    for priority in sorted(groups):
        group = groups[priority]
        weighted = [item for item in group if item.weight > 0]
        total = sum(item.weight for item in weighted)
        while weighted:
            # Integers keep the draw exact: no float rounding can favour the last item.
            point = rng.randrange(total)
            for i, item in enumerate(weighted):
                point -= item.weight
                if point < 0:
                    order.append(weighted.pop(i))
                    total -= item.weight
                    break
        last_resort = [item for item in group if item.weight <= 0]
        rng.shuffle(last_resort)
        order.extend(last_resort)
    return order
