"""POS sales: in-store orders on the POS channel, the till's prices, receipts and customers."""

from decimal import Decimal

import pytest

from customers.identifiers import Identifier
from customers.models import Customer, Touchpoint
from inventory.models import StockMovement
from omni.exceptions import Conflict, ValidationFailed
from omni.models import Channel
from orders.models import Fulfilment
from orders.services import LineInput, pos_channel, pos_sale_record
from tests.factories import ChannelFactory, VariantFactory
from tests.orders.conftest import lines
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
    history,
    snapshot,
)

pytestmark = pytest.mark.django_db


def test_anonymous_sale_at_the_pos_price(shop, stock, clock):
    stock.put(shop.paris, shop.a, 4)
    sale = pos_sale_record(
        store=shop.paris, lines=lines(("SKU-A", 2), ("SKU-C", 1)), source="client:9"
    )
    assert (sale.channel, sale.fulfilment_method, sale.store, sale.status) == (
        shop.pos,
        "in_store",
        shop.paris,
        "completed",
    )
    assert (sale.total, sale.currency, sale.customer, sale.external_reference) == (
        Decimal("26.50"),
        "EUR",
        None,
        None,
    )
    assert (sale.placed_at, sale.closed_at) == (T0, T0)
    assert sorted(
        StockMovement.objects.filter(reference=sale.number).values_list(
            "variant__sku", "kind", "quantity", "source", "channel"
        )
    ) == [("SKU-A", "sale", -2, "pos", shop.pos.pk), ("SKU-C", "sale", -1, "pos", shop.pos.pk)]
    assert stock.row(shop.paris, shop.a) == (2, 0)
    assert Fulfilment.objects.get(order=sale).units == 3
    assert history(sale) == [("", "completed")]
    assert Touchpoint.objects.count() == 0
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(
    ("identifier", "stored"),
    [
        (Identifier("phone", "06 12 34 56 78"), ("phone", "+33612345678")),
        (Identifier("email", "Ana@Example.com"), ("email", "ana@example.com")),
        (Identifier("loyalty_card", "fid-0042 77"), ("loyalty_card", "FID004277")),
        ({"kind": "phone", "value": "+33 6 12 34 56 78"}, ("phone", "+33612345678")),
    ],
)
def test_sale_with_an_identifier_feeds_the_timeline(shop, stock, clock, identifier, stored):
    stock.put(shop.paris, shop.b, 4)
    sale = pos_sale_record(
        store=shop.paris, lines=lines(("SKU-B", 1)), source="client:9", identifiers=[identifier]
    )
    customer = Customer.objects.get()
    assert sale.customer == customer
    assert list(customer.identities.values_list("kind", "value")) == [stored]
    touchpoint = Touchpoint.objects.get(customer=customer)
    assert (
        touchpoint.kind,
        touchpoint.channel,
        touchpoint.location,
        touchpoint.occurred_at,
        touchpoint.properties,
    ) == (
        "purchase",
        shop.pos,
        shop.paris,
        T0,
        {
            "order": sale.number,
            "amount": "27.00",
            "currency": "EUR",
            "fulfilment_method": "in_store",
            "items": 1,
        },
    )
    customer.refresh_from_db()
    assert (customer.lifetime_orders, customer.lifetime_revenue) == (1, Decimal("27.00"))
    # The same person at the till again is the same customer.
    again = pos_sale_record(
        store=shop.lyon, lines=lines(("SKU-B", 1)), source="client:9", identifiers=[identifier]
    )
    assert again.customer == customer
    customer.refresh_from_db()
    assert (customer.lifetime_orders, customer.lifetime_revenue) == (2, Decimal("54.00"))


def test_the_till_price_wins_and_unlisted_items_sell_at_the_till_price(shop, stock):
    stock.put(shop.paris, shop.a, 4)
    loose = VariantFactory(sku="SKU-LOOSE")
    sale = pos_sale_record(
        store=shop.paris,
        lines=[LineInput("SKU-A", 2, "9.99"), LineInput("SKU-LOOSE", 1, Decimal("3"))],
        source="client:9",
    )
    assert list(
        sale.lines.order_by("line_number").values_list("sku", "unit_price", "line_total")
    ) == [
        ("SKU-A", Decimal("9.99"), Decimal("19.98")),
        ("SKU-LOOSE", Decimal("3.00"), Decimal("3.00")),
    ]
    assert sale.total == Decimal("22.98")
    assert loose.sku == "SKU-LOOSE"


def test_till_price_errors_change_nothing(shop):
    before = snapshot()
    with pytest.raises(ValidationFailed) as refused:
        pos_sale_record(
            store=shop.paris,
            lines=[
                LineInput("SKU-A", 1, "-1"),
                LineInput("SKU-B", 1, "abc"),
                LineInput("SKU-C", 1, "1e10"),
                LineInput("SKU-X", 1, "1"),
            ],
            source="client:9",
        )
    assert refused.value.extra == {
        "lines": {
            "0": {"unit_price": ["A positive amount."]},
            "1": {"unit_price": ["An amount."]},
            "2": {"unit_price": ["A positive amount."]},
            "3": {"sku": ["Unknown SKU SKU-X."]},
        }
    }
    assert snapshot() == before


def test_receipt_replay_is_a_duplicate(shop, stock):
    first = pos_sale_record(
        store=shop.paris, lines=lines(("SKU-A", 1)), source="client:9", receipt="T1-0001"
    )
    before = snapshot()
    with pytest.raises(Conflict) as replay:
        pos_sale_record(
            store=shop.paris, lines=lines(("SKU-A", 1)), source="client:9", receipt="T1-0001"
        )
    assert replay.value.code == "duplicate_order"
    assert replay.value.extra == {
        "external_reference": [f"Already placed as {first.number}."],
        "order": first.number,
    }
    assert snapshot() == before
    assert stock.row(shop.paris, shop.a) == (-1, 0)


def test_a_non_pos_channel_is_refused(shop):
    before = snapshot()
    with pytest.raises(ValidationFailed) as refused:
        pos_sale_record(
            store=shop.paris, lines=lines(("SKU-A", 1)), source="client:9", channel=shop.web
        )
    assert refused.value.code == "not_a_pos_channel"
    assert refused.value.extra == {"channel": ["web is not a POS channel."]}
    assert snapshot() == before


def test_the_default_pos_channel_is_the_first_active_one(shop):
    ChannelFactory(code="aaa-pos", kind="store_pos", is_active=False)
    ChannelFactory(code="zzz-pos", kind="store_pos")
    assert pos_channel() == shop.pos
    other = ChannelFactory(code="kiosk", kind="store_pos")
    assert pos_channel(other) == other


def test_without_any_pos_channel(shop):
    Channel.objects.filter(kind="store_pos").update(is_active=False)
    with pytest.raises(ValidationFailed) as refused:
        pos_sale_record(store=shop.paris, lines=lines(("SKU-A", 1)), source="client:9")
    assert refused.value.extra == {"channel": ["Required."]}


def test_an_inactive_pos_channel_or_store_is_refused(shop):
    from tests.factories import LocationFactory

    closed = ChannelFactory(code="old-till", kind="store_pos", is_active=False)
    with pytest.raises(ValidationFailed) as refused:
        pos_sale_record(
            store=shop.paris, lines=lines(("SKU-A", 1)), source="client:9", channel=closed
        )
    assert refused.value.code == "not_a_sales_channel"
    shut = LocationFactory(code="shut", is_active=False)
    before = snapshot()
    with pytest.raises(ValidationFailed) as inactive:
        pos_sale_record(store=shut, lines=lines(("SKU-A", 1)), source="client:9")
    assert inactive.value.code == "location_inactive"
    assert snapshot() == before
