"""The pickup queue page: sections, mark ready, hand over by code or by scanning the QR code,
clear errors for a wrong code or a wrong store, and store B's staff refused with nothing
changed."""

from decimal import Decimal

import pytest

from catalog.models import ChannelListing
from inventory.models import StockLevel
from orders.models import Fulfilment, Order, OrderStatus, OrderStatusChange
from orders.services import LineInput, order_mark_ready, order_place
from tests.store.conftest import sign_in_url, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def pickup(channels, stores, variant):
    """A real pickup at store A through the service: 2 LINEN-M held at A."""
    from inventory.services import stock_receive

    ChannelListing.objects.create(
        variant=variant,
        product=variant.product,
        channel=channels["web"],
        is_published=True,
        price=Decimal("30.00"),
        currency="EUR",
    )
    stock_receive(location=stores["a"], variant=variant, quantity=5)
    return order_place(
        channel=channels["web"],
        lines=[LineInput("LINEN-M", 2)],
        fulfilment_method="pickup",
        store=stores["a"],
        contact_name="Camille Martin",
        source="test",
    )


def _row(location, variant):
    level = StockLevel.objects.get(location=location, variant=variant)
    return level.on_hand, level.reserved


def _messages(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_queue_sorts_orders_into_sections(
    client_a, stores, make_order, django_assert_max_num_queries
):
    from datetime import timedelta

    from django.utils import timezone

    make_order(stores["a"], OrderStatus.PLACED)
    make_order(stores["a"], OrderStatus.AWAITING_TRANSFER)
    make_order(stores["a"], OrderStatus.READY, ready_at=timezone.now() - timedelta(hours=2))
    make_order(stores["a"], OrderStatus.READY, ready_at=timezone.now() - timedelta(days=5))
    make_order(stores["a"], OrderStatus.COLLECTED)
    make_order(stores["b"], OrderStatus.PLACED)
    with django_assert_max_num_queries(10):
        response = client_a.get(url("pickups", stores["a"]))
    assert response.status_code == 200
    queue = response.context["queue"]
    assert [
        len(queue.to_prepare),
        len(queue.awaiting_transfer),
        len(queue.ready),
        len(queue.overdue),
    ] == [1, 1, 1, 1]
    body = response.content.decode()
    assert 'data-testid="count-overdue">1<' in body
    assert "O-TEST-0006" not in body  # store B's


def test_each_row_links_the_orders_page_and_its_actions(client_a, stores, make_order):
    """The rows' addresses are filled in from one reversal each: the same as reversing them."""
    from django.utils import timezone

    placed = make_order(stores["a"], OrderStatus.PLACED)
    ready = make_order(stores["a"], OrderStatus.READY, ready_at=timezone.now())

    body = client_a.get(url("pickups", stores["a"])).content.decode()

    for order, action in ((placed, "pickup_ready"), (ready, "pickup_collect")):
        assert f'<a href="{url("pickup", stores["a"], order.number)}">' in body
        assert f'action="{url(action, stores["a"], order.number)}"' in body
    assert url("pickup_collect", stores["a"], placed.number) not in body
    assert url("pickup_ready", stores["a"], ready.number) not in body


def test_queries_do_not_grow_with_the_queue(client_a, stores, make_order):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client_a.get(url("pickups", stores["a"]))
    counts = []
    for batch in (3, 30):
        for _ in range(batch):
            make_order(stores["a"], OrderStatus.PLACED)
        with CaptureQueriesContext(connection) as queries:
            assert client_a.get(url("pickups", stores["a"])).status_code == 200
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1] <= 10


def test_mark_ready_then_hand_over_with_the_code(client_a, stores, variant, pickup):
    response = client_a.post(url("pickup_ready", stores["a"], pickup.number), follow=True)
    assert f"Order {pickup.number} is ready; the customer is told." in _messages(response)
    pickup.refresh_from_db()
    assert pickup.status == OrderStatus.READY
    response = client_a.post(
        url("pickup_collect", stores["a"], pickup.number), {"code": pickup.pickup_code}, follow=True
    )
    assert f"Order {pickup.number} handed over: 2 items." in _messages(response)
    pickup.refresh_from_db()
    assert pickup.status == OrderStatus.COLLECTED
    assert _row(stores["a"], variant) == (3, 0)
    assert Fulfilment.objects.get(order=pickup).units == 2


def test_wrong_code_says_so_and_changes_nothing(client_a, stores, variant, pickup):
    order_mark_ready(order=pickup, source="test")
    wrong = "000000" if pickup.pickup_code != "000000" else "111111"
    response = client_a.post(
        url("pickup_collect", stores["a"], pickup.number), {"code": wrong}, follow=True
    )
    assert _messages(response) == [
        f"That is not the pickup code of order {pickup.number}. Wrong pickup code."
    ]
    pickup.refresh_from_db()
    assert pickup.status == OrderStatus.READY
    assert _row(stores["a"], variant) == (5, 2)


def test_scan_the_qr_code_hands_over(client_a, stores, variant, pickup):
    order_mark_ready(order=pickup, source="test")
    response = client_a.post(
        url("pickup_scan", stores["a"]), {"scan": pickup.qr_payload}, follow=True
    )
    assert f"Order {pickup.number} handed over: 2 items." in _messages(response)
    assert Order.objects.get(pk=pickup.pk).status == OrderStatus.COLLECTED


def test_scan_at_the_wrong_store_is_a_clear_error(client_b, stores, variant, pickup):
    order_mark_ready(order=pickup, source="test")
    response = client_b.post(
        url("pickup_scan", stores["b"]), {"scan": pickup.qr_payload}, follow=True
    )
    assert _messages(response) == [
        f"Order {pickup.number} is for pickup at another store (Paris Rivoli), not Lyon Part-Dieu."
    ]
    assert Order.objects.get(pk=pickup.pk).status == OrderStatus.READY
    assert _row(stores["a"], variant) == (5, 2)


def test_scan_needs_a_code_with_a_typed_number(client_a, stores, pickup):
    order_mark_ready(order=pickup, source="test")
    response = client_a.post(url("pickup_scan", stores["a"]), {"scan": pickup.number}, follow=True)
    assert _messages(response) == [f"Enter the pickup code of order {pickup.number}."]
    response = client_a.post(
        url("pickup_scan", stores["a"]),
        {"scan": pickup.number.lower(), "code": pickup.pickup_code},
        follow=True,
    )
    assert f"Order {pickup.number} handed over: 2 items." in _messages(response)


def test_hand_over_before_ready_is_refused(client_a, stores, variant, pickup):
    response = client_a.post(
        url("pickup_collect", stores["a"], pickup.number), {"code": pickup.pickup_code}, follow=True
    )
    assert _messages(response) == [
        f"Order {pickup.number} is placed (pickup at a store); it cannot be handed over. "
        "placed -> collected is not allowed."
    ]
    assert _row(stores["a"], variant) == (5, 2)


@pytest.mark.parametrize("who", ["b", "merch"])
def test_other_store_staff_cannot_touch_the_pickup(request, who, stores, variant, pickup):
    client = request.getfixturevalue(f"client_{who}")
    history = OrderStatusChange.objects.count()
    for name in ("pickup_ready", "pickup_collect"):
        response = client.post(url(name, stores["a"], pickup.number), {"code": pickup.pickup_code})
        assert response.status_code == 403
    assert client.get(url("pickups", stores["a"])).status_code == 403
    assert client.get(url("pickup", stores["a"], pickup.number)).status_code == 403
    if who == "b":
        # Through her own store's address: the order is not a pickup there.
        response = client.post(url("pickup_ready", stores["b"], pickup.number))
        assert response.status_code == 403
    assert Order.objects.get(pk=pickup.pk).status == OrderStatus.PLACED
    assert OrderStatusChange.objects.count() == history
    assert _row(stores["a"], variant) == (5, 2)


def test_anonymous_goes_to_sign_in(anon, stores, pickup):
    target = url("pickup_ready", stores["a"], pickup.number)
    response = anon.post(target)
    assert response.status_code == 302
    assert response["Location"] == sign_in_url(target)
    assert Order.objects.get(pk=pickup.pk).status == OrderStatus.PLACED


def test_detail_page(client_a, stores, pickup):
    response = client_a.get(url("pickup", stores["a"], pickup.number))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Camille Martin" in body
    assert "60.00 EUR" in body
    assert "Mark ready" in body
