import pytest

from inventory import Stock
from inventory.storage import data_dir, load, save


def test_round_trip(tmp_path, stock, fmt):
    path = tmp_path / f"stock.{fmt}"
    save(stock, path)
    assert load(path).counts == stock.counts


def test_data_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INVENTORY_DATA", str(tmp_path))
    assert data_dir() == tmp_path


def test_prints_nothing(capsys):
    save(Stock(), __import__("pathlib").Path("/dev/null"))
    assert capsys.readouterr().out == ""


def test_yaml_export():
    yaml = pytest.importorskip("inventory_yaml_plugin_that_is_not_installed")
    assert yaml


class TestLegacy:
    def setup_method(self):
        self.stock = Stock({"A-1": 1})

    def test_legacy_format(self):
        if not hasattr(self.stock, "legacy"):
            pytest.skip("no legacy format in this build")

    def test_counts(self):
        assert self.stock.counts == {"A-1": 1}
