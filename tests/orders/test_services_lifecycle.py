"""Ready, hand-over, shipment and cancellation, and the transfers a pickup waits for."""

from datetime import timedelta

import pytest

from customers.identifiers import Identifier
from customers.models import Touchpoint
from inventory.models import Reservation, StockMovement, Transfer
from inventory.services import stock_sell, transfer_cancel, transfer_receive, transfer_ship
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.models import OutboxEvent
from orders.models import Fulfilment, Order, OrderLine
from orders.services import (
    order_cancel,
    order_collect,
    order_mark_ready,
    order_place,
    order_ship,
)
from tests.orders.conftest import lines
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
    events,
    held,
    history,
    snapshot,
    wrong_code,
)

pytestmark = pytest.mark.django_db


def _email():
    return [Identifier("email", "camille@example.com")]


def pickup(shop, *pairs, store=None, **kwargs):
    return order_place(
        channel=shop.web,
        lines=lines(*pairs),
        fulfilment_method="pickup",
        store=store or shop.paris,
        source="test",
        **kwargs,
    )


def ship(shop, *pairs, **kwargs):
    return order_place(
        channel=shop.web,
        lines=lines(*pairs),
        fulfilment_method="ship",
        shipping_address="1 rue de Rivoli",
        source="test",
        **kwargs,
    )


# --- Ready and hand-over -----------------------------------------------------------------------


def test_mark_ready_tells_the_customer(shop, stock, staff_user, clock):
    stock.put(shop.paris, shop.a, 5)
    order = pickup(shop, ("SKU-A", 2), identifiers=_email())
    clock.advance(hours=2)
    ready = order_mark_ready(order=order, source="user:1", actor=staff_user, location=shop.paris)
    assert (ready.status, ready.ready_at) == ("ready", T0 + timedelta(hours=2))
    event = OutboxEvent.objects.get(type="order.pickup_ready")
    assert (event.subject_type, event.subject_id) == ("order", order.number)
    assert event.payload == {
        "number": order.number,
        "channel": "web",
        "customer": order.customer_id,
        "status": "ready",
        "fulfilment_method": "pickup",
        "store": "paris",
        "total": "20.00",
        "currency": "EUR",
        "pickup_code_hint": order.pickup_code[-2:],
    }
    # The stock stays held until the hand-over.
    assert held(order) == [("paris", 1, 2, True)]
    assert stock.row(shop.paris, shop.a) == (5, 2)


def test_mark_ready_at_another_store_is_refused(shop, stock):
    stock.put(shop.paris, shop.a, 5)
    order = pickup(shop, ("SKU-A", 2))
    before = snapshot()
    with pytest.raises(ValidationFailed) as refused:
        order_mark_ready(order=order, source="test", location=shop.lyon)
    assert refused.value.code == "wrong_store"
    assert refused.value.extra == {"store": [f"Order {order.number} is collected at paris."]}
    assert snapshot() == before


def _ready_pickup(shop, stock, **kwargs):
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.paris, shop.b, 3)
    order = pickup(shop, ("SKU-A", 2), ("SKU-B", 1), **kwargs)
    order_mark_ready(order=order, source="test")
    order.refresh_from_db()
    return order


def test_collect_with_a_wrong_code_changes_nothing(shop, stock):
    order = _ready_pickup(shop, stock, identifiers=_email())
    before = snapshot()
    for code in [wrong_code(order), "", None, order.pickup_code[:5], order.pickup_code + "1"]:
        with pytest.raises(ValidationFailed) as refused:
            order_collect(order=order, code=code, source="test", location=shop.paris)
        assert refused.value.code == "wrong_pickup_code"
        assert refused.value.extra == {"code": ["Wrong pickup code."]}
    assert snapshot() == before


def test_collect_at_the_wrong_store_changes_nothing_even_with_the_right_code(shop, stock):
    order = _ready_pickup(shop, stock)
    before = snapshot()
    with pytest.raises(ValidationFailed) as refused:
        order_collect(order=order, code=order.pickup_code, source="test", location=shop.lyon)
    assert refused.value.code == "wrong_store"
    assert snapshot() == before


def test_collect_with_the_right_code_hands_over(shop, stock, staff_user, clock):
    order = _ready_pickup(shop, stock, identifiers=_email())
    clock.advance(days=1)
    spaced = f"{order.pickup_code[:3]} {order.pickup_code[3:]}"
    collected = order_collect(
        order=order, code=spaced, source="user:1", actor=staff_user, location=shop.paris
    )
    assert (collected.status, collected.closed_at) == ("collected", T0 + timedelta(days=1))
    assert stock.row(shop.paris, shop.a) == (3, 0)
    assert stock.row(shop.paris, shop.b) == (2, 0)
    assert held(order) == []
    assert sorted(
        Reservation.objects.filter(reference=order.number).values_list("status", "quantity")
    ) == [("consumed", 1), ("consumed", 2)]
    movements = list(
        StockMovement.objects.filter(reference=order.number)
        .order_by("variant__sku")
        .values_list("location__code", "variant__sku", "kind", "quantity", "channel", "actor")
    )
    assert movements == [
        ("paris", "SKU-A", "sale", -2, shop.web.pk, staff_user.pk),
        ("paris", "SKU-B", "sale", -1, shop.web.pk, staff_user.pk),
    ]
    fulfilment = Fulfilment.objects.get(order=order)
    assert (
        fulfilment.method,
        fulfilment.location,
        fulfilment.units,
        fulfilment.actor,
        fulfilment.created_at,
    ) == ("pickup", shop.paris, 3, staff_user, T0 + timedelta(days=1))
    pickup_event = Touchpoint.objects.get(customer=order.customer, kind="pickup")
    assert (
        pickup_event.channel,
        pickup_event.location,
        pickup_event.occurred_at,
        pickup_event.event_id,
        pickup_event.properties,
    ) == (
        shop.web,
        shop.paris,
        T0 + timedelta(days=1),
        f"{order.number}:collected",
        {"order": order.number},
    )
    assert events(order) == ["order.placed", "order.pickup_ready", "order.collected"]
    # Once handed over it cannot be handed over again.
    before = snapshot()
    with pytest.raises(Conflict) as again:
        order_collect(order=order, code=order.pickup_code, source="test")
    assert again.value.code == "invalid_transition"
    assert snapshot() == before


def test_collect_before_ready_is_refused_before_the_code_is_checked(shop, stock):
    stock.put(shop.paris, shop.a, 5)
    order = pickup(shop, ("SKU-A", 1))
    with pytest.raises(Conflict) as refused:
        order_collect(order=order, code=wrong_code(order), source="test")
    assert refused.value.code == "invalid_transition"


def test_a_missing_order_is_not_found(shop, stock):
    stock.put(shop.paris, shop.a, 5)
    order = pickup(shop, ("SKU-A", 1))
    ghost = Order(pk=order.pk + 1000)
    with pytest.raises(NotFound):
        order_mark_ready(order=ghost, source="test")


# --- Shipping ---------------------------------------------------------------------------------


def test_ship_consumes_and_records_one_fulfilment_per_location(shop, stock, staff_user, clock):
    stock.put(shop.warehouse, shop.a, 2)
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.lyon, shop.b, 4)
    order = ship(shop, ("SKU-A", 3), ("SKU-B", 2), identifiers=_email())
    clock.advance(hours=5)
    shipped = order_ship(
        order=order,
        source="user:1",
        actor=staff_user,
        carrier="Colissimo",
        tracking_number="6A123",
    )
    assert (shipped.status, shipped.closed_at) == ("shipped", T0 + timedelta(hours=5))
    fulfilments = list(
        Fulfilment.objects.filter(order=order)
        .order_by("location__code")
        .values_list("method", "location__code", "units", "carrier", "tracking_number", "actor")
    )
    assert fulfilments == [
        ("ship", "lyon", 2, "Colissimo", "6A123", staff_user.pk),
        ("ship", "paris", 1, "Colissimo", "6A123", staff_user.pk),
        ("ship", "wh", 2, "Colissimo", "6A123", staff_user.pk),
    ]
    assert stock.row(shop.warehouse, shop.a) == (0, 0)
    assert stock.row(shop.paris, shop.a) == (4, 0)
    assert stock.row(shop.lyon, shop.b) == (2, 0)
    assert sorted(
        StockMovement.objects.filter(reference=order.number).values_list(
            "location__code", "kind", "quantity"
        )
    ) == [("lyon", "sale", -2), ("paris", "sale", -1), ("wh", "sale", -2)]
    event = OutboxEvent.objects.get(type="order.shipped")
    assert (event.payload["carrier"], event.payload["tracking_number"]) == ("Colissimo", "6A123")
    assert history(order) == [("", "placed"), ("placed", "shipped")]


# --- Cancelling --------------------------------------------------------------------------------


def test_cancel_a_shipping_order_releases_everything(shop, stock, clock):
    stock.put(shop.warehouse, shop.a, 2)
    stock.put(shop.paris, shop.a, 5)
    order = ship(shop, ("SKU-A", 3))
    clock.advance(minutes=10)
    cancelled = order_cancel(order=order, source="test", reason="  Changed her mind ")
    assert (cancelled.status, cancelled.closed_at) == ("cancelled", T0 + timedelta(minutes=10))
    assert stock.row(shop.warehouse, shop.a) == (2, 0)
    assert stock.row(shop.paris, shop.a) == (5, 0)
    assert sorted(
        Reservation.objects.filter(reference=order.number).values_list("status", "quantity")
    ) == [("released", 1), ("released", 2)]
    assert StockMovement.objects.filter(reference=order.number).count() == 0
    assert OutboxEvent.objects.get(type="order.cancelled").payload["reason"] == "Changed her mind"


def test_cancel_a_ready_pickup_releases_the_store_stock(shop, stock):
    order = _ready_pickup(shop, stock)
    order_cancel(order=order, source="test")
    assert stock.row(shop.paris, shop.a) == (5, 0)
    assert stock.row(shop.paris, shop.b) == (3, 0)
    assert held(order) == []
    assert history(order) == [("", "placed"), ("placed", "ready"), ("ready", "cancelled")]


# --- Transfers a pickup waits for --------------------------------------------------------------


def _awaiting(shop, stock, **kwargs):
    stock.put(shop.paris, shop.a, 1)
    stock.put(shop.warehouse, shop.a, 10)
    order = pickup(shop, ("SKU-A", 3), **kwargs)
    assert order.status == "awaiting_transfer"
    return order, Transfer.objects.get()


def test_transfer_ship_and_receive_reserve_at_the_store_and_place_the_order(shop, stock, clock):
    order, transfer = _awaiting(shop, stock)
    clock.advance(hours=4)
    transfer_ship(transfer=transfer)
    order.refresh_from_db()
    assert order.status == "awaiting_transfer"
    assert stock.row(shop.warehouse, shop.a) == (8, 0)
    clock.advance(hours=20)
    transfer_receive(transfer=transfer)
    order.refresh_from_db()
    assert order.status == "placed"
    assert order.needs_attention is False
    assert stock.row(shop.paris, shop.a) == (3, 3)
    assert held(order) == [("paris", 1, 1, True), ("paris", 1, 2, True)]
    assert history(order) == [("", "awaiting_transfer"), ("awaiting_transfer", "placed")]
    change = order.history.get(to_status="placed")
    assert (change.source, change.actor, change.at, change.note) == (
        "transfers",
        None,
        T0 + timedelta(hours=24),
        f"{transfer.number} received",
    )
    event = OutboxEvent.objects.get(type="order.transfer_arrived")
    assert (event.subject_id, event.payload["transfer"]) == (order.number, transfer.number)
    # From here it is an ordinary pickup.
    order_mark_ready(order=order, source="test")
    order_collect(order=order, code=order.pickup_code, source="test")
    assert stock.row(shop.paris, shop.a) == (0, 0)
    assert Fulfilment.objects.get(order=order).units == 3


def test_transfer_arriving_short_flags_the_order_which_keeps_waiting(shop, stock):
    order, transfer = _awaiting(shop, stock)
    transfer_ship(transfer=transfer)
    transfer_receive(transfer=transfer, quantities={"SKU-A": 1})
    order.refresh_from_db()
    assert order.status == "awaiting_transfer"
    assert order.needs_attention is True
    assert order.attention_reason == (
        f"Transfer {transfer.number} arrived short: Not enough stock for SKU-A: "
        "2 requested, 1 available."
    )
    assert held(order) == [("paris", 1, 1, True)]
    assert stock.row(shop.paris, shop.a) == (2, 1)
    assert OutboxEvent.objects.get(type="order.needs_attention").payload["reason"] == (
        order.attention_reason
    )
    assert history(order) == [("", "awaiting_transfer")]
    # Staff call it off: the store's hold is released.
    order_cancel(order=order, source="test")
    order.refresh_from_db()
    assert (order.status, order.needs_attention, order.attention_reason) == ("cancelled", False, "")
    assert stock.row(shop.paris, shop.a) == (2, 0)


def test_transfer_cancelled_flags_the_order(shop, stock):
    order, transfer = _awaiting(shop, stock)
    transfer_cancel(transfer=transfer)
    order.refresh_from_db()
    assert order.status == "awaiting_transfer"
    assert (order.needs_attention, order.attention_reason) == (
        True,
        f"Transfer {transfer.number} was cancelled.",
    )
    assert stock.row(shop.warehouse, shop.a) == (10, 0)
    assert held(order) == [("paris", 1, 1, True)]


def test_cancel_an_awaiting_order_cancels_its_transfer_and_releases_the_holds(shop, stock):
    order, transfer = _awaiting(shop, stock)
    order_cancel(order=order, source="test")
    order.refresh_from_db()
    transfer.refresh_from_db()
    assert order.status == "cancelled"
    assert transfer.status == "cancelled"
    assert order.needs_attention is False
    assert stock.row(shop.paris, shop.a) == (1, 0)
    assert stock.row(shop.warehouse, shop.a) == (10, 0)
    assert Reservation.objects.filter(status="active").count() == 0
    assert history(order) == [("", "awaiting_transfer"), ("awaiting_transfer", "cancelled")]
    assert OutboxEvent.objects.filter(type="order.needs_attention").count() == 0


def test_cancel_while_the_transfer_is_on_its_way_lets_it_arrive_as_stock(shop, stock):
    order, transfer = _awaiting(shop, stock)
    transfer_ship(transfer=transfer)
    order_cancel(order=order, source="test")
    transfer.refresh_from_db()
    assert transfer.status == "shipped"
    transfer_receive(transfer=transfer)
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert stock.row(shop.paris, shop.a) == (3, 0)
    assert Reservation.objects.filter(status="active").count() == 0
    assert history(order) == [("", "awaiting_transfer"), ("awaiting_transfer", "cancelled")]


def _two_transfers(shop, stock):
    stock.put(shop.warehouse, shop.a, 5)
    stock.put(shop.lyon, shop.b, 5)
    order = pickup(shop, ("SKU-A", 2), ("SKU-B", 1))
    transfers = {t.from_location.code: t for t in Transfer.objects.all()}
    assert set(transfers) == {"wh", "lyon"}
    return order, transfers["wh"], transfers["lyon"]


def test_with_two_transfers_the_order_waits_for_both(shop, stock):
    order, first, second = _two_transfers(shop, stock)
    transfer_ship(transfer=first)
    transfer_receive(transfer=first)
    order.refresh_from_db()
    assert order.status == "awaiting_transfer"
    assert held(order) == [("paris", 1, 2, True)]
    transfer_ship(transfer=second)
    transfer_receive(transfer=second)
    order.refresh_from_db()
    assert order.status == "placed"
    assert held(order) == [("paris", 1, 2, True), ("paris", 2, 1, True)]


def test_a_cancelled_transfer_keeps_the_order_waiting_when_the_other_arrives(shop, stock):
    order, first, second = _two_transfers(shop, stock)
    transfer_cancel(transfer=second)
    transfer_ship(transfer=first)
    transfer_receive(transfer=first)
    order.refresh_from_db()
    # SKU-B never comes: the order must not be prepared as if it were all there.
    assert order.status == "awaiting_transfer"
    assert order.needs_attention is True
    assert order.attention_reason == f"Transfer {second.number} was cancelled."
    assert held(order) == [("paris", 1, 2, True)]
    with pytest.raises(Conflict) as refused:
        order_mark_ready(order=order, source="test")
    assert refused.value.code == "invalid_transition"


def test_a_short_transfer_keeps_the_order_waiting_when_the_other_arrives(shop, stock):
    order, first, second = _two_transfers(shop, stock)
    transfer_ship(transfer=first)
    transfer_receive(transfer=first, quantities={"SKU-A": 1})
    transfer_ship(transfer=second)
    transfer_receive(transfer=second)
    order.refresh_from_db()
    assert order.status == "awaiting_transfer"
    assert order.needs_attention is True
    assert held(order) == [("paris", 2, 1, True)]


def test_stock_sold_at_the_store_meanwhile_leaves_the_order_waiting(shop, stock):
    order, transfer = _awaiting(shop, stock)
    transfer_ship(transfer=transfer)
    stock_sell(location=shop.paris, variant=shop.a, quantity=1)
    transfer_receive(transfer=transfer)
    order.refresh_from_db()
    assert order.status == "awaiting_transfer"
    assert order.needs_attention is True


def test_the_order_line_remembers_its_transfer(shop, stock):
    order, transfer = _awaiting(shop, stock)
    line = OrderLine.objects.get(order=order)
    assert (line.transfer_id, line.transfer_quantity) == (transfer.pk, 2)


def test_an_item_retired_while_in_transit_still_arrives_and_flags_the_order(shop, stock):
    order, transfer = _awaiting(shop, stock)
    transfer_ship(transfer=transfer)
    shop.a.is_active = False
    shop.a.save()
    transfer_receive(transfer=transfer)
    transfer.refresh_from_db()
    order.refresh_from_db()
    assert transfer.status == "received"
    assert stock.row(shop.paris, shop.a) == (3, 1)
    assert (order.status, order.needs_attention) == ("awaiting_transfer", True)
    assert order.attention_reason == (
        f"Transfer {transfer.number} could not be held: Some lines cannot be reserved."
    )


def test_cancelling_takes_the_purchase_back_from_the_customers_counters(shop, stock, clock):
    from decimal import Decimal

    stock.put(shop.warehouse, shop.a, 10)
    first = ship(shop, ("SKU-A", 1), identifiers=_email())
    clock.advance(days=1)
    second = ship(shop, ("SKU-A", 2), identifiers=_email())
    customer = second.customer
    customer.refresh_from_db()
    assert (customer.lifetime_orders, customer.last_purchase_at) == (2, T0 + timedelta(days=1))
    revenue_before = customer.lifetime_revenue

    clock.advance(hours=2)
    order_cancel(order=second, source="test", reason="Changed her mind")
    customer.refresh_from_db()
    # As if the second order had never been: her last purchase is the first one again.
    assert customer.lifetime_orders == 1
    assert customer.lifetime_revenue == revenue_before - second.total == first.total
    assert customer.last_purchase_at == T0
    event = Touchpoint.objects.get(event_id=f"{second.number}:cancelled")
    assert (event.kind, event.customer_id, event.occurred_at) == (
        "order_cancelled",
        customer.pk,
        T0 + timedelta(days=1, hours=2),
    )
    assert event.properties == {
        "order": second.number,
        "amount": str(second.total),
        "currency": "EUR",
        "reason": "Changed her mind",
    }

    order_cancel(order=first, source="test")
    customer.refresh_from_db()
    assert (customer.lifetime_orders, customer.lifetime_revenue, customer.last_purchase_at) == (
        0,
        Decimal("0.00"),
        None,
    )


def test_cancelling_an_anonymous_order_touches_no_timeline(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    order = ship(shop, ("SKU-A", 1))
    order_cancel(order=order, source="test")
    assert order.customer_id is None
    assert not Touchpoint.objects.exists()


def test_cancelling_an_order_whose_purchase_was_not_recorded_takes_nothing_back(shop, stock):
    """An order whose customer has no purchase event of it on her timeline (attached after
    the order was placed, or written by an import): cancelling it adds no cancellation and
    leaves her counters as they are."""
    stock.put(shop.warehouse, shop.a, 10)
    kept = ship(shop, ("SKU-A", 1), identifiers=_email())
    order = ship(shop, ("SKU-A", 2), identifiers=_email())
    Touchpoint.objects.filter(event_id=f"{order.number}:placed").delete()
    customer = order.customer
    customer.refresh_from_db()
    before = (customer.lifetime_orders, customer.lifetime_revenue, customer.last_purchase_at)

    order_cancel(order=order, source="test")

    customer.refresh_from_db()
    assert (customer.lifetime_orders, customer.lifetime_revenue, customer.last_purchase_at) == (
        before
    )
    assert before[0] == 2
    assert not Touchpoint.objects.filter(kind="order_cancelled").exists()
    assert Touchpoint.objects.filter(event_id=f"{kept.number}:placed").exists()


def test_a_cancellation_sent_by_an_integrator_takes_back_its_purchase(shop):
    from customers.models import Customer
    from customers.services import touchpoints_ingest

    who = [{"kind": "email", "value": "camille@example.com"}]
    touchpoints_ingest(
        source="client:1",
        events=[
            {
                "event_id": "p1",
                "kind": "purchase",
                "channel": "web",
                "occurred_at": "2026-03-01T10:00:00Z",
                "identifiers": who,
                "properties": {"order": "M-1", "amount": "10.00"},
            },
            {
                "event_id": "p2",
                "kind": "purchase",
                "channel": "web",
                "occurred_at": "2026-03-02T10:00:00Z",
                "identifiers": who,
                "properties": {"order": "M-2", "amount": "25.00"},
            },
        ],
    )
    touchpoints_ingest(
        source="client:1",
        events=[
            {
                "event_id": "c2",
                "kind": "order_cancelled",
                "channel": "web",
                "occurred_at": "2026-03-03T10:00:00Z",
                "identifiers": who,
                "properties": {"order": "M-2", "amount": "25.00"},
            }
        ],
    )
    customer = Customer.objects.get()
    assert (customer.lifetime_orders, str(customer.lifetime_revenue)) == (1, "10.00")
    assert customer.last_purchase_at.isoformat() == "2026-03-01T10:00:00+00:00"
    # Not her activity: she was last seen at her last purchase event.
    assert customer.last_seen_at.isoformat() == "2026-03-02T10:00:00+00:00"

    def cancel(event_id, order, **properties):
        touchpoints_ingest(
            source="client:1",
            events=[
                {
                    "event_id": event_id,
                    "kind": "order_cancelled",
                    "channel": "web",
                    "occurred_at": "2026-03-04T10:00:00Z",
                    "identifiers": who,
                    "properties": {"order": order, **properties},
                }
            ],
        )

    # The same order cancelled again under another id, an order she never bought, a
    # cancellation without an order: nothing more is taken back.
    cancel("c2-again", "M-2", amount="25.00")
    cancel("c9", "M-9", amount="99.00")
    cancel("c0", None)
    customer.refresh_from_db()
    assert (customer.lifetime_orders, str(customer.lifetime_revenue)) == (1, "10.00")
    assert customer.last_purchase_at.isoformat() == "2026-03-01T10:00:00+00:00"
    # The amount taken back is the purchase's, whatever the cancellation says.
    cancel("c1", "M-1", amount="1.00")
    customer.refresh_from_db()
    assert (
        customer.lifetime_orders,
        str(customer.lifetime_revenue),
        customer.last_purchase_at,
    ) == (
        0,
        "0.00",
        None,
    )


def test_one_batch_cancelling_an_order_twice_takes_it_back_once(shop):
    from customers.models import Customer
    from customers.services import touchpoints_ingest

    who = [{"kind": "email", "value": "ines@example.com"}]

    def event(event_id, kind, order, at):
        return {
            "event_id": event_id,
            "kind": kind,
            "channel": "web",
            "occurred_at": at,
            "identifiers": who,
            "properties": {"order": order, "amount": "40.00"},
        }

    touchpoints_ingest(
        source="client:1",
        events=[
            event("p1", "purchase", "A-1", "2026-03-01T10:00:00Z"),
            event("p2", "purchase", "A-2", "2026-03-02T10:00:00Z"),
            event("c2", "order_cancelled", "A-2", "2026-03-03T10:00:00Z"),
            event("c2-again", "order_cancelled", "A-2", "2026-03-03T10:05:00Z"),
        ],
    )
    customer = Customer.objects.get()
    assert (customer.lifetime_orders, str(customer.lifetime_revenue)) == (1, "40.00")
    assert customer.last_purchase_at.isoformat() == "2026-03-01T10:00:00+00:00"


def test_a_purchase_recorded_after_its_cancellation_is_taken_back_when_it_comes(shop):
    """Events arrive out of order: the cancellation first (nothing to take back yet), then
    its purchase, which it takes back. A second cancellation of the order then takes nothing,
    and another order's purchase counts."""
    from customers.models import Customer
    from customers.services import touchpoints_ingest

    who = [{"kind": "email", "value": "zoe@example.com"}]

    def ingest(event_id, kind, order, at, amount="40.00"):
        touchpoints_ingest(
            source="client:1",
            events=[
                {
                    "event_id": event_id,
                    "kind": kind,
                    "channel": "web",
                    "occurred_at": at,
                    "identifiers": who,
                    "properties": {"order": order, "amount": amount},
                }
            ],
        )
        customer = Customer.objects.get()
        return customer.lifetime_orders, str(customer.lifetime_revenue), customer.last_purchase_at

    assert ingest("c1", "order_cancelled", "Z-1", "2026-03-01T11:00:00Z") == (0, "0.00", None)
    assert ingest("p1", "purchase", "Z-1", "2026-03-01T10:00:00Z", "40.00") == (0, "0.00", None)
    assert ingest("c1-again", "order_cancelled", "Z-1", "2026-03-01T12:00:00Z") == (
        0,
        "0.00",
        None,
    )
    orders, revenue, last = ingest("p2", "purchase", "Z-2", "2026-03-02T10:00:00Z", "15.50")
    assert (orders, revenue, last.isoformat()) == (1, "15.50", "2026-03-02T10:00:00+00:00")


def test_a_cancellation_takes_back_only_its_own_customers_purchase(shop):
    """One batch, two customers whose orders share a number: each customer's cancellations
    take back only her purchases."""
    from customers.models import Customer
    from customers.services import touchpoints_ingest

    def event(event_id, kind, email, at, amount):
        return {
            "event_id": event_id,
            "kind": kind,
            "channel": "web",
            "occurred_at": at,
            "identifiers": [{"kind": "email", "value": email}],
            "properties": {"order": "S-1", "amount": amount},
        }

    touchpoints_ingest(
        source="client:1",
        events=[
            event("a-c", "order_cancelled", "ana@example.com", "2026-03-01T11:00:00Z", "5.00"),
            event("b-p", "purchase", "bea@example.com", "2026-03-01T10:00:00Z", "20.00"),
        ],
    )
    touchpoints_ingest(
        source="client:1",
        events=[
            event("a-p", "purchase", "ana@example.com", "2026-03-01T10:00:00Z", "30.00"),
            event("b-p2", "purchase", "bea@example.com", "2026-03-02T10:00:00Z", "7.00"),
        ],
    )

    figures = {
        c.identities.get(kind="email").value: (c.lifetime_orders, str(c.lifetime_revenue))
        for c in Customer.objects.all()
    }
    assert figures == {"ana@example.com": (0, "0.00"), "bea@example.com": (2, "27.00")}


def test_an_order_number_matches_as_text_whatever_its_json_type(shop):
    from customers.models import Customer
    from customers.services import touchpoints_ingest

    who = [{"kind": "email", "value": "lea@example.com"}]
    touchpoints_ingest(
        source="client:1",
        events=[
            {
                "event_id": "p1",
                "kind": "purchase",
                "channel": "web",
                "occurred_at": "2026-03-01T10:00:00Z",
                "identifiers": who,
                "properties": {"order": 1001, "amount": "30.00"},
            },
            {
                "event_id": "c1",
                "kind": "order_cancelled",
                "channel": "web",
                "occurred_at": "2026-03-01T11:00:00Z",
                "identifiers": who,
                "properties": {"order": "1001"},
            },
        ],
    )
    customer = Customer.objects.get()
    assert (customer.lifetime_orders, str(customer.lifetime_revenue)) == (0, "0.00")
    assert customer.last_purchase_at is None
