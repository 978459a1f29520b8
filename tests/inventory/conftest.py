import pytest

from inventory.services import stock_receive
from omni.models import ChannelKind
from tests.factories import ChannelFactory, LocationFactory, StockRuleFactory, VariantFactory


@pytest.fixture
def web(db):
    # get_or_create: transactional tests flush the seeded channels, so make it if it is gone.
    return ChannelFactory(code="web", name="Web shop", kind=ChannelKind.WEB, currency="EUR")


@pytest.fixture
def stores(db, web):
    """Two stores and a warehouse feeding the web channel, warehouse first."""
    warehouse = LocationFactory(code="wh", kind="warehouse", latitude=48.85, longitude=2.35)
    north = LocationFactory(code="north", latitude=50.63, longitude=3.06)
    south = LocationFactory(code="south", latitude=43.30, longitude=5.37)
    for priority, location in enumerate([warehouse, north, south], 1):
        StockRuleFactory(channel=web, location=location, priority=priority)
    return warehouse, north, south


@pytest.fixture
def receive():
    """Put ``quantity`` of ``variant`` on the shelf at ``location`` through the service."""

    def _receive(location, variant, quantity):
        return stock_receive(location=location, variant=variant, quantity=quantity)

    return _receive


@pytest.fixture
def variant(db):
    return VariantFactory()
