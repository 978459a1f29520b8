"""A small shop for order tests: the web and POS channels, a warehouse and two stores with
coordinates feeding the web shop, three listed variants, and stock through the services."""

from decimal import Decimal

import pytest

from customers.identifiers import Identifier
from inventory.models import StockLevel
from inventory.services import stock_receive
from omni.models import ChannelKind
from orders.services import LineInput
from tests.factories import (
    ChannelFactory,
    ListingFactory,
    LocationFactory,
    StockRuleFactory,
    VariantFactory,
)


@pytest.fixture
def web(db):
    return ChannelFactory(code="web", name="Web shop", kind=ChannelKind.WEB, currency="EUR")


@pytest.fixture
def pos(db):
    return ChannelFactory(code="store", name="Stores (POS)", kind=ChannelKind.STORE_POS)


@pytest.fixture
def shop(db, web, pos):
    """``shop.warehouse`` (Paris), ``shop.paris`` and ``shop.lyon`` (stores offering pickup),
    all feeding the web shop (warehouse first); variants ``shop.a/b/c`` listed on the web shop
    at 10.00, 25.50, 4.00 and on the POS channel at 11.00, 27.00, 4.50."""

    class Shop:
        pass

    s = Shop()
    s.web, s.pos = web, pos
    s.warehouse = LocationFactory(
        code="wh", kind="warehouse", latitude=48.90, longitude=2.40, offers_pickup=False
    )
    s.paris = LocationFactory(code="paris", latitude=48.8566, longitude=2.3522)
    s.lyon = LocationFactory(code="lyon", latitude=45.76, longitude=4.84)
    for priority, location in enumerate([s.warehouse, s.paris, s.lyon], 1):
        StockRuleFactory(channel=web, location=location, priority=priority)
    s.a, s.b, s.c = (VariantFactory(sku=sku) for sku in ("SKU-A", "SKU-B", "SKU-C"))
    for variant, web_price, pos_price in [
        (s.a, "10.00", "11.00"),
        (s.b, "25.50", "27.00"),
        (s.c, "4.00", "4.50"),
    ]:
        ListingFactory(variant=variant, channel=web, price=Decimal(web_price))
        ListingFactory(variant=variant, channel=pos, price=Decimal(pos_price))
    return s


@pytest.fixture
def stock():
    """Receive ``quantity`` at ``location`` through the service; read a stock row back."""

    class Stock:
        @staticmethod
        def put(location, variant, quantity):
            return stock_receive(location=location, variant=variant, quantity=quantity)

        @staticmethod
        def row(location, variant) -> tuple[int, int]:
            level = StockLevel.objects.filter(location=location, variant=variant).first()
            return (level.on_hand, level.reserved) if level else (0, 0)

    return Stock()


@pytest.fixture
def email():
    def _email(address="camille@example.com"):
        return [Identifier("email", address)]

    return _email


def lines(*pairs):
    return [LineInput(sku, quantity) for sku, quantity in pairs]
