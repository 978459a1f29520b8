"""Transfers: requested (held at the source), shipped (in transit), received, cancelled."""

import pytest

from inventory.models import Reservation, StockLevel, StockMovement, Transfer, TransferLine
from inventory.selectors import stock_for_variant, transfers_to_receive
from inventory.services import (
    in_transit,
    stock_consume,
    stock_release,
    transfer_cancel,
    transfer_receive,
    transfer_request,
    transfer_ship,
)
from inventory.services.reservations import _release
from omni.exceptions import Conflict, InsufficientStock, ValidationFailed
from omni.models import OutboxEvent
from tests.factories import VariantFactory

pytestmark = pytest.mark.django_db


def level(location, variant):
    row = StockLevel.objects.get(location=location, variant=variant)
    return row.on_hand, row.reserved


def lines_of(transfer):
    return sorted(
        transfer.lines.values_list(
            "variant__sku", "quantity", "shipped_quantity", "received_quantity"
        )
    )


def state():
    """Everything a refused transition must leave as it was."""
    return (
        sorted(StockLevel.objects.values_list("location_id", "variant_id", "on_hand", "reserved")),
        StockMovement.objects.count(),
        sorted(Reservation.objects.values_list("pk", "status", "quantity")),
        sorted(Transfer.objects.values_list("pk", "status", "shipped_at", "received_at")),
        sorted(TransferLine.objects.values_list("pk", "shipped_quantity", "received_quantity")),
        OutboxEvent.objects.count(),
    )


@pytest.fixture
def shirt(db):
    return VariantFactory(sku="TR-SHIRT")


@pytest.fixture
def socks(db):
    return VariantFactory(sku="TR-SOCKS")


@pytest.fixture
def requested(stores, shirt, socks, receive):
    warehouse, north, _south = stores
    receive(warehouse, shirt, 10)
    receive(warehouse, socks, 4)
    return transfer_request(
        from_location=warehouse,
        to_location=north,
        lines=[{"sku": shirt.sku, "quantity": 5}, {"variant": socks, "quantity": 2}],
        reference="order O-9",
        note="For a pickup",
    )


def test_a_request_holds_the_units_at_the_source(requested, stores, shirt, socks):
    warehouse, north, _south = stores

    assert requested.number == f"TR-{requested.pk:06d}"
    assert (requested.status, requested.reference, requested.note) == (
        "requested",
        "order O-9",
        "For a pickup",
    )
    assert lines_of(requested) == [("TR-SHIRT", 5, 0, 0), ("TR-SOCKS", 2, 0, 0)]
    assert sorted(
        Reservation.objects.values_list(
            "location__code", "variant__sku", "quantity", "kind", "pinned", "reference"
        )
    ) == [
        ("wh", "TR-SHIRT", 5, "transfer", True, f"transfer:{requested.number}"),
        ("wh", "TR-SOCKS", 2, "transfer", True, f"transfer:{requested.number}"),
    ]
    assert level(warehouse, shirt) == (10, 5)
    assert level(warehouse, socks) == (4, 2)
    event = OutboxEvent.objects.get(type="inventory.transfer_requested")
    assert (event.subject_id, event.payload) == (
        requested.number,
        {
            "number": requested.number,
            "from": "wh",
            "to": "north",
            "status": "requested",
            "reference": "order O-9",
        },
    )
    assert in_transit() == {}


def test_a_request_the_source_cannot_fill_creates_nothing(stores, shirt, receive):
    warehouse, north, _south = stores
    warehouse.safety_stock = 1
    warehouse.save()
    receive(warehouse, shirt, 3)

    with pytest.raises(InsufficientStock) as exc:
        transfer_request(
            from_location=warehouse, to_location=north, lines=[{"sku": shirt.sku, "quantity": 3}]
        )

    assert exc.value.extra["lines"] == [
        {"index": 0, "sku": "TR-SHIRT", "requested": 3, "available": 2}
    ]
    assert Transfer.objects.count() == TransferLine.objects.count() == 0
    assert Reservation.objects.count() == 0
    assert not OutboxEvent.objects.filter(type__startswith="inventory.transfer").exists()


def test_bad_requests_are_refused(stores, shirt, receive):
    warehouse, north, _south = stores
    receive(warehouse, shirt, 3)

    with pytest.raises(ValidationFailed) as exc:
        transfer_request(
            from_location=warehouse,
            to_location=warehouse,
            lines=[{"sku": "TR-SHIRT", "quantity": 1}],
        )
    assert exc.value.extra == {"to_location": ["Must differ from the source."]}

    with pytest.raises(ValidationFailed) as exc:
        transfer_request(from_location=warehouse, to_location=north, lines=[])
    assert exc.value.extra == {"lines": ["Required."]}

    with pytest.raises(ValidationFailed) as exc:
        transfer_request(
            from_location=warehouse,
            to_location=north,
            lines=[
                {"sku": "TR-SHIRT", "quantity": 1},
                {"sku": "TR-SHIRT", "quantity": 1},
                {"sku": "NOPE", "quantity": 1},
                {"sku": "TR-SHIRT", "quantity": 0},
            ],
        )
    assert exc.value.extra == {
        "lines": {
            "1": {"sku": ["TR-SHIRT is already on line 0."]},
            "2": {"sku": ["Unknown SKU NOPE."]},
            "3": {"quantity": ["Must be at least 1."]},
        }
    }

    north.is_active = False
    north.save()
    with pytest.raises(ValidationFailed) as exc:
        transfer_request(
            from_location=warehouse, to_location=north, lines=[{"sku": "TR-SHIRT", "quantity": 1}]
        )
    assert (exc.value.code, exc.value.extra) == (
        "location_inactive",
        {"to_location": ["north is inactive."]},
    )
    assert Transfer.objects.count() == 0
    assert level(warehouse, shirt) == (3, 0)


# --- Ship -------------------------------------------------------------------------------------


def test_shipping_everything(requested, stores, shirt, socks, django_capture_on_commit_callbacks):
    warehouse, north, _south = stores

    with django_capture_on_commit_callbacks(execute=True):
        shipped = transfer_ship(transfer=requested)

    assert shipped.status == "shipped"
    assert shipped.shipped_at is not None
    assert lines_of(shipped) == [("TR-SHIRT", 5, 5, 0), ("TR-SOCKS", 2, 2, 0)]
    assert level(warehouse, shirt) == (5, 0)
    assert level(warehouse, socks) == (2, 0)
    assert set(Reservation.objects.values_list("status", flat=True)) == {"released"}
    assert sorted(
        StockMovement.objects.filter(kind="transfer_out").values_list(
            "location__code", "variant__sku", "quantity", "reference", "source"
        )
    ) == [
        ("wh", "TR-SHIRT", -5, shipped.number, "transfers"),
        ("wh", "TR-SOCKS", -2, shipped.number, "transfers"),
    ]
    assert in_transit() == {(north.pk, shirt.pk): 5, (north.pk, socks.pk): 2}
    assert in_transit(to_location=north, variant_ids=[socks.pk]) == {(north.pk, socks.pk): 2}
    assert in_transit(to_location=warehouse) == {}
    assert [line.in_transit for line in shipped.lines.order_by("variant__sku")] == [5, 2]
    assert list(transfers_to_receive(north)) == [shipped]
    # Listed though the destination never held the item (it has no stock row yet).
    assert [
        (row["location"], row["on_hand"], row["in_transit"], row["updated_at"] is None)
        for row in stock_for_variant(shirt)
    ] == [("north", 0, 5, True), ("wh", 5, 0, False)]
    assert OutboxEvent.objects.get(type="inventory.transfer_shipped").payload["status"] == (
        "shipped"
    )


def test_a_partial_shipment_releases_the_rest(requested, stores, shirt, socks):
    warehouse, north, _south = stores

    transfer_ship(transfer=requested, quantities={"TR-SHIRT": 3})

    requested.refresh_from_db()
    assert requested.status == "shipped"
    assert lines_of(requested) == [("TR-SHIRT", 5, 3, 0), ("TR-SOCKS", 2, 0, 0)]
    assert level(warehouse, shirt) == (7, 0)
    assert level(warehouse, socks) == (4, 0)
    assert StockMovement.objects.filter(kind="transfer_out").count() == 1
    assert in_transit() == {(north.pk, shirt.pk): 3}


def test_bad_ship_quantities_change_nothing(requested):
    before = state()

    with pytest.raises(ValidationFailed) as exc:
        transfer_ship(transfer=requested, quantities={"TR-SHIRT": 6, "TR-SOCKS": -1, "TR-HAT": 1})
    assert exc.value.extra == {
        "shipped": {
            "TR-SHIRT": ["At most 5."],
            "TR-SOCKS": ["A whole number, 0 or more."],
            "TR-HAT": [f"TR-HAT is not on transfer {requested.number}."],
        }
    }
    with pytest.raises(ValidationFailed) as exc:
        transfer_ship(transfer=requested, quantities={"TR-SHIRT": 0})
    assert str(exc.value) == "Nothing would ship; cancel the transfer instead."

    assert state() == before


def test_a_transfer_hold_is_not_released_or_consumed_by_its_reference(requested):
    before = state()
    for service in (stock_release, stock_consume):
        with pytest.raises(ValidationFailed) as exc:
            service(reference=f"transfer:{requested.number}")
        assert exc.value.extra == {
            "reference": [
                "References starting with 'transfer:' belong to transfers; "
                "use the transfer endpoints."
            ]
        }
    assert state() == before


def test_shipping_when_the_held_stock_changed_is_a_conflict(requested):
    # Something released the hold behind the transfer's back (the public release refuses
    # transfer holds, so only the transfers' own path can).
    _release(reservations=Reservation.objects.filter(reference=f"transfer:{requested.number}"))
    before = state()

    with pytest.raises(Conflict) as exc:
        transfer_ship(transfer=requested)

    assert exc.value.code == "reservation_changed"
    assert state() == before


# --- Receive ----------------------------------------------------------------------------------


def test_receiving_everything(requested, stores, shirt, socks):
    warehouse, north, _south = stores
    transfer_ship(transfer=requested)

    received = transfer_receive(transfer=requested)

    assert received.status == "received"
    assert received.received_at is not None
    assert lines_of(received) == [("TR-SHIRT", 5, 5, 5), ("TR-SOCKS", 2, 2, 2)]
    assert level(north, shirt) == (5, 0)
    assert level(north, socks) == (2, 0)
    assert sorted(
        StockMovement.objects.filter(kind="transfer_in").values_list(
            "location__code", "variant__sku", "quantity", "reference"
        )
    ) == [
        ("north", "TR-SHIRT", 5, received.number),
        ("north", "TR-SOCKS", 2, received.number),
    ]
    assert in_transit() == {}
    assert list(transfers_to_receive(north)) == []
    assert OutboxEvent.objects.filter(type="inventory.transfer_received").count() == 1


def test_a_short_receipt_keeps_the_difference_visible(requested, stores, shirt, socks):
    _warehouse, north, _south = stores
    transfer_ship(transfer=requested)

    transfer_receive(transfer=requested, quantities={"TR-SHIRT": 4})

    requested.refresh_from_db()
    assert lines_of(requested) == [("TR-SHIRT", 5, 5, 4), ("TR-SOCKS", 2, 2, 0)]
    assert level(north, shirt) == (4, 0)
    assert not StockLevel.objects.filter(location=north, variant=socks).exists()
    assert in_transit() == {}
    assert StockMovement.objects.filter(kind="transfer_in").count() == 1


def test_receiving_more_than_shipped_is_refused(requested):
    transfer_ship(transfer=requested, quantities={"TR-SHIRT": 2})
    before = state()

    with pytest.raises(ValidationFailed) as exc:
        transfer_receive(transfer=requested, quantities={"TR-SHIRT": 3, "TR-SOCKS": 1})

    assert exc.value.extra == {"received": {"TR-SHIRT": ["At most 2."], "TR-SOCKS": ["At most 0."]}}
    assert state() == before


# --- Cancel and invalid transitions -----------------------------------------------------------


def test_cancel_releases_the_held_units(requested, stores, shirt, socks):
    warehouse, _north, _south = stores

    cancelled = transfer_cancel(transfer=requested)

    assert cancelled.status == "cancelled"
    assert level(warehouse, shirt) == (10, 0)
    assert level(warehouse, socks) == (4, 0)
    assert set(Reservation.objects.values_list("status", flat=True)) == {"released"}
    assert StockMovement.objects.exclude(kind="receipt").count() == 0
    assert OutboxEvent.objects.get(type="inventory.transfer_cancelled").payload["status"] == (
        "cancelled"
    )


@pytest.mark.parametrize(
    ("steps", "action", "status"),
    [
        ([], transfer_receive, "requested"),
        ([transfer_ship], transfer_ship, "shipped"),
        ([transfer_ship], transfer_cancel, "shipped"),
        ([transfer_ship, transfer_receive], transfer_receive, "received"),
        ([transfer_ship, transfer_receive], transfer_cancel, "received"),
        ([transfer_cancel], transfer_ship, "cancelled"),
        ([transfer_cancel], transfer_cancel, "cancelled"),
        ([transfer_cancel], transfer_receive, "cancelled"),
    ],
)
def test_invalid_transitions_are_conflicts_and_change_nothing(requested, steps, action, status):
    for step in steps:
        step(transfer=requested)
    before = state()

    with pytest.raises(Conflict) as exc:
        action(transfer=requested)

    assert exc.value.code == "invalid_transition"
    assert Transfer.objects.get(pk=requested.pk).status == status
    assert state() == before
