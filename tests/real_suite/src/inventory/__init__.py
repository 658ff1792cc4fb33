"""A tiny stock-keeping library."""

from inventory.models import Item, Stock
from inventory.pricing import discounted, total

__all__ = ["Item", "Stock", "discounted", "total"]
__version__ = "1.4.2"
