"""Reorder suggestions: velocity from the ledger, reorder points, purchase or transfer."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory.models import ReorderRule, ReplenishmentSuggestion, StockLevel, Transfer
from inventory.services import (
    movement_batch_apply,
    reorder_suggest,
    suggestion_create_transfer,
    suggestion_dismiss,
    suggestion_mark_ordered,
    transfer_request,
    transfer_ship,
)
from omni.exceptions import Conflict
from tests.factories import LocationFactory, VariantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def mug(db):
    return VariantFactory(sku="RO-MUG")


def moves(location, *movements, batch):
    """``(kind, quantity, days ago)`` at ``location``, through a POS batch."""
    stamp = timezone.now()
    movement_batch_apply(
        source="pos:test",
        batch_id=batch,
        location=location,
        movements=[
            {
                "id": f"{batch}-{i}",
                "sku": "RO-MUG",
                "kind": kind,
                "quantity": quantity,
                "occurred_at": (stamp - timedelta(days=days)).isoformat(),
            }
            for i, (kind, quantity, days) in enumerate(movements)
        ],
    )


def rule(location, variant, **kwargs):
    values = {"min_quantity": 5, "max_quantity": 20, "lead_time_days": 7, **kwargs}
    return ReorderRule.objects.create(location=location, variant=variant, **values)


def proposal(rule):
    return ReplenishmentSuggestion.objects.get(rule=rule, status="proposed")


def figures(result):
    return (result.rules, result.proposed, result.updated, result.withdrawn)


def test_a_slow_mover_at_its_minimum_gets_a_purchase_up_to_the_maximum(stores, mug, now):
    _warehouse, north, _south = stores
    moves(north, ("receipt", 5, 40), batch="in")
    north_rule = rule(north, mug)

    result = reorder_suggest(now=now)

    assert figures(result) == (1, 1, 0, 0)
    suggestion = proposal(north_rule)
    assert (
        suggestion.kind,
        suggestion.quantity,
        suggestion.from_location,
        suggestion.daily_velocity,
        suggestion.reorder_point,
        suggestion.position,
    ) == ("purchase", 15, None, Decimal("0.000"), 5, 5)
    assert (suggestion.location, suggestion.variant) == (north, mug)
    assert suggestion.created_at == suggestion.updated_at == now


def test_above_the_reorder_point_nothing_is_proposed(stores, mug, now):
    _warehouse, north, _south = stores
    moves(north, ("receipt", 6, 40), batch="in")
    rule(north, mug)

    assert figures(reorder_suggest(now=now)) == (1, 0, 0, 0)
    assert ReplenishmentSuggestion.objects.count() == 0


def test_a_fast_mover_reorders_earlier(stores, mug, now):
    """56 sold in the last 28 days: 2 a day, 14 over the 7-day lead time, so the reorder point
    rises from the minimum of 5 to 14; the older sales do not count."""
    _warehouse, north, _south = stores
    moves(
        north,
        ("receipt", 100, 60),
        ("sale", 30, 40),
        ("sale", 20, 27),
        ("sale", 36, 1),
        batch="day",
    )
    north_rule = rule(north, mug)

    assert figures(reorder_suggest(now=now)) == (1, 1, 0, 0)

    suggestion = proposal(north_rule)
    assert (suggestion.daily_velocity, suggestion.reorder_point, suggestion.position) == (
        Decimal("2.000"),
        14,
        14,
    )
    assert suggestion.quantity == 20 - 14


def test_the_reorder_point_can_pass_the_maximum(stores, mug, now):
    _warehouse, north, _south = stores
    moves(north, ("receipt", 100, 60), ("sale", 84, 2), batch="day")  # 3 a day
    north_rule = rule(north, mug, lead_time_days=10)

    reorder_suggest(now=now)

    suggestion = proposal(north_rule)
    assert (suggestion.reorder_point, suggestion.position, suggestion.quantity) == (30, 16, 14)


def test_quantities_are_whole_packs(stores, mug, now):
    _warehouse, north, _south = stores
    moves(north, ("receipt", 5, 40), batch="in")
    north_rule = rule(north, mug, pack_size=6)

    reorder_suggest(now=now)

    assert proposal(north_rule).quantity == 18  # 15 needed, three packs of 6


def test_reserved_and_in_transit_units_count_in_the_position(stores, mug, now):
    warehouse, north, south = stores
    moves(north, ("receipt", 8, 40), batch="in")
    moves(south, ("receipt", 3, 40), batch="in-south")
    StockLevel.objects.filter(location=north, variant=mug).update(reserved=5)
    north_rule = rule(north, mug)
    transfer_ship(
        transfer=transfer_request(
            from_location=south, to_location=north, lines=[{"sku": "RO-MUG", "quantity": 2}]
        )
    )

    reorder_suggest(now=now)

    assert proposal(north_rule).position == 8 - 5 + 2


def test_a_transfer_from_a_location_with_stock_to_spare(stores, mug, now):
    warehouse, north, south = stores
    moves(north, ("receipt", 2, 40), batch="in")
    moves(south, ("receipt", 40, 40), batch="in-south")
    moves(warehouse, ("receipt", 30, 40), batch="in-wh")
    north_rule = rule(north, mug)
    rule(south, mug, min_quantity=5, max_quantity=15)  # 25 to spare
    warehouse.safety_stock = 10
    warehouse.save()  # 20 to spare

    result = reorder_suggest(now=now)

    assert figures(result) == (2, 1, 0, 0)
    suggestion = proposal(north_rule)
    assert (suggestion.kind, suggestion.from_location, suggestion.quantity) == (
        "transfer",
        south,
        18,
    )


def test_a_transfer_from_a_warehouse_without_a_rule(stores, mug, now):
    warehouse, north, south = stores
    moves(north, ("receipt", 2, 40), batch="in")
    moves(south, ("receipt", 100, 40), batch="in-south")  # a store without a rule spares none
    moves(warehouse, ("receipt", 19, 40), batch="in-wh")
    north_rule = rule(north, mug)

    reorder_suggest(now=now)

    suggestion = proposal(north_rule)
    assert (suggestion.kind, suggestion.from_location) == ("transfer", warehouse)


def test_a_purchase_when_no_location_can_spare_enough(stores, mug, now):
    warehouse, north, south = stores
    moves(north, ("receipt", 2, 40), batch="in")
    moves(warehouse, ("receipt", 17, 40), batch="in-wh")
    StockLevel.objects.filter(location=warehouse, variant=mug).update(reserved=1)
    closed = LocationFactory(code="closed-wh", kind="warehouse")
    moves(closed, ("receipt", 50, 40), batch="in-closed")
    closed.is_active = False
    closed.save()
    north_rule = rule(north, mug)

    reorder_suggest(now=now)

    assert (proposal(north_rule).kind, proposal(north_rule).from_location) == ("purchase", None)


def test_a_second_run_changes_nothing(stores, mug, now):
    warehouse, north, _south = stores
    moves(north, ("receipt", 2, 40), batch="in")
    moves(warehouse, ("receipt", 50, 40), batch="in-wh")
    south_rule = rule(stores[2], mug)
    north_rule = rule(north, mug)
    reorder_suggest(now=now)
    before = sorted(ReplenishmentSuggestion.objects.values_list())

    result = reorder_suggest(now=now + timedelta(hours=1))

    assert figures(result) == (2, 0, 0, 0)
    assert sorted(ReplenishmentSuggestion.objects.values_list()) == before
    assert {proposal(north_rule).kind, proposal(south_rule).kind} == {"transfer"}


def test_a_proposal_is_updated_in_place(stores, mug, now):
    _warehouse, north, _south = stores
    moves(north, ("receipt", 5, 40), batch="in")
    north_rule = rule(north, mug)
    reorder_suggest(now=now)
    first = proposal(north_rule)
    moves(north, ("sale", 3, 0), batch="sold")

    later = now + timedelta(hours=1)
    result = reorder_suggest(now=later)

    assert figures(result) == (1, 0, 1, 0)
    updated = proposal(north_rule)
    assert updated.pk == first.pk
    assert (updated.quantity, updated.position, updated.updated_at, updated.created_at) == (
        18,
        2,
        later,
        now,
    )


def test_a_proposal_no_longer_needed_is_withdrawn(stores, mug, now):
    _warehouse, north, _south = stores
    moves(north, ("receipt", 5, 40), batch="in")
    north_rule = rule(north, mug)
    reorder_suggest(now=now)
    moves(north, ("receipt", 10, 0), batch="delivery")

    result = reorder_suggest(now=now)

    assert figures(result) == (1, 0, 0, 1)
    assert not ReplenishmentSuggestion.objects.filter(rule=north_rule).exists()


def test_inactive_rules_are_ignored(stores, mug, now):
    rule(stores[1], mug, is_active=False)

    assert figures(reorder_suggest(now=now)) == (0, 0, 0, 0)


# --- Acting on a proposal ----------------------------------------------------------------------


def test_a_transfer_proposal_becomes_a_requested_transfer(stores, mug, staff_user, now):
    warehouse, north, _south = stores
    moves(north, ("receipt", 2, 40), batch="in")
    moves(warehouse, ("receipt", 50, 40), batch="in-wh")
    north_rule = rule(north, mug)
    reorder_suggest(now=now)
    suggestion = proposal(north_rule)

    transfer = suggestion_create_transfer(suggestion=suggestion, actor=staff_user)

    assert (transfer.status, transfer.from_location, transfer.to_location) == (
        "requested",
        warehouse,
        north,
    )
    assert transfer.reference == f"replenishment #{suggestion.pk}"
    assert transfer.requested_by == staff_user
    assert list(transfer.lines.values_list("variant__sku", "quantity")) == [("RO-MUG", 18)]
    assert StockLevel.objects.get(location=warehouse, variant=mug).reserved == 18
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.transfer, suggestion.decided_by) == (
        "transfer_created",
        transfer,
        staff_user,
    )

    with pytest.raises(Conflict) as exc:
        suggestion_create_transfer(suggestion=suggestion)
    assert exc.value.code == "already_decided"
    assert Transfer.objects.count() == 1

    # The requested transfer is on its way: the next run proposes nothing more.
    assert figures(reorder_suggest(now=now)) == (1, 0, 0, 0)
    assert ReplenishmentSuggestion.objects.filter(status="proposed").count() == 0


def test_a_purchase_proposal_is_not_a_transfer(stores, mug, now):
    north = stores[1]
    north_rule = rule(north, mug)
    reorder_suggest(now=now)
    suggestion = proposal(north_rule)

    with pytest.raises(Conflict) as exc:
        suggestion_create_transfer(suggestion=suggestion)

    assert exc.value.code == "not_transfer"
    assert Transfer.objects.count() == 0


def test_mark_ordered_and_dismiss(stores, mug, staff_user, now):
    north, south = stores[1], stores[2]
    ordered = rule(north, mug)
    dismissed = rule(south, mug)
    reorder_suggest(now=now)

    suggestion_mark_ordered(suggestion=proposal(ordered), actor=staff_user)
    suggestion_dismiss(suggestion=proposal(dismissed))

    assert dict(ReplenishmentSuggestion.objects.values_list("rule_id", "status")) == {
        ordered.pk: "ordered",
        dismissed.pk: "dismissed",
    }
    decided = ReplenishmentSuggestion.objects.get(rule=ordered)
    assert decided.decided_by == staff_user
    with pytest.raises(Conflict) as exc:
        suggestion_dismiss(suggestion=decided)
    assert exc.value.code == "already_decided"
