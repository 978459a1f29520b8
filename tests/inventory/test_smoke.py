"""End-to-end walk through the inventory services (the detailed tests live beside it)."""

import pytest
from django.utils import timezone

from inventory.models import ChannelAvailability, Discrepancy, StockLevel
from inventory.selectors import availability_for_channel
from inventory.services import (
    ReserveLine,
    movement_batch_apply,
    stock_consume,
    stock_count_submit,
    stock_reconcile,
    stock_release,
    stock_reserve,
    stock_sell,
    transfer_receive,
    transfer_request,
    transfer_ship,
)
from omni.exceptions import InsufficientStock

pytestmark = pytest.mark.django_db


def level(location, variant):
    return StockLevel.objects.get(location=location, variant=variant)


def test_walk(stores, variant, web, receive, django_capture_on_commit_callbacks):
    warehouse, north, south = stores
    with django_capture_on_commit_callbacks(execute=True):
        receive(warehouse, variant, 3)
        receive(north, variant, 2)
    assert ChannelAvailability.objects.get(variant=variant, channel=web).quantity == 5
    assert availability_for_channel(variant.sku, "web")["quantity"] == 5

    with django_capture_on_commit_callbacks(execute=True):
        held = stock_reserve(
            channel=web, lines=[ReserveLine(variant=variant, quantity=4)], reference="O-1"
        )
    assert [(r.location.code, r.quantity) for r in held] == [("wh", 3), ("north", 1)]
    assert availability_for_channel(variant.sku, "web")["quantity"] == 1
    with pytest.raises(InsufficientStock) as exc:
        stock_reserve(
            channel=web, lines=[ReserveLine(variant=variant, quantity=2)], reference="O-2"
        )
    assert exc.value.extra["lines"] == [
        {"index": 0, "sku": variant.sku, "requested": 2, "available": 1}
    ]

    with django_capture_on_commit_callbacks(execute=True):
        stock_consume(reference="O-1")
    assert (level(warehouse, variant).on_hand, level(warehouse, variant).reserved) == (0, 0)
    assert (level(north, variant).on_hand, level(north, variant).reserved) == (1, 0)

    # A sale in the north store of the unit an order holds: the hold moves to the south store.
    receive(south, variant, 2)
    with django_capture_on_commit_callbacks(execute=True):
        stock_reserve(
            channel=web, lines=[ReserveLine(variant=variant, quantity=1)], reference="O-3"
        )
    assert level(north, variant).reserved == 1
    with django_capture_on_commit_callbacks(execute=True):
        stock_sell(location=north, variant=variant, quantity=1)
    assert level(north, variant).reserved == 0
    assert level(south, variant).reserved == 1
    assert north.counts.filter(status="requested").count() == 0  # on_hand 0, nothing broken

    with django_capture_on_commit_callbacks(execute=True):
        stock_release(reference="O-3")
    assert level(south, variant).reserved == 0

    result = movement_batch_apply(
        source="pos:south",
        batch_id="b1",
        location=south,
        movements=[
            {"id": "m1", "sku": variant.sku, "kind": "sale", "quantity": 1},
            {"id": "m2", "sku": variant.sku, "kind": "receipt", "quantity": 5},
        ],
    )
    assert (result.replayed, result.batch.applied_count) == (False, 2)
    again = movement_batch_apply(
        source="pos:south",
        batch_id="b1",
        location=south,
        movements=[
            {"id": "m1", "sku": variant.sku, "kind": "sale", "quantity": 1},
            {"id": "m2", "sku": variant.sku, "kind": "receipt", "quantity": 5},
        ],
    )
    assert again.replayed
    assert level(south, variant).on_hand == 6

    transfer = transfer_request(
        from_location=south, to_location=north, lines=[{"sku": variant.sku, "quantity": 2}]
    )
    assert level(south, variant).reserved == 2
    transfer_ship(transfer=transfer)
    assert (level(south, variant).on_hand, level(south, variant).reserved) == (4, 0)
    transfer_receive(transfer=transfer, quantities={variant.sku: 1})
    assert level(north, variant).on_hand == 1

    stock_count_submit(
        location=south,
        counted_at=timezone.now(),
        lines=[{"sku": variant.sku, "quantity": 3}],
    )
    run = stock_reconcile(trigger="test")
    assert (run.status, run.counts_processed, run.pending_review) == ("succeeded", 1, 1)
    assert Discrepancy.objects.get(run=run).difference == -1
    assert run.on_hand_drift_repaired == 0 and run.reserved_drift_repaired == 0
