"""movement_batch_apply: POS batches applied exactly once, refused whole if a movement is bad."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from inventory.models import ChannelAvailability, MovementBatch, StockLevel, StockMovement
from inventory.services import (
    ReserveLine,
    movement_batch_apply,
    stock_adjust,
    stock_receive,
    stock_reserve,
    stock_return,
    stock_sell,
)
from inventory.services import stock as stock_services
from omni.exceptions import Conflict, ValidationFailed
from tests.factories import ChannelFactory, LocationFactory, StockRuleFactory, VariantFactory

pytestmark = pytest.mark.django_db


def on_hand(location, variant):
    return StockLevel.objects.get(location=location, variant=variant).on_hand


def ledger(source):
    return sorted(
        StockMovement.objects.filter(source=source).values_list(
            "idempotency_key", "location__code", "variant__sku", "kind", "quantity"
        )
    )


# --- Exactly once under concurrency ---------------------------------------------------------


def _day(sku):
    return [
        {"id": "r1", "sku": sku, "kind": "receipt", "quantity": 10},
        {"id": "s1", "sku": sku, "kind": "sale", "quantity": 2},
        {"id": "s2", "sku": sku, "kind": "sale", "quantity": 1, "reference": "ticket 2"},
        {"id": "a1", "sku": sku, "kind": "adjustment", "quantity": -1, "reason": "Broken"},
        {"id": "t1", "sku": sku, "kind": "return", "quantity": 1},
    ]


def _at_once(count, call):
    barrier = threading.Barrier(count)
    results, errors = {}, {}

    def run(index):
        try:
            barrier.wait(timeout=10)
            results[index] = call(index)
        except BaseException as exc:
            errors[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_three_times_at_once_and_once_late_is_applied_once():
    channel = ChannelFactory(code="pos-batch-web")
    store = LocationFactory(code="pos-batch-store")
    StockRuleFactory(channel=channel, location=store)
    variant = VariantFactory(sku="POS-BATCH-1")
    movements = _day(variant.sku)

    def submit(_index):
        return movement_batch_apply(
            source="pos:store", batch_id="2026-05-01", location=store, movements=movements
        )

    results, errors = _at_once(3, submit)
    late = submit(None)

    assert errors == {}
    outcomes = [*results.values(), late]
    assert sorted(r.replayed for r in outcomes) == [False, True, True, True]
    assert {r.batch.pk for r in outcomes} == {MovementBatch.objects.get().pk}
    assert {(r.batch.applied_count, r.batch.duplicate_count) for r in outcomes} == {(5, 0)}
    assert StockMovement.objects.count() == 5
    assert on_hand(store, variant) == 10 - 2 - 1 - 1 + 1
    assert StockLevel.objects.get().reserved == 0
    assert ChannelAvailability.objects.get(variant=variant, channel=channel).quantity == 7


@pytest.mark.django_db(transaction=True)
def test_two_batches_with_the_same_movements_at_once_apply_them_once():
    store = LocationFactory(code="pos-twin-store")
    variant = VariantFactory(sku="POS-TWIN-1")
    movements = _day(variant.sku)

    def submit(index):
        return movement_batch_apply(
            source="pos:store", batch_id=f"resent-{index}", location=store, movements=movements
        )

    results, errors = _at_once(2, submit)

    assert errors == {}
    assert sorted((r.batch.applied_count, r.batch.duplicate_count) for r in results.values()) == [
        (0, 5),
        (5, 0),
    ]
    assert not any(r.replayed for r in results.values())
    assert StockMovement.objects.count() == 5
    assert on_hand(store, variant) == 7


# --- Replays, duplicates and reuse ------------------------------------------------------------


@pytest.fixture
def store(db):
    return LocationFactory(code="till-store")


def test_a_replay_answers_from_the_first_and_writes_nothing(store, variant):
    first = movement_batch_apply(
        source="pos:till", batch_id="b1", location=store, movements=_day(variant.sku)
    )
    again = movement_batch_apply(
        source="pos:till", batch_id="b1", location=store, movements=_day(variant.sku)
    )

    assert (first.replayed, again.replayed) == (False, True)
    assert again.batch.pk == first.batch.pk
    assert again.as_dict == {
        "batch_id": "b1",
        "movements": 5,
        "applied": 5,
        "duplicates": 0,
        "replayed": True,
        "received_at": first.batch.received_at,
    }
    assert StockMovement.objects.count() == 5
    assert on_hand(store, variant) == 7


def test_another_batch_reusing_recorded_movement_ids_counts_them_as_duplicates(store, variant):
    movement_batch_apply(
        source="pos:till", batch_id="b1", location=store, movements=_day(variant.sku)[:3]
    )

    result = movement_batch_apply(
        source="pos:till", batch_id="b2", location=store, movements=_day(variant.sku)
    )

    assert result.replayed is False
    assert (result.batch.movement_count, result.batch.applied_count) == (5, 2)
    assert result.batch.duplicate_count == 3
    assert ledger("pos:till") == [
        ("a1", "till-store", variant.sku, "adjustment", -1),
        ("r1", "till-store", variant.sku, "receipt", 10),
        ("s1", "till-store", variant.sku, "sale", -2),
        ("s2", "till-store", variant.sku, "sale", -1),
        ("t1", "till-store", variant.sku, "return", 1),
    ]
    assert on_hand(store, variant) == 7


def test_movement_ids_are_per_source(store, variant):
    movements = _day(variant.sku)[:1]
    movement_batch_apply(source="pos:till-1", batch_id="b1", location=store, movements=movements)

    other = movement_batch_apply(
        source="pos:till-2", batch_id="b1", location=store, movements=movements
    )

    assert (other.replayed, other.batch.applied_count, other.batch.duplicate_count) == (False, 1, 0)
    assert on_hand(store, variant) == 20


def test_the_same_batch_id_with_other_movements_is_a_conflict(store, variant):
    movement_batch_apply(
        source="pos:till", batch_id="b1", location=store, movements=_day(variant.sku)
    )
    changed = _day(variant.sku)
    changed[1]["quantity"] = 3

    with pytest.raises(Conflict) as exc:
        movement_batch_apply(source="pos:till", batch_id="b1", location=store, movements=changed)

    assert exc.value.code == "batch_id_reused"
    assert exc.value.extra == {"batch_id": ["Already used for a different batch."]}
    assert StockMovement.objects.count() == 5
    assert on_hand(store, variant) == 7

    elsewhere = LocationFactory(code="other-store")
    with pytest.raises(Conflict) as exc:
        movement_batch_apply(
            source="pos:till", batch_id="b1", location=elsewhere, movements=_day(variant.sku)
        )
    assert exc.value.code == "batch_id_reused"


# --- Refused batches --------------------------------------------------------------------------


def test_one_bad_movement_among_many_refuses_the_batch_with_every_error_by_index(store, variant):
    movements = [
        {"id": f"m{i}", "sku": variant.sku, "kind": "sale", "quantity": 1} for i in range(40)
    ]
    movements[7] = {"id": "m7", "sku": "NOPE-1", "kind": "sale", "quantity": 1}
    movements[21]["quantity"] = 0
    movements[33]["kind"] = "theft"

    with pytest.raises(ValidationFailed) as exc:
        movement_batch_apply(source="pos:till", batch_id="b1", location=store, movements=movements)

    assert exc.value.code == "invalid_batch"
    assert str(exc.value) == "3 of 40 movements are invalid; nothing was applied."
    assert exc.value.extra == {
        "movements": {
            "7": {"sku": ["Unknown SKU NOPE-1."]},
            "21": {"quantity": ["At least 1 (the kind says the direction)."]},
            "33": {"kind": ["One of: sale, return, receipt, adjustment."]},
        }
    }
    assert MovementBatch.objects.count() == 0
    assert StockMovement.objects.count() == 0
    assert StockLevel.objects.count() == 0


def test_every_rule_of_a_movement_is_checked(store, variant):
    LocationFactory(code="closed-store", is_active=False)
    now = timezone.now()
    movements = [
        "not an object",
        {"sku": variant.sku, "kind": "sale", "quantity": 1},
        {"id": "x" * 101, "sku": variant.sku, "kind": "sale", "quantity": 1},
        {"id": "dup", "sku": variant.sku, "kind": "sale", "quantity": 1},
        {"id": "dup", "sku": variant.sku, "kind": "sale", "quantity": 1},
        {"id": "5", "kind": "sale", "quantity": 1},
        {"id": "6", "sku": variant.sku, "kind": "sale", "quantity": 1, "location": "nowhere"},
        {"id": "7", "sku": variant.sku, "kind": "sale", "quantity": 1, "location": "closed-store"},
        {"id": "8", "sku": variant.sku, "kind": "sale", "quantity": True},
        {"id": "9", "sku": variant.sku, "kind": "sale", "quantity": "2"},
        {"id": "10", "sku": variant.sku, "kind": "adjustment", "quantity": 0, "reason": "x"},
        {"id": "11", "sku": variant.sku, "kind": "adjustment", "quantity": 2},
        {"id": "12", "sku": variant.sku, "kind": "sale", "quantity": 1, "occurred_at": "soon"},
        {
            "id": "13",
            "sku": variant.sku,
            "kind": "sale",
            "quantity": 1,
            "occurred_at": "2026-01-01T10:00:00",
        },
        {
            "id": "14",
            "sku": variant.sku,
            "kind": "sale",
            "quantity": 1,
            "occurred_at": (now + timedelta(hours=1)).isoformat(),
        },
        {"id": "15", "sku": variant.sku, "kind": "sale", "quantity": 1, "reference": "r" * 121},
        {"id": "16", "sku": variant.sku.lower(), "kind": "return", "quantity": 1},
        {"id": "17", "sku": variant.sku, "kind": "receipt", "quantity": 2**31},
        {
            "id": "18",
            "sku": variant.sku,
            "kind": "adjustment",
            "quantity": -1_000_001,
            "reason": "x",
        },
        {"id": "19", "sku": variant.sku, "kind": "receipt", "quantity": 1_000_000},
        {
            "id": "20",
            "sku": variant.sku,
            "kind": "sale",
            "quantity": 1,
            "occurred_at": "2026-02-30T10:00:00Z",
        },
    ]

    with pytest.raises(ValidationFailed) as exc:
        movement_batch_apply(source="pos:till", batch_id="b1", location=store, movements=movements)

    assert exc.value.extra == {
        "movements": {
            "0": {"movement": ["Must be an object."]},
            "1": {"id": ["Required: your id of this movement."]},
            "2": {"id": ["At most 100 characters."]},
            "4": {"id": ["Repeats movement 3 of this batch."]},
            "5": {"sku": ["Required."]},
            "6": {"location": ["Unknown location nowhere."]},
            "7": {"location": ["closed-store is inactive."]},
            "8": {"quantity": ["A whole number."]},
            "9": {"quantity": ["A whole number."]},
            "10": {"quantity": ["Not 0 (negative to remove units)."]},
            "11": {"reason": ["Required for an adjustment."]},
            "12": {"occurred_at": ["Not an ISO 8601 date and time."]},
            "13": {"occurred_at": ["Give a time zone (e.g. 2026-11-22T10:00:00+01:00 or ...Z)."]},
            "14": {"occurred_at": ["Lies in the future."]},
            "15": {"reference": ["At most 120 characters."]},
            "17": {"quantity": ["At most 1,000,000 units."]},
            "18": {"quantity": ["At most 1,000,000 units."]},
            "20": {"occurred_at": ["Not an ISO 8601 date and time."]},
        }
    }
    assert StockMovement.objects.count() == 0


def test_a_movement_needs_a_location_when_the_batch_has_none(variant):
    with pytest.raises(ValidationFailed) as exc:
        movement_batch_apply(
            source="pos:till",
            batch_id="b1",
            movements=[{"id": "1", "sku": variant.sku, "kind": "sale", "quantity": 1}],
        )

    assert exc.value.extra == {"movements": {"0": {"location": ["Required."]}}}


@pytest.mark.parametrize("batch_id", ["", "   ", "b" * 101, None])
def test_a_batch_needs_an_id(store, variant, batch_id):
    with pytest.raises(ValidationFailed) as exc:
        movement_batch_apply(
            source="pos:till", batch_id=batch_id, location=store, movements=_day(variant.sku)
        )

    assert exc.value.extra == {"batch_id": ["Required."]}
    assert MovementBatch.objects.count() == 0


@pytest.mark.parametrize("movements", [[], None, {"id": "1"}])
def test_a_batch_needs_movements(store, movements):
    with pytest.raises(ValidationFailed) as exc:
        movement_batch_apply(source="pos:till", batch_id="b1", location=store, movements=movements)

    assert exc.value.extra == {"movements": ["At least one."]}


def test_a_batch_has_a_size_limit(store, variant, monkeypatch):
    monkeypatch.setattr(stock_services, "MAX_BATCH", 4)

    with pytest.raises(ValidationFailed) as exc:
        movement_batch_apply(
            source="pos:till", batch_id="b1", location=store, movements=_day(variant.sku)
        )

    assert exc.value.code == "batch_too_large"
    assert MovementBatch.objects.count() == 0


# --- What an applied batch records ------------------------------------------------------------


def test_movements_keep_their_location_time_reference_and_channel(
    store, variant, django_capture_on_commit_callbacks
):
    pos = ChannelFactory(code="till-pos", kind="store_pos")
    other = LocationFactory(code="till-other")
    StockRuleFactory(channel=pos, location=store)
    sold_at = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    movements = [
        {"id": "r", "sku": variant.sku, "kind": "receipt", "quantity": 4, "location": "till-other"},
        {
            "id": "s",
            "sku": variant.sku,
            "kind": "sale",
            "quantity": 2,
            "occurred_at": "2026-01-05T10:30:00+01:00",
            "reference": "ticket 99",
        },
        {"id": "a", "sku": variant.sku, "kind": "adjustment", "quantity": 3, "reason": "Found"},
    ]

    with django_capture_on_commit_callbacks(execute=True):
        result = movement_batch_apply(
            source="pos:till", batch_id="b1", location=store, channel=pos, movements=movements
        )

    assert result.batch.location == store
    sale = StockMovement.objects.get(idempotency_key="s")
    assert (sale.occurred_at, sale.reference, sale.quantity, sale.channel) == (
        sold_at,
        "ticket 99",
        -2,
        pos,
    )
    assert StockMovement.objects.get(idempotency_key="a").reason == "Found"
    assert on_hand(other, variant) == 4
    assert on_hand(store, variant) == 1
    # The batch as a whole leaves the store with one unit: no count is asked for.
    assert store.counts.filter(status="requested").count() == 0
    assert ChannelAvailability.objects.get(variant=variant, channel=pos).quantity == 1


def test_a_batch_writes_its_ledger_lines_as_the_model_objects_would(store, variant, staff_user):
    """A batch's lines go in as one statement of arrays (no model object each): every field as
    the ORM writes it, and on hand moved the same."""
    from django.db import transaction

    from inventory.services.common import Move, write_moves

    pos = ChannelFactory(code="till-arrays", kind="store_pos")
    other = VariantFactory(sku="POS-ARRAYS-2")
    now = timezone.now()
    moves = [
        Move(store.pk, variant.pk, "receipt", 5, idempotency_key="k1"),
        Move(
            store.pk,
            other.pk,
            "sale",
            -2,
            reference="ticket 7",
            reason="",
            channel_id=pos.pk,
            idempotency_key="k2",
            occurred_at=now - timedelta(hours=2),
        ),
        Move(store.pk, variant.pk, "adjustment", -1, reason="Broken", idempotency_key=None),
    ]
    # all but the key and recorded_at (the time of writing, checked below)
    fields = [
        f.attname
        for f in StockMovement._meta.concrete_fields
        if f.attname not in ("id", "recorded_at")
    ]

    def written():
        lines = StockMovement.objects.filter(location=store).order_by("pk").values_list(*fields)
        return list(lines), on_hand(store, variant), on_hand(store, other)

    with transaction.atomic():
        write_moves(moves, source="pos:arrays", actor=staff_user, now=now)
        by_objects = written()
        transaction.set_rollback(True)

    assert write_moves(moves, source="pos:arrays", actor=staff_user, now=now, returning=False) == []

    assert written() == by_objects
    recorded = StockMovement.objects.filter(location=store).values_list("recorded_at", flat=True)
    assert len(recorded) == 3 and all(now <= at <= timezone.now() for at in recorded)
    assert by_objects[1:] == (4, -2)
    assert by_objects[0][1][fields.index("channel_id")] == pos.pk
    assert by_objects[0][0][fields.index("actor_id")] == staff_user.pk


@pytest.mark.django_db(transaction=True)
def test_stock_rows_are_locked_only_inside_a_transaction(variant):
    from django.db.transaction import TransactionManagementError

    from inventory.services import stock_level_lock

    location = LocationFactory(code="till-autocommit")
    StockLevel.objects.create(location=location, variant=variant, on_hand=1)

    with pytest.raises(TransactionManagementError):
        stock_level_lock([(location.pk, variant.pk)])


# --- Single movements keep the same limits ----------------------------------------------------


def test_single_movements_refuse_impossible_quantities(store, variant):
    with pytest.raises(ValidationFailed) as exc:
        stock_receive(location=store, variant=variant, quantity=2**31)
    assert exc.value.extra == {"quantity": ["At most 1,000,000."]}

    with pytest.raises(ValidationFailed) as exc:
        stock_sell(location=store, variant=variant, quantity=-1)
    assert exc.value.extra == {"quantity": ["Must be at least 1."]}

    with pytest.raises(ValidationFailed) as exc:
        stock_adjust(location=store, variant=variant, quantity=-(2**31), reason="Typo")
    assert exc.value.extra == {"quantity": ["At most 1,000,000 units either way."]}

    assert StockMovement.objects.count() == 0


def test_an_adjustment_needs_a_reason_and_may_not_go_below_reserved(store, variant, web):
    web.stock_rules.create(location=store)
    stock_receive(location=store, variant=variant, quantity=3)
    stock_reserve(channel=web, lines=[ReserveLine(variant=variant, quantity=2)], reference="O")

    with pytest.raises(ValidationFailed) as exc:
        stock_adjust(location=store, variant=variant, quantity=-1, reason="  ")
    assert exc.value.extra == {"reason": ["Required."]}

    with pytest.raises(ValidationFailed) as exc:
        stock_adjust(location=store, variant=variant, quantity=-2, reason="Broken")
    assert (exc.value.code, exc.value.extra) == (
        "below_reserved",
        {"quantity": ["Remove at most 1: 2 of the 3 units there are reserved."]},
    )

    movement = stock_adjust(location=store, variant=variant, quantity=-1, reason="Broken")
    assert (movement.kind, movement.quantity, movement.reason) == ("adjustment", -1, "Broken")
    assert on_hand(store, variant) == 2


def test_single_movements_at_an_inactive_location_are_refused(store, variant):
    store.is_active = False
    store.save()

    for call in (stock_receive, stock_sell, stock_return):
        with pytest.raises(ValidationFailed) as exc:
            call(location=store, variant=variant, quantity=1)
        assert exc.value.code == "location_inactive"
    assert StockMovement.objects.count() == 0
