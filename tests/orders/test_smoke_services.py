from decimal import Decimal

import pytest

from customers.models import Touchpoint
from inventory.models import Reservation, Transfer
from inventory.services import transfer_receive, transfer_ship
from omni.exceptions import Conflict, InsufficientStock
from orders.models import Order, OrderStatus
from orders.services import (
    ReturnLineInput,
    cart_create,
    cart_line_add,
    order_cancel,
    order_collect,
    order_mark_ready,
    order_place,
    order_place_from_cart,
    order_ship,
    pos_sale_record,
    return_create,
)
from tests.orders.conftest import lines

pytestmark = pytest.mark.django_db


def test_pickup_at_store_with_stock_there(shop, stock, email):
    stock.put(shop.paris, shop.a, 5)
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 2)),
        fulfilment_method="pickup",
        store=shop.paris,
        identifiers=email(),
        source="test",
    )
    assert order.status == OrderStatus.PLACED
    assert order.total == Decimal("20.00")
    assert stock.row(shop.paris, shop.a) == (5, 2)
    order_mark_ready(order=order, source="test")
    with pytest.raises(Exception) as wrong:
        order_collect(
            order=order, code="000000" if order.pickup_code != "000000" else "1", source="t"
        )
    assert wrong.value.code == "wrong_pickup_code"
    order_collect(order=order, code=order.pickup_code, source="test")
    order.refresh_from_db()
    assert order.status == OrderStatus.COLLECTED
    assert stock.row(shop.paris, shop.a) == (3, 0)
    kinds = list(
        Touchpoint.objects.filter(customer=order.customer)
        .order_by("occurred_at", "pk")
        .values_list("kind", flat=True)
    )
    assert kinds == ["purchase", "pickup"]


def test_pickup_elsewhere_requests_a_transfer(shop, stock, email):
    stock.put(shop.paris, shop.a, 1)
    stock.put(shop.warehouse, shop.a, 10)
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 3)),
        fulfilment_method="pickup",
        store=shop.paris,
        identifiers=email(),
        source="test",
    )
    assert order.status == OrderStatus.AWAITING_TRANSFER
    assert order.expected_ready_at is not None
    transfer = Transfer.objects.get()
    assert (transfer.from_location, transfer.to_location) == (shop.warehouse, shop.paris)
    assert stock.row(shop.paris, shop.a) == (1, 1)
    assert stock.row(shop.warehouse, shop.a) == (10, 2)
    transfer_ship(transfer=transfer)
    transfer_receive(transfer=transfer)
    order.refresh_from_db()
    assert order.status == OrderStatus.PLACED
    assert stock.row(shop.paris, shop.a) == (3, 3)
    held = sorted(
        Reservation.objects.filter(reference=order.number, status="active").values_list(
            "quantity", flat=True
        )
    )
    assert held == [1, 2]


def test_ship_cancel_and_short(shop, stock):
    stock.put(shop.warehouse, shop.b, 2)
    with pytest.raises(InsufficientStock) as short:
        order_place(
            channel=shop.web,
            lines=lines(("SKU-B", 3)),
            fulfilment_method="ship",
            shipping_address="1 rue X",
            source="test",
        )
    assert short.value.extra["lines"] == [
        {"index": 0, "sku": "SKU-B", "requested": 3, "available": 2}
    ]
    assert Order.objects.count() == 0
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-B", 2)),
        fulfilment_method="ship",
        shipping_address="1 rue X",
        source="test",
    )
    order_cancel(order=order, source="test")
    assert stock.row(shop.warehouse, shop.b) == (2, 0)
    with pytest.raises(Conflict) as bad:
        order_ship(order=order, source="test")
    assert bad.value.code == "invalid_transition"


def test_cart_pos_and_return(shop, stock, email):
    stock.put(shop.warehouse, shop.c, 10)
    cart = cart_create(channel=shop.web, identifiers=email(), source="test")
    cart_line_add(cart=cart, sku="sku-c", quantity=2)
    order = order_place_from_cart(
        cart=cart, fulfilment_method="in_store", store=shop.lyon, source="t"
    )
    assert order.status == OrderStatus.COMPLETED
    assert stock.row(shop.lyon, shop.c) == (-2, 0)
    sale = pos_sale_record(store=shop.paris, lines=lines(("SKU-C", 1)), source="t", receipt="R1")
    assert sale.total == Decimal("4.50")
    with pytest.raises(Conflict):
        pos_sale_record(store=shop.paris, lines=lines(("SKU-C", 1)), source="t", receipt="R1")
    record = return_create(
        order=order, location=shop.paris, lines=[ReturnLineInput("1", 2)], source="t"
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.RETURNED
    assert record.refund_amount == Decimal("8.00")
    assert stock.row(shop.paris, shop.c) == (1, 0)


def test_shipping_only_from_locations_that_ship_online_orders(shop, stock):
    shop.warehouse.ships_online_orders = False
    shop.warehouse.save()
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.lyon, shop.a, 1)
    with pytest.raises(InsufficientStock) as short:
        order_place(
            channel=shop.web,
            lines=lines(("SKU-A", 2)),
            fulfilment_method="ship",
            shipping_address="1 rue X",
            source="test",
        )
    assert short.value.extra["lines"] == [
        {"index": 0, "sku": "SKU-A", "requested": 2, "available": 1}
    ]
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 1)),
        fulfilment_method="ship",
        shipping_address="1 rue X",
        source="test",
    )
    assert Reservation.objects.get(reference=order.number).location == shop.lyon
    assert stock.row(shop.warehouse, shop.a) == (10, 0)
