"""Returns in any store: restock or write off, partial then full, refunds and their limits."""

from decimal import Decimal

import pytest

from customers.identifiers import Identifier
from customers.models import Touchpoint
from inventory.models import StockMovement
from omni.exceptions import Conflict, ValidationFailed
from omni.models import OutboxEvent
from orders.models import OrderLine, Return, ReturnLine
from orders.services import ReturnLineInput, order_collect, order_mark_ready, return_create
from tests.factories import LocationFactory
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
    history,
    order_in,
    snapshot,
)

pytestmark = pytest.mark.django_db


def collected(shop, stock, **kwargs):
    """A collected pickup at Paris: 3 x SKU-A at 10.00 and 2 x SKU-B at 25.50 (81.00)."""
    from orders.services import order_place
    from tests.orders.conftest import lines

    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.paris, shop.b, 5)
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 3), ("SKU-B", 2)),
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        **kwargs,
    )
    order_mark_ready(order=order, source="test")
    order_collect(order=order, code=order.pickup_code, source="test")
    order.refresh_from_db()
    assert order.total == Decimal("81.00")
    return order


def test_return_in_another_store_restocks_that_store(shop, stock, staff_user, clock):
    order = collected(shop, stock, identifiers=[Identifier("email", "ana@example.com")])
    record = return_create(
        order=order,
        location=shop.lyon,
        lines=[ReturnLineInput("1", 2), ReturnLineInput("SKU-B", 1, "write_off")],
        source="user:1",
        reason=" Too small ",
        actor=staff_user,
    )
    assert record.number.startswith("R-")
    assert (record.location, record.reason, record.refund_amount, record.actor) == (
        shop.lyon,
        "Too small",
        Decimal("45.50"),
        staff_user,
    )
    assert (record.created_at, record.source) == (T0, "user:1")
    assert sorted(
        ReturnLine.objects.filter(return_record=record).values_list(
            "order_line__line_number", "quantity", "disposition"
        )
    ) == [(1, 2, "restock"), (2, 1, "write_off")]
    # Restocked at Lyon (a return movement there); the written-off unit moves no stock.
    assert list(
        StockMovement.objects.filter(reference=record.number).values_list(
            "location__code", "variant__sku", "kind", "quantity", "channel", "source", "actor"
        )
    ) == [("lyon", "SKU-A", "return", 2, shop.web.pk, "returns", staff_user.pk)]
    assert stock.row(shop.lyon, shop.a) == (2, 0)
    assert stock.row(shop.lyon, shop.b) == (0, 0)
    assert stock.row(shop.paris, shop.a) == (2, 0)
    assert stock.row(shop.paris, shop.b) == (3, 0)
    order.refresh_from_db()
    assert (order.status, order.refunded_total) == ("collected", Decimal("45.50"))
    assert list(
        OrderLine.objects.filter(order=order)
        .order_by("line_number")
        .values_list("returned_quantity", flat=True)
    ) == [2, 1]
    touchpoint = Touchpoint.objects.get(customer=order.customer, kind="return")
    assert (touchpoint.location, touchpoint.event_id, touchpoint.properties) == (
        shop.lyon,
        f"{order.number}:return:{record.number}",
        {
            "order": order.number,
            "return": record.number,
            "refund": "45.50",
            "currency": "EUR",
            "items": 3,
        },
    )
    event = OutboxEvent.objects.get(type="order.returned")
    assert (event.payload["return"], event.payload["refund"]) == (record.number, "45.50")


def test_partial_then_full_return_returns_the_order(shop, stock, clock):
    order = collected(shop, stock)
    return_create(order=order, location=shop.paris, lines=[ReturnLineInput("1", 1)], source="t")
    order.refresh_from_db()
    assert order.status == "collected"
    second = return_create(
        order=order,
        location=shop.paris,
        lines=[ReturnLineInput("SKU-A", 2), ReturnLineInput("2", 2)],
        source="t",
    )
    order.refresh_from_db()
    assert (order.status, order.refunded_total) == ("returned", Decimal("81.00"))
    assert history(order)[-1] == ("collected", "returned")
    assert order.history.order_by("pk").last().note == second.number
    assert stock.row(shop.paris, shop.a) == (5, 0)
    assert stock.row(shop.paris, shop.b) == (5, 0)
    assert Return.objects.filter(order=order).count() == 2
    before = snapshot()
    with pytest.raises(Conflict) as refused:
        return_create(order=order, location=shop.paris, lines=[ReturnLineInput("1", 1)], source="t")
    assert refused.value.code == "not_returnable"
    assert snapshot() == before


def test_too_many_returned(shop, stock):
    order = collected(shop, stock)
    return_create(order=order, location=shop.paris, lines=[ReturnLineInput("1", 2)], source="t")
    before = snapshot()
    with pytest.raises(ValidationFailed) as refused:
        return_create(
            order=order,
            location=shop.paris,
            lines=[ReturnLineInput("1", 2), ReturnLineInput("2", 1)],
            source="t",
        )
    assert refused.value.code == "too_many_returned"
    assert refused.value.extra == {"lines": {"0": {"quantity": ["At most 1."]}}}
    assert str(refused.value) == ("The return was not taken: Line 1 (SKU-A) can take back 1 more.")
    # The same line twice in one return counts both.
    with pytest.raises(ValidationFailed) as twice:
        return_create(
            order=order,
            location=shop.paris,
            lines=[ReturnLineInput("2", 1), ReturnLineInput("SKU-B", 2)],
            source="t",
        )
    assert twice.value.code == "too_many_returned"
    assert twice.value.extra == {"lines": {"1": {"quantity": ["At most 1."]}}}
    assert snapshot() == before


def test_too_many_returned_on_a_single_line(shop, stock):
    order = collected(shop, stock)
    with pytest.raises(ValidationFailed) as refused:
        return_create(order=order, location=shop.paris, lines=[ReturnLineInput("2", 3)], source="t")
    assert refused.value.code == "too_many_returned"
    assert refused.value.extra == {"lines": {"0": {"quantity": ["At most 2."]}}}
    # Mixed with another kind of mistake, the return is merely invalid.
    with pytest.raises(ValidationFailed) as mixed:
        return_create(
            order=order,
            location=shop.paris,
            lines=[ReturnLineInput("2", 3), ReturnLineInput("7", 1)],
            source="t",
        )
    assert mixed.value.code == "validation_error"
    assert mixed.value.extra == {
        "lines": {
            "0": {"quantity": ["At most 2."]},
            "1": {"line": ["No line 7 on this order."]},
        }
    }


def test_refund_defaults_to_the_lines_and_is_capped(shop, stock):
    order = collected(shop, stock)
    before = snapshot()
    with pytest.raises(ValidationFailed) as high:
        return_create(
            order=order,
            location=shop.paris,
            lines=[ReturnLineInput("1", 1)],
            source="t",
            refund_amount="10.01",
        )
    assert high.value.code == "refund_too_high"
    assert high.value.extra == {"refund_amount": ["At most 10.00."]}
    with pytest.raises(ValidationFailed) as negative:
        return_create(
            order=order,
            location=shop.paris,
            lines=[ReturnLineInput("1", 1)],
            source="t",
            refund_amount="-1",
        )
    assert negative.value.extra == {"refund_amount": ["A positive amount."]}
    assert snapshot() == before
    partial = return_create(
        order=order,
        location=shop.paris,
        lines=[ReturnLineInput("1", 1)],
        source="t",
        refund_amount="7.5",
    )
    assert partial.refund_amount == Decimal("7.50")
    free = return_create(
        order=order,
        location=shop.paris,
        lines=[ReturnLineInput("2", 1)],
        source="t",
        refund_amount=0,
    )
    assert free.refund_amount == Decimal("0.00")
    order.refresh_from_db()
    assert order.refunded_total == Decimal("7.50")


def test_return_input_errors(shop, stock):
    order = collected(shop, stock)
    inactive = LocationFactory(code="shut", is_active=False)
    before = snapshot()
    with pytest.raises(ValidationFailed) as refused:
        return_create(
            order=order,
            location=shop.paris,
            lines=[
                ReturnLineInput("9", 1),
                ReturnLineInput("1", 0),
                ReturnLineInput("2", 1, "donate"),
            ],
            source="t",
        )
    assert str(refused.value) == (
        "The return was not taken: The order has no line 9. (3 lines are wrong.)"
    )
    assert refused.value.extra == {
        "lines": {
            "0": {"line": ["No line 9 on this order."]},
            "1": {"quantity": ["Must be at least 1."]},
            "2": {"disposition": ["One of: restock, write_off."]},
        }
    }
    with pytest.raises(ValidationFailed) as empty:
        return_create(order=order, location=shop.paris, lines=[], source="t")
    assert empty.value.extra == {"lines": ["At least one line."]}
    with pytest.raises(ValidationFailed) as shut:
        return_create(order=order, location=inactive, lines=[ReturnLineInput("1", 1)], source="t")
    assert shut.value.code == "location_inactive"
    with pytest.raises(ValidationFailed) as long_reason:
        return_create(
            order=order,
            location=shop.paris,
            lines=[ReturnLineInput("1", 1)],
            source="t",
            reason="x" * 201,
        )
    assert long_reason.value.extra == {"reason": ["At most 200."]}
    assert snapshot() == before


@pytest.mark.parametrize(
    ("status", "method"),
    [
        ("placed", "ship"),
        ("placed", "pickup"),
        ("awaiting_transfer", "pickup"),
        ("ready", "pickup"),
        ("cancelled", "ship"),
        ("cancelled", "pickup"),
        ("returned", "ship"),
        ("returned", "pickup"),
        ("returned", "in_store"),
    ],
)
def test_not_returnable_statuses(shop, stock, status, method):
    order = order_in(shop, stock, status, method)
    before = snapshot()
    with pytest.raises(Conflict) as refused:
        return_create(order=order, location=shop.paris, lines=[ReturnLineInput("1", 1)], source="t")
    assert refused.value.code == "not_returnable"
    assert refused.value.extra == {
        "order": ["Only collected, shipped or completed orders take returns."]
    }
    assert snapshot() == before


@pytest.mark.parametrize(
    ("status", "method"), [("collected", "pickup"), ("shipped", "ship"), ("completed", "in_store")]
)
def test_returnable_statuses_end_returned(shop, stock, status, method):
    order = order_in(shop, stock, status, method)
    return_create(order=order, location=shop.lyon, lines=[ReturnLineInput("1", 2)], source="t")
    order.refresh_from_db()
    assert order.status == "returned"
    assert order.refunded_total == order.total == Decimal("20.00")
    assert stock.row(shop.lyon, shop.a) == (2, 0)
