from __future__ import annotations

from collections.abc import Iterable

from inventory.models import Item


def discounted(item: Item, percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValueError("percent out of range")
    return round(item.price_cents * (100 - percent) / 100)


def total(items: Iterable[Item]) -> int:
    return sum(item.price_cents for item in items)
