"""In-store sales the ledger did not expect: accepted, the store asked for a count, and the
reservations the sale broke moved to another location of their channel or flagged for staff."""

import pytest

from inventory.models import Reservation, StockCount, StockLevel, StockMovement
from inventory.services import (
    ReserveLine,
    movement_batch_apply,
    reservations_resource,
    stock_reserve,
    stock_sell,
)
from omni.models import OutboxEvent
from tests.factories import ChannelFactory, LocationFactory, StockRuleFactory

pytestmark = pytest.mark.django_db

RESOURCED = "inventory.reservation_resourced"
AT_RISK = "inventory.reservation_at_risk"


def level(location, variant):
    row = StockLevel.objects.get(location=location, variant=variant)
    return row.on_hand, row.reserved


def active(reference):
    return sorted(
        (r.location.code, r.quantity, r.needs_attention)
        for r in Reservation.objects.filter(reference=reference, status="active")
    )


def events(type_):
    return [(e.subject_id, e.payload) for e in OutboxEvent.objects.filter(type=type_)]


def reserve(channel, variant, quantity, reference, location=None, kind="order_line"):
    return stock_reserve(
        channel=channel,
        kind=kind,
        lines=[ReserveLine(variant=variant, quantity=quantity, location=location)],
        reference=reference,
    )


@pytest.fixture
def sell(django_capture_on_commit_callbacks):
    """A counter sale, with what runs after it commits (mending reservations, availability)."""

    def _sell(location, variant, quantity=1):
        with django_capture_on_commit_callbacks(execute=True):
            return stock_sell(location=location, variant=variant, quantity=quantity, reference="T")

    return _sell


def test_a_sale_on_zero_is_recorded_and_asks_the_store_for_a_count(stores, variant, sell):
    _warehouse, north, _south = stores

    movement = sell(north, variant, 2)

    assert (movement.kind, movement.quantity, movement.source) == ("sale", -2, "pos")
    assert level(north, variant) == (-2, 0)
    count = StockCount.objects.get(location=north)
    assert (count.status, count.reason, count.source) == (
        "requested",
        "A sale took more than the ledger held.",
        "omni",
    )
    north.refresh_from_db()
    assert north.count_requested_at == count.requested_at

    sell(north, variant, 1)  # a second sale adds no second request

    assert StockCount.objects.filter(location=north).count() == 1
    assert level(north, variant) == (-3, 0)


def test_a_sale_down_to_zero_asks_for_no_count(stores, variant, receive, sell):
    _warehouse, north, _south = stores
    receive(north, variant, 2)

    sell(north, variant, 2)

    assert level(north, variant) == (0, 0)
    assert StockCount.objects.count() == 0


def test_a_broken_reservation_moves_to_another_location_of_its_channel(
    stores, variant, web, receive, sell
):
    warehouse, north, south = stores
    receive(north, variant, 2)
    receive(south, variant, 3)
    reserve(web, variant, 2, "O-1")
    assert active("O-1") == [("north", 2, False)]

    sell(north, variant, 1)

    assert active("O-1") == [("north", 1, False), ("south", 1, False)]
    assert level(north, variant) == (1, 1)
    assert level(south, variant) == (3, 1)
    assert StockCount.objects.count() == 0
    original = Reservation.objects.get(reference="O-1", location=north)
    assert events(RESOURCED) == [
        (
            str(original.pk),
            {
                "reference": "O-1",
                "line_reference": "",
                "location_id": north.pk,
                "variant_id": variant.pk,
                "quantity": 1,
            },
        )
    ]
    assert events(AT_RISK) == []


def test_a_wholly_broken_reservation_is_closed_where_it_was(stores, variant, web, receive, sell):
    warehouse, north, south = stores
    receive(north, variant, 1)
    receive(south, variant, 1)
    reserve(web, variant, 1, "O-1")

    sell(north, variant, 2)

    assert active("O-1") == [("south", 1, False)]
    moved = Reservation.objects.get(reference="O-1", location=north)
    assert (moved.status, moved.attention_reason) == (
        "released",
        "Moved to other locations after a sale here.",
    )
    assert moved.closed_at is not None
    assert level(north, variant) == (-1, 0)
    assert StockCount.objects.filter(location=north, status="requested").count() == 1


def test_a_reservation_nobody_can_take_over_is_flagged_never_dropped(
    stores, variant, web, receive, sell
):
    warehouse, north, south = stores
    receive(north, variant, 3)
    reserve(web, variant, 3, "O-1", kind="order_line")

    sell(north, variant, 2)

    assert active("O-1") == [("north", 3, True)]
    reservation = Reservation.objects.get(reference="O-1")
    assert reservation.attention_reason == (
        "Short by 2 at north after an in-store sale; no other location could take it over."
    )
    assert level(north, variant) == (1, 3)
    assert events(AT_RISK) == [
        (
            str(reservation.pk),
            {
                "reference": "O-1",
                "line_reference": "",
                "location_id": north.pk,
                "variant_id": variant.pk,
                "quantity": 2,
            },
        )
    ]
    assert events(RESOURCED) == []


def test_part_moved_part_flagged(stores, variant, web, receive, sell):
    warehouse, north, south = stores
    receive(north, variant, 3)
    reserve(web, variant, 3, "O-1")
    receive(south, variant, 1)

    sell(north, variant, 2)

    assert active("O-1") == [("north", 2, True), ("south", 1, False)]
    assert level(north, variant) == (1, 2)
    assert level(south, variant) == (1, 1)
    assert [p["quantity"] for _id, p in events(RESOURCED)] == [1]
    assert [p["quantity"] for _id, p in events(AT_RISK)] == [1]


def test_a_pinned_reservation_is_flagged_not_moved(stores, variant, web, receive, sell):
    warehouse, north, south = stores
    receive(north, variant, 1)
    receive(south, variant, 5)
    reserve(web, variant, 1, "PICKUP-1", location=north)

    sell(north, variant, 1)

    assert active("PICKUP-1") == [("north", 1, True)]
    assert level(south, variant) == (5, 0)
    assert level(north, variant) == (0, 1)
    assert [p["reference"] for _id, p in events(AT_RISK)] == ["PICKUP-1"]
    assert events(RESOURCED) == []


def test_checkout_holds_give_way_before_order_lines(stores, variant, web, receive, sell):
    warehouse, north, south = stores
    receive(north, variant, 2)
    reserve(web, variant, 1, "ORDER")
    reserve(web, variant, 1, "CART", kind="checkout_hold")
    receive(south, variant, 1)

    sell(north, variant, 1)

    assert active("ORDER") == [("north", 1, False)]
    assert active("CART") == [("south", 1, False)]
    moved = Reservation.objects.get(reference="CART", location=south)
    assert moved.kind == "checkout_hold"
    assert moved.expires_at == Reservation.objects.get(reference="CART", location=north).expires_at


def test_moves_only_to_locations_of_the_reservations_channel(stores, variant, web, receive, sell):
    warehouse, north, south = stores
    app = ChannelFactory(code="shop-app", kind="app")
    StockRuleFactory(channel=app, location=north, priority=1)
    outlet = LocationFactory(code="outlet")
    StockRuleFactory(channel=app, location=outlet, priority=2)
    receive(north, variant, 1)
    receive(south, variant, 4)  # feeds the web shop, not the app
    reserve(app, variant, 1, "APP-1")

    sell(north, variant, 1)

    assert active("APP-1") == [("north", 1, True)]
    receive(outlet, variant, 2)
    with_capture = reservations_resource(variant_ids=[variant.pk])
    assert (with_capture.moved, with_capture.flagged) == (1, 0)
    assert active("APP-1") == [("outlet", 1, False)]


def test_mending_twice_changes_nothing_the_second_time(stores, variant, web, receive, sell):
    warehouse, north, south = stores
    receive(north, variant, 3)
    reserve(web, variant, 3, "O-1")
    receive(south, variant, 1)
    sell(north, variant, 2)
    before = sorted(Reservation.objects.values_list("pk", "location_id", "quantity", "status"))
    outbox = OutboxEvent.objects.count()

    result = reservations_resource(variant_ids=[variant.pk])

    assert (result.moved, result.flagged) == (0, 0)
    after = sorted(Reservation.objects.values_list("pk", "location_id", "quantity", "status"))
    assert after == before
    assert OutboxEvent.objects.count() == outbox


def test_a_flagged_reservation_moves_once_stock_arrives_elsewhere(
    stores, variant, web, receive, sell
):
    warehouse, north, south = stores
    receive(north, variant, 2)
    reserve(web, variant, 2, "O-1")
    sell(north, variant, 2)
    assert active("O-1") == [("north", 2, True)]

    receive(warehouse, variant, 5)
    result = reservations_resource(variant_ids=[variant.pk])

    assert (result.moved, result.flagged) == (2, 0)
    assert active("O-1") == [("wh", 2, False)]
    assert level(north, variant) == (0, 0)


def test_a_sale_in_a_pos_batch_mends_reservations_and_asks_for_a_count(
    stores, variant, web, receive, django_capture_on_commit_callbacks
):
    warehouse, north, south = stores
    receive(north, variant, 1)
    receive(south, variant, 3)
    reserve(web, variant, 1, "O-1")
    reserve(web, variant, 1, "PICKUP-1", location=south)

    with django_capture_on_commit_callbacks(execute=True):
        result = movement_batch_apply(
            source="pos:north",
            batch_id="day-1",
            location=north,
            movements=[
                {"id": "s1", "sku": variant.sku, "kind": "sale", "quantity": 2},
                {
                    "id": "s2",
                    "sku": variant.sku,
                    "kind": "sale",
                    "quantity": 1,
                    "location": "south",
                },
            ],
        )

    assert (result.replayed, result.batch.applied_count) == (False, 2)
    assert level(north, variant) == (-1, 0)
    assert level(south, variant) == (2, 2)
    assert active("O-1") == [("south", 1, False)]
    assert active("PICKUP-1") == [("south", 1, False)]
    assert list(StockCount.objects.values_list("location__code", "status")) == [
        ("north", "requested")
    ]
    assert [p["reference"] for _id, p in events(RESOURCED)] == ["O-1"]
    assert events(AT_RISK) == []
    assert StockMovement.objects.filter(kind="sale", source="pos:north").count() == 2
