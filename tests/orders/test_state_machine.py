"""The order state machine, table-driven: every status of every fulfilment method against every
service that changes a status. Allowed steps move the order and write one history row;
refused ones raise ``invalid_transition`` and change nothing at all."""

from datetime import timedelta
from decimal import Decimal

import pytest

from inventory.models import Reservation, StockMovement
from omni.exceptions import Conflict
from orders.models import Fulfilment, FulfilmentMethod, Order, OrderStatus, OrderStatusChange
from orders.services import (
    TRANSITIONS,
    allowed,
    order_cancel,
    order_collect,
    order_mark_ready,
    order_ship,
)
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
    events,
    history,
    order_in,
    snapshot,
)

pytestmark = pytest.mark.django_db

STATUSES = [s.value for s in OrderStatus]
METHODS = [m.value for m in FulfilmentMethod]

# Written out by hand (not read from TRANSITIONS): the steps the business allows.
EXPECTED_STEPS = {
    ("placed", "pickup", "ready"),
    ("placed", "pickup", "awaiting_transfer"),
    ("placed", "ship", "shipped"),
    ("placed", "ship", "cancelled"),
    ("placed", "pickup", "cancelled"),
    ("awaiting_transfer", "pickup", "placed"),
    ("awaiting_transfer", "pickup", "cancelled"),
    ("ready", "pickup", "collected"),
    ("ready", "pickup", "cancelled"),
    ("collected", "pickup", "returned"),
    ("shipped", "ship", "returned"),
    ("completed", "in_store", "returned"),
}


def test_the_table_allows_exactly_the_expected_steps():
    found = {
        (status, method, target)
        for status in STATUSES
        for method in METHODS
        for target in STATUSES
        if allowed(Order(status=status, fulfilment_method=method), target)
    }
    assert found == EXPECTED_STEPS
    assert set(TRANSITIONS) == set(STATUSES)


def test_terminal_statuses_have_no_way_out():
    for status in ("returned", "cancelled"):
        for method in METHODS:
            for target in STATUSES:
                assert not allowed(Order(status=status, fulfilment_method=method), target)


def _ready(order, actor):
    return order_mark_ready(order=order, source="user:1", actor=actor)


def _collect(order, actor):
    return order_collect(order=order, code=order.pickup_code, source="user:1", actor=actor)


def _ship(order, actor):
    return order_ship(order=order, source="user:1", actor=actor, carrier="DHL")


def _cancel(order, actor):
    return order_cancel(order=order, source="user:1", actor=actor, reason="Asked by phone")


SERVICES = {
    "mark_ready": (_ready, "ready"),
    "collect": (_collect, "collected"),
    "ship": (_ship, "shipped"),
    "cancel": (_cancel, "cancelled"),
}
ALLOWED_CALLS = {
    ("mark_ready", "placed", "pickup"),
    ("collect", "ready", "pickup"),
    ("ship", "placed", "ship"),
    ("cancel", "placed", "ship"),
    ("cancel", "placed", "pickup"),
    ("cancel", "awaiting_transfer", "pickup"),
    ("cancel", "ready", "pickup"),
}
CASES = [
    (service, status, method) for service in SERVICES for status in STATUSES for method in METHODS
]


@pytest.mark.parametrize(("service", "status", "method"), CASES)
def test_every_service_in_every_status(shop, stock, staff_user, clock, service, status, method):
    order = order_in(shop, stock, status, method)
    call, target = SERVICES[service]
    clock.advance(hours=1)
    before = snapshot()
    steps_before = OrderStatusChange.objects.filter(order=order).count()
    if (service, status, method) not in ALLOWED_CALLS:
        with pytest.raises(Conflict) as refused:
            call(Order.objects.get(pk=order.pk), staff_user)
        assert refused.value.code == "invalid_transition"
        assert refused.value.extra == {"status": [f"{status} -> {target} is not allowed."]}
        assert snapshot() == before
        return
    result = call(Order.objects.get(pk=order.pk), staff_user)
    order.refresh_from_db()
    assert result.status == order.status == target
    change = OrderStatusChange.objects.filter(order=order).order_by("pk").last()
    assert OrderStatusChange.objects.filter(order=order).count() == steps_before + 1
    assert (change.from_status, change.to_status) == (status, target)
    assert (change.source, change.actor, change.at) == ("user:1", staff_user, clock.now)
    assert change.at == T0 + timedelta(hours=1)
    if target == "cancelled":
        assert change.note == "Asked by phone"
    if target == "ready":
        assert order.ready_at == clock.now
        assert order.closed_at is None
    else:
        assert order.closed_at == clock.now


def test_history_of_a_pickup_from_placement_to_collection(shop, stock, staff_user, clock):
    order = order_in(shop, stock, "placed", "pickup")
    clock.advance(hours=3)
    order_mark_ready(order=order, source="user:7", actor=staff_user)
    clock.advance(hours=20)
    order_collect(order=order, code=order.pickup_code, source="user:8", actor=staff_user)
    rows = list(
        OrderStatusChange.objects.filter(order=order)
        .order_by("at", "pk")
        .values_list("from_status", "to_status", "source", "actor", "at", "note")
    )
    assert rows == [
        ("", "placed", "test", None, T0, "Placed"),
        ("placed", "ready", "user:7", staff_user.pk, T0 + timedelta(hours=3), ""),
        ("ready", "collected", "user:8", staff_user.pk, T0 + timedelta(hours=23), ""),
    ]
    order.refresh_from_db()
    assert (order.placed_at, order.ready_at, order.closed_at) == (
        T0,
        T0 + timedelta(hours=3),
        T0 + timedelta(hours=23),
    )
    assert events(order) == ["order.placed", "order.pickup_ready", "order.collected"]


def test_an_anonymous_actor_is_recorded_as_none(shop, stock):
    from django.contrib.auth.models import AnonymousUser

    order = order_in(shop, stock, "placed", "ship")
    order_cancel(order=order, source="client:3", actor=AnonymousUser())
    change = OrderStatusChange.objects.get(order=order, to_status="cancelled")
    assert (change.from_status, change.source, change.actor) == ("placed", "client:3", None)


def test_cancel_reason_too_long_changes_nothing(shop, stock):
    order = order_in(shop, stock, "placed", "ship")
    before = snapshot()
    with pytest.raises(Exception) as refused:
        order_cancel(order=order, source="test", reason="x" * 301)
    assert refused.value.code == "validation_error"
    assert refused.value.extra == {"reason": ["At most 300."]}
    assert snapshot() == before


HISTORIES = {
    ("shipped", "ship"): [("", "placed"), ("placed", "shipped")],
    ("returned", "ship"): [("", "placed"), ("placed", "shipped"), ("shipped", "returned")],
    ("cancelled", "pickup"): [("", "placed"), ("placed", "cancelled")],
    ("awaiting_transfer", "pickup"): [("", "awaiting_transfer")],
    ("completed", "in_store"): [("", "completed")],
    ("returned", "in_store"): [("", "completed"), ("completed", "returned")],
    ("returned", "pickup"): [
        ("", "placed"),
        ("placed", "ready"),
        ("ready", "collected"),
        ("collected", "returned"),
    ],
}


@pytest.mark.parametrize(("status", "method"), list(HISTORIES))
def test_the_history_of_each_reachable_state(shop, stock, status, method):
    order = order_in(shop, stock, status, method)
    assert history(order) == HISTORIES[(status, method)]


def test_refused_ship_of_a_pickup_keeps_its_reservations_and_stock(shop, stock):
    order = order_in(shop, stock, "ready", "pickup")
    with pytest.raises(Conflict) as refused:
        order_ship(order=order, source="test")
    assert refused.value.code == "invalid_transition"
    assert str(refused.value) == (
        f"Order {order.number} is ready for pickup (pickup at a store); it cannot ship."
    )
    assert Reservation.objects.get(reference=order.number).status == "active"
    assert StockMovement.objects.filter(reference=order.number).count() == 0
    assert Fulfilment.objects.filter(order=order).count() == 0
    assert order.total == Decimal("20.00")
