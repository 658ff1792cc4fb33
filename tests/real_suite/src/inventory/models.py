from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    price_cents: int

    def __post_init__(self) -> None:
        if self.price_cents < 0:
            raise ValueError(f"{self.sku}: negative price")


@dataclass
class Stock:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, sku: str, count: int = 1) -> None:
        if count <= 0:
            raise ValueError("count must be positive")
        self.counts[sku] = self.counts.get(sku, 0) + count

    def remove(self, sku: str, count: int = 1) -> None:
        have = self.counts.get(sku, 0)
        if count > have:
            raise KeyError(f"only {have} of {sku} in stock")
        self.counts[sku] = have - count

    def __len__(self) -> int:
        return sum(self.counts.values())
