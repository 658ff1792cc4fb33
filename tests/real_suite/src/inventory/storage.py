from __future__ import annotations

import json
import os
from pathlib import Path

from inventory.models import Stock


def data_dir() -> Path:
    return Path(os.environ.get("INVENTORY_DATA", "~/.inventory")).expanduser()


def save(stock: Stock, path: Path) -> None:
    path.write_text(json.dumps(stock.counts, sort_keys=True))


def load(path: Path) -> Stock:
    return Stock(dict(json.loads(path.read_text())))
