"""stock_reserve, stock_release, stock_consume and reservations_expire."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import (
    ChannelAvailability,
    ChannelStockPolicy,
    Reservation,
    StockLevel,
    StockMovement,
)
from inventory.services import (
    ReserveLine,
    reservations_expire,
    stock_consume,
    stock_level_set_safety_stock,
    stock_release,
    stock_reserve,
)
from omni.exceptions import InsufficientStock, ValidationFailed
from omni.models import Channel
from tests.factories import ChannelFactory, LocationFactory, VariantFactory

pytestmark = pytest.mark.django_db


def level(location, variant):
    row = StockLevel.objects.get(location=location, variant=variant)
    return row.on_hand, row.reserved


def held(reservations):
    return [(r.location.code, r.variant.sku, r.quantity) for r in reservations]


def reserve(channel, *lines, reference="O-1", **kwargs):
    return stock_reserve(
        channel=channel,
        lines=[ReserveLine(variant=v, quantity=q) for v, q in lines],
        reference=reference,
        **kwargs,
    )


@pytest.fixture
def second(db):
    return VariantFactory()


# --- All or nothing ---------------------------------------------------------------------------


def test_one_short_line_reserves_nothing_and_says_what_each_short_line_has(
    stores, variant, second, web, receive
):
    warehouse, north, south = stores
    receive(warehouse, variant, 5)
    receive(north, second, 1)
    receive(south, second, 1)
    third = VariantFactory()
    receive(south, third, 2)

    with pytest.raises(InsufficientStock) as exc:
        reserve(web, (variant, 4), (second, 3), (third, 2), (variant, 2))

    assert exc.value.code == "insufficient_stock"
    assert exc.value.status_code == 409
    assert exc.value.extra == {
        "lines": [
            {"index": 1, "sku": second.sku, "requested": 3, "available": 2},
            {"index": 3, "sku": variant.sku, "requested": 2, "available": 1},
        ]
    }
    assert str(exc.value) == (
        f"Not enough stock for {second.sku}: 3 requested, 2 available. (2 lines are short.)"
    )
    assert Reservation.objects.count() == 0
    assert list(StockLevel.objects.values_list("reserved", flat=True).distinct()) == [0]


def test_a_line_for_an_item_nowhere_in_stock_reports_zero_available(stores, variant, web):
    with pytest.raises(InsufficientStock) as exc:
        reserve(web, (variant, 1))

    assert exc.value.extra == {
        "lines": [{"index": 0, "sku": variant.sku, "requested": 1, "available": 0}]
    }
    assert Reservation.objects.count() == 0


def test_lines_are_split_over_locations_in_priority_order(stores, variant, second, web, receive):
    warehouse, north, south = stores
    receive(warehouse, variant, 2)
    receive(north, variant, 1)
    receive(south, variant, 5)
    receive(south, second, 3)

    result = reserve(web, (variant, 4), (second, 3), reference="O-7")

    assert held(result) == [
        ("wh", variant.sku, 2),
        ("north", variant.sku, 1),
        ("south", variant.sku, 1),
        ("south", second.sku, 3),
    ]
    assert {(r.reference, r.kind, r.status, r.channel_id, r.pinned) for r in result} == {
        ("O-7", "order_line", "active", web.pk, False)
    }
    assert level(warehouse, variant) == (2, 2)
    assert level(north, variant) == (1, 1)
    assert level(south, variant) == (5, 1)
    assert level(south, second) == (3, 3)


def test_line_references_are_kept(stores, variant, web, receive):
    warehouse, north, _south = stores
    receive(warehouse, variant, 1)
    receive(north, variant, 1)

    result = stock_reserve(
        channel=web,
        lines=[ReserveLine(variant=variant.sku.lower(), quantity=2, line_reference="L-1")],
        reference=" O-1 ",
    )

    assert [(r.reference, r.line_reference) for r in result] == [("O-1", "L-1"), ("O-1", "L-1")]


# --- Allocation strategies ----------------------------------------------------------------------


def _stock_everywhere(stores, variant, receive):
    warehouse, north, south = stores
    receive(warehouse, variant, 2)
    receive(north, variant, 3)
    receive(south, variant, 6)


def test_priority_strategy_serves_the_lowest_priority_number_first(stores, variant, web, receive):
    _stock_everywhere(stores, variant, receive)
    ChannelStockPolicy.objects.create(channel=web, allocation_strategy="priority")

    assert held(reserve(web, (variant, 4))) == [("wh", variant.sku, 2), ("north", variant.sku, 2)]


def test_nearest_strategy_serves_the_closest_location_to_near_first(stores, variant, web, receive):
    _stock_everywhere(stores, variant, receive)
    ChannelStockPolicy.objects.create(channel=web, allocation_strategy="nearest")

    # From Marseille: the south store, then Paris (the warehouse), then Lille.
    result = reserve(web, (variant, 9), near=(43.3, 5.4))

    assert held(result) == [
        ("south", variant.sku, 6),
        ("wh", variant.sku, 2),
        ("north", variant.sku, 1),
    ]


def test_nearest_strategy_puts_locations_without_coordinates_last(stores, variant, web, receive):
    _stock_everywhere(stores, variant, receive)
    nowhere = LocationFactory(code="nowhere")
    web.stock_rules.create(location=nowhere, priority=0)
    receive(nowhere, variant, 5)
    ChannelStockPolicy.objects.create(channel=web, allocation_strategy="nearest")

    result = reserve(web, (variant, 13), near=(50.6, 3.0))

    assert held(result) == [
        ("north", variant.sku, 3),
        ("wh", variant.sku, 2),
        ("south", variant.sku, 6),
        ("nowhere", variant.sku, 2),
    ]


def test_nearest_strategy_without_near_falls_back_to_priority(stores, variant, web, receive):
    _stock_everywhere(stores, variant, receive)
    ChannelStockPolicy.objects.create(channel=web, allocation_strategy="nearest")

    assert held(reserve(web, (variant, 3))) == [("wh", variant.sku, 2), ("north", variant.sku, 1)]


def test_most_stock_strategy_serves_the_fullest_location_first(stores, variant, web, receive):
    _stock_everywhere(stores, variant, receive)
    ChannelStockPolicy.objects.create(channel=web, allocation_strategy="most_stock")

    assert held(reserve(web, (variant, 8))) == [
        ("south", variant.sku, 6),
        ("north", variant.sku, 2),
    ]


def test_inactive_and_unfed_locations_are_not_used(stores, variant, web, receive):
    warehouse, north, _south = stores
    receive(warehouse, variant, 5)
    receive(north, variant, 1)
    elsewhere = LocationFactory(code="elsewhere")
    receive(elsewhere, variant, 9)
    warehouse.is_active = False
    warehouse.save()

    with pytest.raises(InsufficientStock) as exc:
        reserve(web, (variant, 2))

    assert exc.value.extra["lines"][0]["available"] == 1


# --- Safety stock -------------------------------------------------------------------------------


def test_location_safety_stock_is_never_reserved(stores, variant, web, receive):
    warehouse, north, _south = stores
    warehouse.safety_stock = 2
    warehouse.save()
    receive(warehouse, variant, 5)
    receive(north, variant, 1)

    with pytest.raises(InsufficientStock) as exc:
        reserve(web, (variant, 5))
    assert exc.value.extra["lines"][0]["available"] == 4

    assert held(reserve(web, (variant, 4))) == [("wh", variant.sku, 3), ("north", variant.sku, 1)]
    assert level(warehouse, variant) == (5, 3)


def test_a_stock_rows_safety_stock_overrides_the_locations(stores, variant, second, web, receive):
    warehouse, _north, _south = stores
    warehouse.safety_stock = 2
    warehouse.save()
    receive(warehouse, variant, 5)
    receive(warehouse, second, 5)
    StockLevel.objects.filter(location=warehouse, variant=variant).update(safety_stock=0)
    StockLevel.objects.filter(location=warehouse, variant=second).update(safety_stock=4)

    with pytest.raises(InsufficientStock) as exc:
        reserve(web, (variant, 5), (second, 2))

    assert exc.value.extra["lines"] == [
        {"index": 1, "sku": second.sku, "requested": 2, "available": 1}
    ]
    assert held(reserve(web, (variant, 5), (second, 1))) == [
        ("wh", variant.sku, 5),
        ("wh", second.sku, 1),
    ]


# --- Pinned lines -------------------------------------------------------------------------------


def test_a_pinned_line_is_served_only_at_its_location(stores, variant, web, receive):
    warehouse, north, south = stores
    receive(warehouse, variant, 5)
    receive(south, variant, 1)

    with pytest.raises(InsufficientStock) as exc:
        stock_reserve(
            channel=web,
            lines=[ReserveLine(variant=variant, quantity=2, location=south)],
            reference="PICKUP-1",
        )
    assert exc.value.extra["lines"][0]["available"] == 1

    result = stock_reserve(
        channel=web,
        lines=[ReserveLine(variant=variant, quantity=1, location=south)],
        reference="PICKUP-1",
    )

    assert [(r.location.code, r.quantity, r.pinned) for r in result] == [("south", 1, True)]
    assert level(warehouse, variant) == (5, 0)
    assert level(south, variant) == (1, 1)


def test_a_pinned_location_need_not_feed_the_channel(stores, variant, web, receive):
    corner = LocationFactory(code="corner")
    receive(corner, variant, 2)

    result = stock_reserve(
        channel=web,
        lines=[ReserveLine(variant=variant, quantity=2, location=corner)],
        reference="PICKUP-2",
    )

    assert [(r.location.code, r.quantity, r.pinned) for r in result] == [("corner", 2, True)]


def test_a_pinned_inactive_location_is_refused(stores, variant, web, receive):
    _warehouse, north, _south = stores
    receive(north, variant, 2)
    north.is_active = False
    north.save()

    with pytest.raises(ValidationFailed) as exc:
        stock_reserve(
            channel=web,
            lines=[ReserveLine(variant=variant, quantity=1, location=north)],
            reference="PICKUP-3",
        )

    assert exc.value.extra == {"lines": {"0": {"location": ["north is inactive."]}}}
    assert Reservation.objects.count() == 0


# --- Checkout holds -----------------------------------------------------------------------------


def test_a_checkout_hold_expires_after_the_channels_hold_time(stores, variant, web, receive):
    receive(stores[0], variant, 5)
    ChannelStockPolicy.objects.create(channel=web, checkout_hold_minutes=12)

    before = timezone.now()
    (hold,) = reserve(web, (variant, 1), kind="checkout_hold", reference="CART-1")
    after = timezone.now()

    assert hold.kind == "checkout_hold"
    assert before + timedelta(minutes=12) <= hold.expires_at <= after + timedelta(minutes=12)


def test_a_checkout_hold_without_a_policy_lasts_30_minutes(stores, variant, web, receive):
    receive(stores[0], variant, 5)

    before = timezone.now()
    (hold,) = reserve(web, (variant, 1), kind="checkout_hold", reference="CART-1")

    assert before + timedelta(minutes=30) <= hold.expires_at
    assert hold.expires_at <= timezone.now() + timedelta(minutes=30)


def test_an_explicit_expiry_wins_and_order_lines_do_not_expire(stores, variant, web, receive):
    receive(stores[0], variant, 5)
    ChannelStockPolicy.objects.create(channel=web, checkout_hold_minutes=12)
    moment = timezone.now() + timedelta(hours=2)

    (hold,) = reserve(web, (variant, 1), kind="checkout_hold", reference="C", expires_at=moment)
    (line,) = reserve(web, (variant, 1), reference="O")

    assert hold.expires_at == moment
    assert line.expires_at is None


def test_expired_holds_are_released_and_others_kept(stores, variant, web, receive):
    warehouse = stores[0]
    receive(warehouse, variant, 5)
    now = timezone.now()
    reserve(web, (variant, 1), kind="checkout_hold", reference="OLD", expires_at=now)
    reserve(web, (variant, 2), kind="checkout_hold", reference="NEW", expires_at=now + timedelta(1))
    reserve(web, (variant, 1), reference="ORDER")

    assert reservations_expire(now=now) == 1
    assert reservations_expire(now=now) == 0

    old = Reservation.objects.get(reference="OLD")
    assert (old.status, old.closed_at, old.attention_reason) == (
        "expired",
        now,
        "Checkout hold expired.",
    )
    assert set(Reservation.objects.filter(status="active").values_list("reference", flat=True)) == {
        "NEW",
        "ORDER",
    }
    assert level(warehouse, variant) == (5, 3)


# --- Release and consume ------------------------------------------------------------------------


def test_release_gives_the_units_back_once(stores, variant, second, web, receive):
    warehouse, north, _south = stores
    receive(warehouse, variant, 2)
    receive(north, variant, 2)
    receive(north, second, 1)
    reserve(web, (variant, 3), (second, 1), reference="O-1")
    reserve(web, (variant, 1), reference="O-2")

    assert stock_release(reference="O-1") == 4
    assert stock_release(reference="O-1") == 0

    assert level(warehouse, variant) == (2, 0)
    assert level(north, variant) == (2, 1)
    assert level(north, second) == (1, 0)
    released = Reservation.objects.filter(reference="O-1")
    assert set(released.values_list("status", flat=True)) == {"released"}
    assert all(r.closed_at is not None for r in released)
    assert Reservation.objects.get(reference="O-2").status == "active"


def test_release_one_line_of_an_order(stores, variant, second, web, receive):
    warehouse = stores[0]
    receive(warehouse, variant, 2)
    receive(warehouse, second, 2)
    stock_reserve(
        channel=web,
        reference="O-1",
        lines=[
            ReserveLine(variant=variant, quantity=2, line_reference="1"),
            ReserveLine(variant=second, quantity=1, line_reference="2"),
        ],
    )

    assert stock_release(reference="O-1", line_reference="2") == 1

    assert level(warehouse, variant) == (2, 2)
    assert level(warehouse, second) == (2, 0)


def test_release_needs_to_know_what(db):
    with pytest.raises(ValidationFailed) as exc:
        stock_release()

    assert exc.value.extra == {"reference": ["Required."]}


def test_consume_records_the_sale_and_drops_on_hand_and_reserved(
    stores, variant, web, receive, django_capture_on_commit_callbacks
):
    warehouse, north, _south = stores
    receive(warehouse, variant, 2)
    receive(north, variant, 3)
    reserve(web, (variant, 4), reference="O-1")

    with django_capture_on_commit_callbacks(execute=True):
        movements = stock_consume(reference="O-1", source="orders")

    assert sorted((m.location.code, m.kind, m.quantity, m.reference) for m in movements) == [
        ("north", "sale", -2, "O-1"),
        ("wh", "sale", -2, "O-1"),
    ]
    assert {(m.source, m.channel_id) for m in movements} == {("orders", web.pk)}
    assert StockMovement.objects.filter(kind="sale").count() == 2
    assert level(warehouse, variant) == (0, 0)
    assert level(north, variant) == (1, 0)
    assert set(Reservation.objects.values_list("status", flat=True)) == {"consumed"}
    assert ChannelAvailability.objects.get(variant=variant, channel=web).quantity == 1

    with pytest.raises(ValidationFailed) as exc:
        stock_consume(reference="O-1")
    assert exc.value.code == "no_active_reservation"
    assert StockMovement.objects.filter(kind="sale").count() == 2


def test_a_consumed_or_released_reservation_cannot_be_released_again(stores, variant, web, receive):
    receive(stores[0], variant, 3)
    reserve(web, (variant, 1), reference="O-1")
    stock_consume(reference="O-1")

    assert stock_release(reference="O-1") == 0
    assert level(stores[0], variant) == (2, 0)


# --- Refused requests ---------------------------------------------------------------------------


def test_a_reservation_needs_a_reference_and_lines(stores, variant, web):
    with pytest.raises(ValidationFailed) as exc:
        reserve(web, (variant, 1), reference="  ")
    assert exc.value.extra == {"reference": ["Required."]}

    with pytest.raises(ValidationFailed) as exc:
        stock_reserve(channel=web, lines=[], reference="O-1")
    assert exc.value.extra == {"lines": ["At least one line."]}


def test_bad_lines_are_reported_by_index(stores, variant, web, receive):
    receive(stores[0], variant, 5)
    retired = VariantFactory(is_active=False)

    with pytest.raises(ValidationFailed) as exc:
        stock_reserve(
            channel=web,
            reference="O-1",
            lines=[
                ReserveLine(variant=variant, quantity=1),
                ReserveLine(variant="NO-SUCH-SKU", quantity=1),
                ReserveLine(variant=variant, quantity=0),
                ReserveLine(variant=retired, quantity=1),
                ReserveLine(variant=variant, quantity="two"),
            ],
        )

    assert exc.value.code == "validation_error"
    assert exc.value.extra == {
        "lines": {
            "1": {"sku": ["Unknown SKU NO-SUCH-SKU."]},
            "2": {"quantity": ["Must be at least 1."]},
            "3": {"sku": [f"{retired.sku} is inactive."]},
            "4": {"quantity": ["A whole number is required."]},
        }
    }
    assert Reservation.objects.count() == 0


def test_only_active_sales_channels_reserve(stores, variant, receive):
    receive(stores[0], variant, 5)
    email = Channel.objects.get(code="email")
    closed = ChannelFactory(code="closed-shop", is_active=False)

    for channel in (email, closed):
        with pytest.raises(ValidationFailed) as exc:
            reserve(channel, (variant, 1))
        assert exc.value.code == "not_a_sales_channel"
    assert Reservation.objects.count() == 0


def test_unknown_kind_is_refused(stores, variant, web):
    with pytest.raises(ValidationFailed) as exc:
        reserve(web, (variant, 1), kind="wishlist")

    assert exc.value.extra == {"kind": ["Invalid."]}


def test_a_reference_longer_than_the_column_is_refused_and_nothing_is_held(
    stores, variant, web, receive
):
    warehouse, _north, _south = stores
    receive(warehouse, variant, 5)

    with pytest.raises(ValidationFailed) as exc:
        stock_reserve(
            channel=web, lines=[ReserveLine(variant=variant, quantity=1)], reference="R" * 121
        )
    assert exc.value.extra == {"reference": ["At most 120 characters."]}

    with pytest.raises(ValidationFailed) as exc:
        stock_reserve(
            channel=web,
            lines=[ReserveLine(variant=variant, quantity=1, line_reference="L" * 121)],
            reference="O-1",
        )
    assert exc.value.extra == {"line_reference": ["At most 120 characters."]}
    assert level(warehouse, variant) == (5, 0)
    assert not Reservation.objects.exists()


def test_safety_stock_of_a_row_is_set_through_its_service_and_checked(
    stores, variant, web, receive, django_capture_on_commit_callbacks
):
    warehouse, _north, _south = stores
    receive(warehouse, variant, 5)
    row = StockLevel.objects.get(location=warehouse, variant=variant)

    with pytest.raises(ValidationFailed) as exc:
        stock_level_set_safety_stock(stock_level=row, safety_stock=-1)
    assert exc.value.extra == {"safety_stock": ["A whole number, 0 or more."]}
    row.refresh_from_db()
    assert row.safety_stock is None

    with django_capture_on_commit_callbacks(execute=True):
        stock_level_set_safety_stock(stock_level=row, safety_stock=4)
    with pytest.raises(InsufficientStock) as exc:
        reserve(web, (variant, 2))
    assert exc.value.extra["lines"] == [
        {"index": 0, "sku": variant.sku, "requested": 2, "available": 1}
    ]
    assert ChannelAvailability.objects.get(variant=variant, channel=web).quantity == 1
