import pytest

from inventory import Item, Stock


@pytest.fixture(scope="session")
def catalog():
    items = [Item("A-1", "anvil", 4999), Item("B-2", "bucket", 350), Item("C-3", "crate", 1200)]
    yield {item.sku: item for item in items}
    items.clear()


@pytest.fixture
def stock(catalog):
    stock = Stock()
    for sku in catalog:
        stock.add(sku, 2)
    return stock


@pytest.fixture(params=["json"])
def fmt(request):
    return request.param
