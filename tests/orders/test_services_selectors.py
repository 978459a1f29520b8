"""The order reads shared by the store pages, the API and the admin."""

from datetime import timedelta

import pytest

from customers.identifiers import Identifier
from inventory.models import Transfer
from inventory.services import transfer_cancel
from orders.selectors import (
    open_carts_for_customer,
    order_by_number,
    orders_for_customer,
    parse_scan,
    pickup_counts_for_location,
    pickup_queue_for_location,
)
from orders.services import (
    LineInput,
    cart_create,
    order_cancel,
    order_mark_ready,
    order_place,
)
from tests.orders.conftest import lines
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
)

pytestmark = pytest.mark.django_db


def test_parse_scan():
    assert parse_scan(" omni:o-7kq2-m9xd:012345 ") == ("O-7KQ2-M9XD", "012345")
    assert parse_scan("o-7kq2-m9xd") == ("O-7KQ2-M9XD", "")
    assert parse_scan("OMNI:O-1:12345") == ("OMNI:O-1:12345", "")
    assert parse_scan(None) == ("", "")


def _pickup(shop, store, quantity=1, **kwargs):
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", quantity)),
        fulfilment_method="pickup",
        store=store,
        source="test",
        **kwargs,
    )


def test_pickup_queue_and_counts(shop, stock, clock, settings, django_assert_num_queries):
    settings.OMNI_PICKUP_OVERDUE_DAYS = 3
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.lyon, shop.a, 5)
    stock.put(shop.warehouse, shop.a, 5)
    overdue = _pickup(shop, shop.paris)
    order_mark_ready(order=overdue, source="test")
    clock.advance(days=3, seconds=1)
    ready = _pickup(shop, shop.paris)
    order_mark_ready(order=ready, source="test")
    to_prepare = _pickup(shop, shop.paris)
    waiting = _pickup(shop, shop.paris, quantity=4)  # 2 left at Paris: 2 come by transfer
    flagged = _pickup(shop, shop.paris, quantity=3)
    transfer_cancel(transfer=Transfer.objects.get(reference=flagged.number))
    cancelled = _pickup(shop, shop.lyon)
    order_cancel(order=cancelled, source="test")
    _pickup(shop, shop.lyon)  # another store's
    with django_assert_num_queries(2):
        queue = pickup_queue_for_location(shop.paris)
        numbers = {
            name: [o.number for o in getattr(queue, name)]
            for name in ("to_prepare", "awaiting_transfer", "ready", "overdue")
        }
        [line.sku for o in queue.awaiting_transfer for line in o.lines.all()]
    assert numbers == {
        "to_prepare": [to_prepare.number],
        "awaiting_transfer": [waiting.number, flagged.number],
        "ready": [ready.number],
        "overdue": [overdue.number],
    }
    assert queue.total == 5
    with django_assert_num_queries(1):
        assert pickup_counts_for_location(shop.paris) == {
            "to_prepare": 1,
            "awaiting_transfer": 2,
            "ready": 1,
            "overdue": 1,
            "needs_attention": 1,
        }
    assert pickup_counts_for_location(shop.lyon) == {
        "to_prepare": 1,
        "awaiting_transfer": 0,
        "ready": 0,
        "overdue": 0,
        "needs_attention": 0,
    }
    assert clock.now == T0 + timedelta(days=3, seconds=1)


def test_order_by_number_and_customer_reads(shop, stock, clock):
    stock.put(shop.paris, shop.a, 5)
    email = [Identifier("email", "ana@example.com")]
    first = _pickup(shop, shop.paris, identifiers=email)
    clock.advance(hours=1)
    second = _pickup(shop, shop.paris, identifiers=email)
    assert order_by_number(f" {first.number.lower()} ") == first
    assert order_by_number("O-NONE-NONE") is None
    assert order_by_number(None) is None
    customer = first.customer
    assert [o.pk for o in orders_for_customer(customer.pk)] == [second.pk, first.pk]
    assert [o.pk for o in orders_for_customer(customer.pk, limit=1)] == [second.pk]
    cart = cart_create(
        channel=shop.web, source="test", customer=customer, lines=[LineInput("SKU-A", 1)]
    )
    cart_create(channel=shop.web, source="test")
    assert [c.pk for c in open_carts_for_customer(customer.pk)] == [cart.pk]
