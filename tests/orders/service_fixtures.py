"""Helpers for the order service tests: a clock the services read, a snapshot of every table
an order service writes (to prove a refused call changed nothing), and orders brought to each
status through the services themselves.

A test module that wants the ``clock`` fixture imports ``clock_fixture`` from here (pytest
finds it by its name, ``clock``); the plain helpers are ordinary functions.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from customers.models import Customer, CustomerMerge, Identity, Touchpoint
from inventory.models import (
    Reservation,
    StockCount,
    StockLevel,
    StockMovement,
    Transfer,
    TransferLine,
)
from omni.models import OutboxEvent
from orders.models import (
    Cart,
    CartLine,
    Fulfilment,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
    Return,
    ReturnLine,
)
from orders.services import (
    ReturnLineInput,
    order_cancel,
    order_collect,
    order_mark_ready,
    order_place,
    order_ship,
    return_create,
)
from tests.orders.conftest import lines

T0 = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


class Clock:
    """What ``timezone.now()`` answers while the fixture is active."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now = self.now + timedelta(**delta)
        return self.now


@pytest.fixture(name="clock")
def clock_fixture(monkeypatch):
    """Freeze ``django.utils.timezone.now`` (which every service and ``auto_now`` field read)
    at ``T0``; ``clock.advance(hours=2)`` moves it."""
    c = Clock(T0)
    monkeypatch.setattr(timezone, "now", c)
    return c


SNAPSHOT_MODELS = [
    Order,
    OrderLine,
    OrderStatusChange,
    Fulfilment,
    Return,
    ReturnLine,
    Cart,
    CartLine,
    Reservation,
    StockLevel,
    StockMovement,
    StockCount,
    Transfer,
    TransferLine,
    OutboxEvent,
    Touchpoint,
    Customer,
    Identity,
    CustomerMerge,
]


def snapshot() -> dict:
    """Every row of every table an order service writes, as plain values."""
    return {
        model._meta.label: list(model._base_manager.order_by("pk").values())
        for model in SNAPSHOT_MODELS
    }


def counts() -> dict:
    return {model._meta.label: model._base_manager.count() for model in SNAPSHOT_MODELS}


def held(order) -> list[tuple[str, int, int, bool]]:
    """The active reservations of an order: ``(location code, line number, units, pinned)``."""
    return sorted(
        (r.location.code, int(r.line_reference), r.quantity, r.pinned)
        for r in Reservation.objects.filter(reference=order.number, status="active").select_related(
            "location"
        )
    )


def history(order) -> list[tuple[str, str]]:
    return list(
        OrderStatusChange.objects.filter(order=order)
        .order_by("at", "pk")
        .values_list("from_status", "to_status")
    )


def events(order) -> list[str]:
    return list(
        OutboxEvent.objects.filter(subject_type="order", subject_id=order.number)
        .order_by("pk")
        .values_list("type", flat=True)
    )


# --- Orders in each status, through the services ------------------------------------------------


def place_ship(shop, stock, quantity=2, **kwargs):
    stock.put(shop.warehouse, shop.a, 10)
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", quantity)),
        fulfilment_method="ship",
        shipping_address="1 rue de Rivoli, Paris",
        source="test",
        **kwargs,
    )


def place_pickup(shop, stock, quantity=2, **kwargs):
    stock.put(shop.paris, shop.a, 10)
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", quantity)),
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        **kwargs,
    )


def place_awaiting(shop, stock, quantity=2, **kwargs):
    stock.put(shop.warehouse, shop.a, 10)
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", quantity)),
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        **kwargs,
    )


def place_in_store(shop, stock, quantity=2, **kwargs):
    stock.put(shop.paris, shop.a, 10)
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", quantity)),
        fulfilment_method="in_store",
        store=shop.paris,
        source="test",
        **kwargs,
    )


def _return_all(order, shop):
    return_create(
        order=order,
        location=shop.paris,
        lines=[ReturnLineInput(str(line.line_number), line.quantity) for line in order.lines.all()],
        source="test",
    )


REACHABLE = {
    ("placed", "ship"),
    ("shipped", "ship"),
    ("cancelled", "ship"),
    ("returned", "ship"),
    ("placed", "pickup"),
    ("awaiting_transfer", "pickup"),
    ("ready", "pickup"),
    ("collected", "pickup"),
    ("cancelled", "pickup"),
    ("returned", "pickup"),
    ("completed", "in_store"),
    ("returned", "in_store"),
}


def order_in(shop, stock, status: str, method: str):
    """An order of ``method`` in ``status``: reached through the services where the state
    machine can reach it, else a reachable order of that method with its status forced (to
    prove the services refuse states that should never exist)."""
    if (status, method) not in REACHABLE:
        base = {"ship": "placed", "pickup": "ready", "in_store": "completed"}[method]
        order = order_in(shop, stock, base, method)
        Order.objects.filter(pk=order.pk).update(status=status)
        order.refresh_from_db()
        return order
    if method == "ship":
        order = place_ship(shop, stock)
        if status in ("shipped", "returned"):
            order_ship(order=order, source="test")
        if status == "returned":
            _return_all(order, shop)
        if status == "cancelled":
            order_cancel(order=order, source="test")
    elif method == "pickup":
        if status == "awaiting_transfer":
            order = place_awaiting(shop, stock)
        else:
            order = place_pickup(shop, stock)
        if status in ("ready", "collected", "returned"):
            order_mark_ready(order=order, source="test")
        if status in ("collected", "returned"):
            order_collect(order=order, code=order.pickup_code, source="test")
        if status == "returned":
            _return_all(order, shop)
        if status == "cancelled":
            order_cancel(order=order, source="test")
    else:
        order = place_in_store(shop, stock)
        if status == "returned":
            _return_all(order, shop)
    order.refresh_from_db()
    assert (order.status, order.fulfilment_method) == (status, method)
    return order


def wrong_code(order) -> str:
    return "000000" if order.pickup_code != "000000" else "111111"


__all__ = [
    "T0",
    "OrderStatus",
    "clock_fixture",
    "counts",
    "events",
    "held",
    "history",
    "order_in",
    "snapshot",
    "wrong_code",
]
