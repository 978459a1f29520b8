"""Returns at the counter: an order of any channel and store comes back here."""

from decimal import Decimal

import pytest

from catalog.models import ChannelListing
from inventory.models import StockLevel, StockMovement
from orders.models import OrderStatus, Return
from orders.services import LineInput, order_place
from tests.store.conftest import url

pytestmark = pytest.mark.django_db


@pytest.fixture
def sold(channels, stores, variant):
    """An in-store sale of 3 LINEN-M at store B (Lyon), on the web channel's prices."""
    from inventory.services import stock_receive

    ChannelListing.objects.create(
        variant=variant,
        product=variant.product,
        channel=channels["web"],
        is_published=True,
        price=Decimal("30.00"),
        currency="EUR",
    )
    stock_receive(location=stores["b"], variant=variant, quantity=5)
    return order_place(
        channel=channels["web"],
        lines=[LineInput("LINEN-M", 3)],
        fulfilment_method="in_store",
        store=stores["b"],
        source="test",
    )


def _messages(response):
    return [str(m) for m in response.context["messages"]]


def test_find_the_order_and_take_a_return_in_another_store(client_a, stores, variant, sold):
    response = client_a.get(url("returns", stores["a"]), {"order": sold.number.lower()})
    assert response.status_code == 302
    assert response["Location"] == url("return_order", stores["a"], sold.number)
    response = client_a.post(
        url("return_order", stores["a"], sold.number),
        {"qty-1": "2", "disposition-1": "restock", "refund_amount": "", "reason": "Too small"},
        follow=True,
    )
    record = Return.objects.get()
    assert _messages(response) == [
        f"Return {record.number} taken for order {sold.number}: 2 items, refund 60.00 EUR."
    ]
    assert record.location == stores["a"]
    assert StockLevel.objects.get(location=stores["a"], variant=variant).on_hand == 2
    assert StockMovement.objects.filter(kind="return", reference=record.number).count() == 1
    sold.refresh_from_db()
    assert sold.status == OrderStatus.COMPLETED
    assert sold.refunded_total == Decimal("60.00")


def test_too_many_is_refused_on_the_page(client_a, stores, variant, sold):
    response = client_a.post(
        url("return_order", stores["a"], sold.number), {"qty-1": "4", "disposition-1": "restock"}
    )
    assert response.status_code == 400
    assert "Line 1 (LINEN-M) can take back 3 more." in response.content.decode()
    assert Return.objects.count() == 0
    assert not StockLevel.objects.filter(location=stores["a"], variant=variant).exists()


def test_nothing_chosen_is_refused(client_a, stores, sold):
    response = client_a.post(url("return_order", stores["a"], sold.number), {"qty-1": "0"})
    assert response.status_code == 400
    assert "Say what comes back." in response.content.decode()
    assert Return.objects.count() == 0


def test_unknown_order(client_a, stores):
    response = client_a.get(url("returns", stores["a"]), {"order": "O-NOPE-NOPE"}, follow=True)
    assert _messages(response) == ["There is no order O-NOPE-NOPE."]


def test_other_store_staff_cannot_take_returns_for_store_a(client_b, client_merch, stores, sold):
    for client in (client_b, client_merch):
        response = client.post(
            url("return_order", stores["a"], sold.number),
            {"qty-1": "1", "disposition-1": "restock"},
        )
        assert response.status_code == 403
    assert Return.objects.count() == 0
