"""Counts, stock_reconcile and the review of discrepancies."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from inventory.models import (
    ChannelAvailability,
    CountTolerance,
    Discrepancy,
    ReconciliationRun,
    Reservation,
    StockCount,
    StockCountLine,
    StockLevel,
    StockMovement,
)
from inventory.services import (
    ReserveLine,
    discrepancy_approve,
    discrepancy_reject,
    movement_batch_apply,
    stock_count_cancel,
    stock_count_request,
    stock_count_submit,
    stock_receive,
    stock_reconcile,
    stock_reserve,
    stock_sell,
)
from inventory.services import counts as count_services
from omni.exceptions import Conflict, ValidationFailed
from omni.models import OutboxEvent
from tests.factories import LocationFactory, VariantFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(hours):
    return T0 + timedelta(hours=hours)


def level(location, variant):
    row = StockLevel.objects.get(location=location, variant=variant)
    return row.on_hand, row.reserved


def post(location, *movements, batch="b"):
    """Movements at known times, through a POS batch: ``(id, variant, kind, quantity, hour)``."""
    return movement_batch_apply(
        source=f"pos:{location.code}",
        batch_id=batch,
        location=location,
        movements=[
            {
                "id": key,
                "sku": variant.sku,
                "kind": kind,
                "quantity": quantity,
                "occurred_at": at(hour).isoformat(),
                **({"reason": "test"} if kind == "adjustment" else {}),
            }
            for key, variant, kind, quantity, hour in movements
        ],
    )


def count(location, *lines, hour=1):
    return stock_count_submit(
        location=location,
        counted_at=at(hour),
        lines=[{"sku": variant.sku, "quantity": quantity} for variant, quantity in lines],
    )


def snapshot():
    """The stock, the ledger, the reservations and the findings, without ids or times."""
    return {
        "stock": sorted(
            StockLevel.objects.values_list("location__code", "variant__sku", "on_hand", "reserved")
        ),
        "ledger": sorted(
            StockMovement.objects.values_list(
                "location__code", "variant__sku", "kind", "quantity", "reference", "idempotency_key"
            )
        ),
        "reservations": sorted(
            Reservation.objects.values_list(
                "reference", "location__code", "variant__sku", "quantity", "status"
            )
        ),
        "discrepancies": sorted(
            Discrepancy.objects.values_list(
                "kind", "status", "location__code", "variant__sku", "expected", "actual"
            )
        ),
        "counts": sorted(StockCount.objects.values_list("pk", "status")),
        "availability": sorted(
            ChannelAvailability.objects.values_list("variant__sku", "channel__code", "quantity")
        ),
    }


@pytest.fixture
def sku_a(db):
    return VariantFactory(sku="REC-A")


@pytest.fixture
def sku_b(db):
    return VariantFactory(sku="REC-B")


# --- Counts ------------------------------------------------------------------------------------


def test_a_count_fills_the_open_request_of_its_location(stores, sku_a):
    _warehouse, north, _south = stores
    request = stock_count_request(location=north, reason="Shelf looks empty")
    north.refresh_from_db()
    assert north.count_requested_at is not None

    submitted = count(north, (sku_a, 4))

    assert submitted.pk == request.pk
    assert (submitted.status, submitted.counted_at, submitted.reason) == (
        "submitted",
        at(1),
        "Shelf looks empty",
    )
    assert list(submitted.lines.values_list("variant__sku", "counted_quantity")) == [("REC-A", 4)]
    assert StockCount.objects.get(pk=submitted.pk).line_count == 1
    north.refresh_from_db()
    assert north.count_requested_at is None


def test_a_count_without_a_request_is_a_new_count(stores, sku_a):
    submitted = count(stores[1], (sku_a, 0))

    assert (submitted.status, submitted.requested_at) == ("submitted", None)
    assert StockCount.objects.count() == 1


def test_bad_count_lines_are_reported_by_index_and_nothing_is_recorded(stores, sku_a):
    with pytest.raises(ValidationFailed) as exc:
        stock_count_submit(
            location=stores[1],
            counted_at=at(1),
            lines=[
                {"sku": sku_a.sku, "quantity": 1},
                {"sku": "NOPE", "quantity": 1},
                {"sku": sku_a.sku, "quantity": 2},
                {"sku": sku_a.sku, "quantity": -1},
                {"quantity": 1},
                {"sku": sku_a.sku, "quantity": 2**31},
            ],
        )

    assert exc.value.extra == {
        "lines": {
            "1": {"sku": ["Unknown SKU NOPE."]},
            "2": {"sku": ["REC-A is counted on line 0."]},
            "3": {"quantity": ["A whole number, 0 or more."]},
            "4": {"sku": ["Unknown SKU ."]},
            "5": {"quantity": ["At most 1,000,000."]},
        }
    }
    assert StockCount.objects.count() == StockCountLine.objects.count() == 0


@pytest.mark.parametrize(
    ("counted_at", "error"),
    [
        (None, "Required."),
        ("", "Required."),
        ("yesterday", "Not an ISO 8601 date and time."),
        ("2026-03-02T08:00:00", "Give a time zone (e.g. 2026-11-22T10:00:00+01:00 or ...Z)."),
        ("2026-02-30T08:00:00Z", "Not an ISO 8601 date and time."),
    ],
)
def test_a_count_needs_a_valid_time(stores, sku_a, counted_at, error):
    with pytest.raises(ValidationFailed) as exc:
        stock_count_submit(
            location=stores[1], counted_at=counted_at, lines=[{"sku": sku_a.sku, "quantity": 1}]
        )

    assert exc.value.extra == {"counted_at": [error]}


def test_a_count_in_the_future_is_refused(stores, sku_a):
    with pytest.raises(ValidationFailed) as exc:
        stock_count_submit(
            location=stores[1],
            counted_at=timezone.now() + timedelta(hours=1),
            lines=[{"sku": sku_a.sku, "quantity": 1}],
        )

    assert exc.value.extra == {"counted_at": ["Lies in the future."]}


def test_a_count_of_an_inactive_location_or_without_lines_is_refused(stores, sku_a):
    north = stores[1]
    with pytest.raises(ValidationFailed) as exc:
        stock_count_submit(location=north, counted_at=at(1), lines=[])
    assert exc.value.extra == {"lines": ["Required."]}

    north.is_active = False
    north.save()
    with pytest.raises(ValidationFailed) as exc:
        count(north, (sku_a, 1))
    assert exc.value.code == "location_inactive"
    assert StockCount.objects.count() == 0


def test_cancel_a_count(stores, sku_a):
    north = stores[1]
    request = stock_count_request(location=north, reason="check")

    stock_count_cancel(count=request)

    request.refresh_from_db()
    north.refresh_from_db()
    assert request.status == "cancelled"
    assert north.count_requested_at is None
    with pytest.raises(Conflict):
        stock_count_cancel(count=request)


# --- Count against ledger ----------------------------------------------------------------------


def test_movements_after_the_count_time_are_no_discrepancy(stores, sku_a):
    _warehouse, north, _south = stores
    post(north, ("r", sku_a, "receipt", 10, 0), ("s1", sku_a, "sale", 1, 0.5))
    post(north, ("s2", sku_a, "sale", 2, 2), ("s3", sku_a, "sale", 1, 3), batch="later")
    submitted = count(north, (sku_a, 9), hour=1)

    run = stock_reconcile(trigger="test")

    assert (run.counts_processed, run.lines_compared, run.discrepancies_found) == (1, 1, 0)
    assert Discrepancy.objects.count() == 0
    assert submitted.lines.get().expected_quantity == 9
    submitted.refresh_from_db()
    assert (submitted.status, submitted.run) == ("reconciled", run)
    assert level(north, sku_a) == (6, 0)


def test_counts_of_one_group_each_take_the_movements_after_their_own_time(stores, sku_a):
    """One group, two stores counted at different times: each count's expected quantity takes
    back only its own store's movements after its own count time (the run also reads the
    ledger from the earliest count time on, which must not change that)."""
    _warehouse, north, south = stores
    for store in (north, south):
        post(store, ("r", sku_a, "receipt", 10, 0))
    post(north, ("n1", sku_a, "sale", 1, 2), ("n2", sku_a, "sale", 2, 4), batch="later")
    post(south, ("s1", sku_a, "sale", 3, 2), ("s2", sku_a, "sale", 4, 4), batch="later")
    early = count(north, (sku_a, 10), hour=1)  # before both of north's sales
    late = count(south, (sku_a, 7), hour=3)  # after south's first sale, before its second

    run = stock_reconcile(trigger="test")

    assert count_services._count_groups([(early.pk, north.pk, 1), (late.pk, south.pk, 1)]) == [
        [early.pk, late.pk]
    ]
    assert (run.lines_compared, run.discrepancies_found) == (2, 0)
    assert early.lines.get().expected_quantity == 10
    assert late.lines.get().expected_quantity == 7


def test_a_sale_after_the_count_does_not_hide_a_real_difference(stores, sku_a):
    _warehouse, north, _south = stores
    post(north, ("r", sku_a, "receipt", 10, 0))
    post(north, ("s", sku_a, "sale", 3, 2), batch="later")
    count(north, (sku_a, 8), hour=1)

    run = stock_reconcile(trigger="test")

    found = Discrepancy.objects.get()
    assert (found.kind, found.status, found.expected, found.actual, found.difference) == (
        "count",
        "pending",
        10,
        8,
        -2,
    )
    assert (run.discrepancies_found, run.auto_applied, run.pending_review) == (1, 0, 1)
    assert level(north, sku_a) == (7, 0)
    event = OutboxEvent.objects.get(type="inventory.count_discrepancies")
    assert event.payload == {"location": "north", "pending": 1}


# --- Tolerance ---------------------------------------------------------------------------------


def _three_counted(stores, sku_a, sku_b):
    """North holds 20 of A and 5 of B; counted 18 and 4."""
    _warehouse, north, _south = stores
    post(north, ("ra", sku_a, "receipt", 20, 0), ("rb", sku_b, "receipt", 5, 0))
    return count(north, (sku_a, 18), (sku_b, 4))


def test_without_a_tolerance_every_difference_waits_for_review(stores, sku_a, sku_b):
    _three_counted(stores, sku_a, sku_b)

    run = stock_reconcile(trigger="test")

    assert (run.auto_applied, run.pending_review) == (0, 2)
    assert set(Discrepancy.objects.values_list("status", flat=True)) == {"pending"}
    assert StockMovement.objects.filter(kind="count_correction").count() == 0
    assert level(stores[1], sku_a) == (20, 0)


def test_the_general_tolerance_in_units_applies_small_differences(stores, sku_a, sku_b):
    CountTolerance.objects.create(max_units=1)
    submitted = _three_counted(stores, sku_a, sku_b)

    run = stock_reconcile(trigger="test")

    assert (run.discrepancies_found, run.auto_applied, run.pending_review) == (2, 1, 1)
    applied = Discrepancy.objects.get(variant=sku_b)
    line = submitted.lines.get(variant=sku_b)
    assert (applied.status, applied.difference, applied.resolved_at is not None) == (
        "auto_applied",
        -1,
        True,
    )
    movement = applied.movement
    assert (movement.kind, movement.quantity, movement.source, movement.reference) == (
        "count_correction",
        -1,
        "reconcile",
        f"count #{submitted.pk}",
    )
    assert movement.idempotency_key == f"count-line:{line.pk}"
    assert level(stores[1], sku_b) == (4, 0)
    assert Discrepancy.objects.get(variant=sku_a).status == "pending"
    assert level(stores[1], sku_a) == (20, 0)


def test_a_tolerance_in_percent_of_the_expected_quantity(stores, sku_a, sku_b):
    # 2 of 20 is 10 %; 1 of 5 is 20 %.
    CountTolerance.objects.create(max_units=0, max_percent=Decimal("10"))
    _three_counted(stores, sku_a, sku_b)

    stock_reconcile(trigger="test")

    assert dict(Discrepancy.objects.values_list("variant__sku", "status")) == {
        "REC-A": "auto_applied",
        "REC-B": "pending",
    }
    assert level(stores[1], sku_a) == (18, 0)


def test_the_locations_tolerance_wins_over_the_general_one(stores, sku_a, sku_b):
    _warehouse, north, south = stores
    CountTolerance.objects.create(max_units=5)
    CountTolerance.objects.create(location=north, max_units=0, max_percent=Decimal("5"))
    _three_counted(stores, sku_a, sku_b)
    post(south, ("ra", sku_a, "receipt", 20, 0))
    count(south, (sku_a, 16))

    stock_reconcile(trigger="test")

    assert sorted(Discrepancy.objects.values_list("location__code", "variant__sku", "status")) == [
        ("north", "REC-A", "pending"),
        ("north", "REC-B", "pending"),
        ("south", "REC-A", "auto_applied"),
    ]
    assert level(south, sku_a) == (16, 0)


def test_an_exact_count_records_nothing(stores, sku_a):
    CountTolerance.objects.create(max_units=3)
    post(stores[1], ("ra", sku_a, "receipt", 20, 0))
    count(stores[1], (sku_a, 20))

    run = stock_reconcile(trigger="test")

    assert (run.lines_compared, run.discrepancies_found) == (1, 0)
    assert not OutboxEvent.objects.filter(type="inventory.count_discrepancies").exists()


def test_a_count_of_an_item_the_store_never_had_creates_its_stock_row(stores, sku_a):
    CountTolerance.objects.create(max_units=2)
    count(stores[1], (sku_a, 2))

    stock_reconcile(trigger="test")

    assert level(stores[1], sku_a) == (2, 0)
    assert Discrepancy.objects.get().status == "auto_applied"


def test_the_database_applies_the_tolerance_as_within_tolerance_says(stores):
    """The reconciliation compares in SQL; ``within_tolerance`` is the rule in Python. Every
    (expected, counted) pair of a grid, under a rule in units and percent at one store and a
    general rule at another, in one run (one group), gets the status the rule gives."""
    _warehouse, north, south = stores
    general = CountTolerance.objects.create(max_units=0, max_percent=Decimal("12.5"))
    north_rule = CountTolerance.objects.create(
        location=north, max_units=2, max_percent=Decimal("5.25")
    )
    cases = [
        (expected, counted)
        for expected in (0, 1, 3, 8, 20, 40, 100, 1000)
        for counted in {
            0,
            1,
            max(expected - 3, 0),
            expected - 1,
            expected + 1,
            expected + 2,
            expected + 3,
            expected + 5,
            expected * 2 + 1,
        }
        - {-1}
        if counted != expected
    ]
    variants = VariantFactory.create_batch(len(cases))
    for store in (north, south):
        for n, (variant, (expected, _counted)) in enumerate(zip(variants, cases, strict=True)):
            if expected:
                stock_receive(location=store, variant=variant, quantity=expected, reference=f"{n}")
        stock_count_submit(
            location=store,
            counted_at=timezone.now(),
            lines=[
                {"sku": v.sku, "quantity": c} for v, (_e, c) in zip(variants, cases, strict=True)
            ],
        )

    run = stock_reconcile(trigger="test")

    assert run.counts_processed == 2
    assert run.discrepancies_found == 2 * len(cases)
    for store, rule in ((north, north_rule), (south, general)):
        found = {
            d.variant_id: (d.expected, d.actual, d.status)
            for d in Discrepancy.objects.filter(location=store)
        }
        for variant, (expected, counted) in zip(variants, cases, strict=True):
            auto = count_services.within_tolerance(rule, expected, counted - expected)
            assert found[variant.pk] == (
                expected,
                counted,
                "auto_applied" if auto else "pending",
            ), (store.code, expected, counted)
    assert run.auto_applied == Discrepancy.objects.filter(status="auto_applied").count() > 0
    assert run.pending_review == Discrepancy.objects.filter(status="pending").count() > 0


def test_a_correction_is_dated_at_its_count_time(stores, sku_a):
    CountTolerance.objects.create(max_units=2)
    post(stores[1], ("ra", sku_a, "receipt", 10, 0))
    submitted = count(stores[1], (sku_a, 9), hour=5)

    stock_reconcile(trigger="test")

    correction = StockMovement.objects.get(kind="count_correction")
    assert (correction.quantity, correction.occurred_at) == (-1, submitted.counted_at)
    assert correction.recorded_at > submitted.counted_at


def test_two_counts_of_an_item_correct_it_once(stores, sku_a, sku_b):
    """The ledger says 8, the shelf holds 10, and two counts (an hour apart, both waiting)
    found 10: the first corrects the ledger; the second, compared with the ledger at its own
    time, which holds that correction, finds nothing. (With the correction dated when it was
    applied, the second count found the same difference again and on hand went to 12.)"""
    _warehouse, north, _south = stores
    CountTolerance.objects.create(max_units=2)
    post(north, ("ra", sku_a, "receipt", 8, 0), ("rb", sku_b, "receipt", 5, 0))
    later = count(north, (sku_a, 10), (sku_b, 5), hour=3)
    earlier = count(north, (sku_a, 10), hour=2)  # submitted after, counted before

    run = stock_reconcile(trigger="test")

    assert (run.counts_processed, run.discrepancies_found, run.auto_applied) == (2, 1, 1)
    assert level(north, sku_a) == (10, 0)
    assert Discrepancy.objects.get().count_line.count == earlier
    assert list(
        later.lines.order_by("variant__sku").values_list("expected_quantity", flat=True)
    ) == [
        10,
        5,
    ]


def test_counts_are_grouped_by_lines_with_one_count_per_location():
    groups = count_services._count_groups
    limit = count_services.GROUP_LINES
    assert groups([]) == []
    assert groups([(1, 10, 5), (2, 11, 5), (3, 12, 5)]) == [[1, 2, 3]]
    # a second count of a location starts a new group
    assert groups([(1, 10, 5), (2, 11, 5), (3, 10, 5), (4, 12, 5)]) == [[1, 2], [3, 4]]
    # a group holds at most GROUP_LINES lines; a larger count is a group of its own
    assert groups([(1, 10, limit - 1), (2, 11, 2), (3, 12, limit + 7), (4, 13, 0)]) == [
        [1],
        [2],
        [3],
        [4],
    ]
    assert groups([(1, 10, limit // 2), (2, 11, limit // 2), (3, 12, 1)]) == [[1, 2], [3]]


def test_line_counts_are_filled_for_the_counts_there_are(stores, sku_a, sku_b):
    """Migration 0007's fill, and the column's database default (the release before, still
    running during a deploy, writes counts without it)."""
    from importlib import import_module

    from django.apps import apps

    fill = import_module("inventory.migrations.0007_count_line_count").fill
    two = count(stores[1], (sku_a, 1), (sku_b, 2))
    one = count(stores[2], (sku_a, 1))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {StockCount._meta.db_table} (location_id, kind, status, reason, "
            "reference, source, counted_at) VALUES (%s, 'physical', 'requested', '', '', '', "
            "NULL) RETURNING id",
            [stores[0].pk],
        )
        older = cursor.fetchone()[0]
    StockCount.objects.update(line_count=0)

    fill(apps, None)

    assert dict(StockCount.objects.values_list("pk", "line_count")) == {
        two.pk: 2,
        one.pk: 1,
        older: 0,
    }


def test_the_pending_counts_oldest_first_with_their_stored_line_counts(stores, sku_a, sku_b):
    warehouse, north, _south = stores
    later = count(north, (sku_a, 1), (sku_b, 2), hour=3)
    earlier = count(warehouse, (sku_a, 1), hour=2)
    stock_count_cancel(count=count(north, (sku_b, 1), hour=1))

    assert count_services._pending_counts() == [
        (earlier.pk, warehouse.pk, 1),
        (later.pk, north.pk, 2),
    ]


def test_a_run_reconciles_counts_in_groups(stores, sku_a, sku_b, monkeypatch):
    """Three stores' counts, two lines a group: the same findings as one group."""
    warehouse, north, south = stores
    CountTolerance.objects.create(max_units=1)
    for store in stores:
        post(store, ("ra", sku_a, "receipt", 10, 0), ("rb", sku_b, "receipt", 4, 0))
        count(store, (sku_a, 9), (sku_b, 7))
    with transaction.atomic():
        one_group = stock_reconcile(trigger="test")
        expected = snapshot()
        transaction.set_rollback(True)
    calls = []
    real = count_services._reconcile_counts
    monkeypatch.setattr(count_services, "GROUP_LINES", 2)
    monkeypatch.setattr(
        count_services,
        "_reconcile_counts",
        lambda ids, run, tolerances: calls.append(len(ids)) or real(ids, run, tolerances),
    )

    run = stock_reconcile(trigger="test")

    assert calls == [1, 1, 1]
    assert snapshot() == expected
    figures = ("counts_processed", "lines_compared", "discrepancies_found", "auto_applied")
    assert [getattr(run, f) for f in figures] == [getattr(one_group, f) for f in figures]
    assert [getattr(run, f) for f in figures] == [3, 6, 6, 3]
    assert level(north, sku_a) == (9, 0)
    assert OutboxEvent.objects.filter(type="inventory.count_discrepancies").count() == 3


def test_the_expected_quantities_are_written_in_place(stores):
    """Count lines are stored half full, so reconciliation's write of every line's expected
    quantity stays on the line's page (no index touched). 400 lines fill three full pages;
    in full pages most rows would move."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s",
            [StockCountLine._meta.db_table],
        )
        assert cursor.fetchone()[0] == ["fillfactor=50"]
    variants = VariantFactory.create_batch(400)
    for n, variant in enumerate(variants):
        stock_receive(location=stores[1], variant=variant, quantity=5, reference=f"r{n}")
    submitted = stock_count_submit(
        location=stores[1],
        counted_at=timezone.now(),
        lines=[{"sku": v.sku, "quantity": 5} for v in variants],
    )

    def pages():
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, (ctid::text::point)[0] FROM {StockCountLine._meta.db_table} "
                "WHERE count_id = %s",
                [submitted.pk],
            )
            return dict(cursor.fetchall())

    before = pages()
    assert len(set(before.values())) > 1

    run = stock_reconcile(trigger="test")

    assert (run.lines_compared, run.discrepancies_found) == (400, 0)
    assert set(submitted.lines.values_list("expected_quantity", flat=True)) == {5}
    assert pages() == before


def test_stock_rows_have_room_to_be_updated_in_place(stores):
    """Stock rows are stored with a tenth of each page free, so a run that moves on hand for a
    few percent of the rows (as a count's corrections do) leaves them on their pages. In full
    pages every one of them would move, and be written again to each index."""
    table = StockLevel._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        assert cursor.fetchone()[0] == ["fillfactor=90"]
    StockLevel.objects.bulk_create(
        StockLevel(location=stores[1], variant=v, on_hand=5)
        for v in VariantFactory.create_batch(400)
    )
    rows = list(StockLevel.objects.order_by("pk").values_list("pk", flat=True))
    moved = rows[::20]

    def pages():
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, (ctid::text::point)[0] FROM {table} WHERE id = ANY(%s)", [moved]
            )
            return dict(cursor.fetchall())

    before = pages()
    assert len(set(before.values())) > 1

    StockLevel.objects.filter(pk__in=moved).update(on_hand=F("on_hand") + 1)

    assert pages() == before


def test_the_stock_tables_keep_no_index_of_a_foreign_key_alone():
    """Each index is written by every new ledger line and every stock row that moves page: the
    foreign keys' own indexes are left out where another index starts with the column."""
    singles = set()
    with connection.cursor() as cursor:
        for model in (StockLevel, StockMovement):
            constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
            singles |= {
                (model.__name__, c["columns"][0])
                for c in constraints.values()
                if c["index"] and len(c["columns"]) == 1
            }
            leading = {c["columns"][0] for c in constraints.values() if c["index"] or c["unique"]}
            assert {"location_id", "variant_id"} <= leading
    assert singles == {
        ("StockMovement", "actor_id"),
        ("StockMovement", "channel_id"),
        ("StockMovement", "reference"),
    }


# --- Review ------------------------------------------------------------------------------------


def test_approve_applies_exactly_the_difference_once(
    stores, sku_a, staff_user, django_capture_on_commit_callbacks
):
    _warehouse, north, _south = stores
    post(north, ("r", sku_a, "receipt", 10, 0))
    submitted = count(north, (sku_a, 7))
    stock_reconcile(trigger="test")
    post(north, ("s", sku_a, "sale", 2, 3), batch="after")
    pending = Discrepancy.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        approved = discrepancy_approve(discrepancy=pending, actor=staff_user)

    assert (approved.status, approved.resolved_by) == ("approved", staff_user)
    movement = approved.movement
    assert (movement.kind, movement.quantity, movement.actor) == (
        "count_correction",
        -3,
        staff_user,
    )
    assert movement.idempotency_key == f"count-line:{submitted.lines.get().pk}"
    assert level(north, sku_a) == (5, 0)
    assert ChannelAvailability.objects.get(variant=sku_a, channel__code="web").quantity == 5

    with pytest.raises(Conflict) as exc:
        discrepancy_approve(discrepancy=pending)
    assert exc.value.code == "already_resolved"
    with pytest.raises(Conflict) as exc:
        discrepancy_reject(discrepancy=pending)
    assert exc.value.code == "already_resolved"
    assert StockMovement.objects.filter(kind="count_correction").count() == 1
    assert level(north, sku_a) == (5, 0)


def test_an_approved_difference_is_not_found_again_by_a_later_count(stores, sku_a, staff_user):
    """The ledger says 8, the shelf holds 10. A first count (no tolerance) waits for review; a
    second, counted later, waits to be reconciled when the first is approved. The approved
    correction is dated at the first count's time, so the second count finds nothing."""
    _warehouse, north, _south = stores
    post(north, ("r", sku_a, "receipt", 8, 0))
    first = count(north, (sku_a, 10), hour=2)
    stock_reconcile(trigger="test")
    second = count(north, (sku_a, 10), hour=3)

    approved = discrepancy_approve(discrepancy=Discrepancy.objects.get(), actor=staff_user)
    run = stock_reconcile(trigger="test")

    assert (approved.movement.quantity, approved.movement.occurred_at) == (2, first.counted_at)
    assert approved.movement.reference == f"count #{first.pk}"
    assert (run.counts_processed, run.discrepancies_found) == (1, 0)
    assert second.lines.get().expected_quantity == 10
    assert level(north, sku_a) == (10, 0)


def test_reject_keeps_the_ledger(stores, sku_a, staff_user):
    _warehouse, north, _south = stores
    post(north, ("r", sku_a, "receipt", 10, 0))
    count(north, (sku_a, 7))
    stock_reconcile(trigger="test")
    pending = Discrepancy.objects.get()

    rejected = discrepancy_reject(discrepancy=pending, actor=staff_user)

    assert (rejected.status, rejected.resolved_by, rejected.movement) == (
        "rejected",
        staff_user,
        None,
    )
    assert level(north, sku_a) == (10, 0)
    with pytest.raises(Conflict) as exc:
        discrepancy_approve(discrepancy=pending)
    assert exc.value.code == "already_resolved"
    assert StockMovement.objects.filter(kind="count_correction").count() == 0


def test_auto_applied_and_repaired_findings_cannot_be_approved(stores, sku_a):
    CountTolerance.objects.create(max_units=1)
    post(stores[1], ("r", sku_a, "receipt", 10, 0))
    count(stores[1], (sku_a, 9))
    stock_reconcile(trigger="test")

    with pytest.raises(Conflict) as exc:
        discrepancy_approve(discrepancy=Discrepancy.objects.get())

    assert exc.value.code == "already_resolved"
    assert level(stores[1], sku_a) == (9, 0)


# --- Drift -------------------------------------------------------------------------------------


def test_on_hand_drift_is_repaired_and_reported(stores, sku_a, web, receive):
    warehouse, north, _south = stores
    receive(north, sku_a, 5)
    stock_reserve(channel=web, lines=[ReserveLine(variant=sku_a, quantity=2)], reference="O-1")
    StockLevel.objects.filter(location=north, variant=sku_a).update(on_hand=1)

    run = stock_reconcile(trigger="test")

    assert level(north, sku_a) == (5, 2)
    assert (run.on_hand_drift_repaired, run.reserved_drift_repaired) == (1, 0)
    found = Discrepancy.objects.get()
    assert (found.kind, found.status, found.expected, found.actual, found.difference) == (
        "on_hand_drift",
        "repaired",
        1,
        5,
        4,
    )
    assert found.resolved_at is not None
    # The drift was repaired before anything acted on it: the order kept its stock where it was.
    assert list(Reservation.objects.values_list("location__code", "quantity", "status")) == [
        ("north", 2, "active")
    ]
    assert not OutboxEvent.objects.filter(type__startswith="inventory.reservation_").exists()
    event = OutboxEvent.objects.get(type="inventory.drift_repaired")
    assert (event.subject_id, event.payload) == (str(run.pk), {"field": "on_hand", "rows": 1})


def test_reserved_drift_is_repaired_and_reported(stores, sku_a, web, receive):
    _warehouse, north, _south = stores
    receive(north, sku_a, 3)
    stock_reserve(channel=web, lines=[ReserveLine(variant=sku_a, quantity=1)], reference="O-1")
    StockLevel.objects.filter(location=north, variant=sku_a).update(reserved=5)

    run = stock_reconcile(trigger="test")

    assert level(north, sku_a) == (3, 1)
    assert (run.on_hand_drift_repaired, run.reserved_drift_repaired) == (0, 1)
    assert (run.reservations_resourced, run.reservations_flagged) == (0, 0)
    found = Discrepancy.objects.get()
    assert (found.kind, found.expected, found.actual, found.difference) == (
        "reserved_drift",
        5,
        1,
        -4,
    )
    assert list(Reservation.objects.values_list("location__code", "quantity", "status")) == [
        ("north", 1, "active")
    ]
    assert ChannelAvailability.objects.get(variant=sku_a, channel=web).quantity == 2


def test_units_held_where_reserved_says_zero_are_found_too(stores, sku_a, sku_b, web, receive):
    """The check reads only the rows with something reserved or held: a row held by an active
    reservation whose reserved fell to 0 is among them, and so is one reserved for nothing."""
    _warehouse, north, _south = stores
    receive(north, sku_a, 3)
    receive(north, sku_b, 3)
    stock_reserve(channel=web, lines=[ReserveLine(variant=sku_a, quantity=2)], reference="O-1")
    StockLevel.objects.filter(location=north, variant=sku_a).update(reserved=0)
    StockLevel.objects.filter(location=north, variant=sku_b).update(reserved=1)

    run = stock_reconcile(trigger="test")

    assert (level(north, sku_a), level(north, sku_b)) == ((3, 2), (3, 0))
    assert run.reserved_drift_repaired == 2
    assert sorted(
        Discrepancy.objects.values_list("variant__sku", "expected", "actual", "difference")
    ) == [(sku_a.sku, 0, 2, 2), (sku_b.sku, 1, 0, -1)]


def test_a_count_is_compared_with_the_ledger_not_a_drifted_on_hand(stores, sku_a):
    _warehouse, north, _south = stores
    CountTolerance.objects.create(max_units=1)
    post(north, ("r", sku_a, "receipt", 10, 0))
    count(north, (sku_a, 9))
    StockLevel.objects.filter(location=north, variant=sku_a).update(on_hand=F("on_hand") + 3)

    stock_reconcile(trigger="test")

    assert level(north, sku_a) == (9, 0)
    assert sorted(
        Discrepancy.objects.values_list("kind", "status", "expected", "actual", "difference")
    ) == [("count", "auto_applied", 10, 9, -1), ("on_hand_drift", "repaired", 13, 10, -3)]


# --- Whole runs --------------------------------------------------------------------------------


@pytest.fixture
def messy(stores, sku_a, sku_b, web, receive):
    """Three counts, an expired checkout hold, a sale that broke a reservation, drift and a
    stale availability row: everything a run has to deal with."""
    warehouse, north, south = stores
    CountTolerance.objects.create(max_units=1)
    for location in stores:
        post(location, ("ra", sku_a, "receipt", 10, 0), ("rb", sku_b, "receipt", 6, 0))
    count(warehouse, (sku_a, 9), (sku_b, 6))  # one within tolerance
    count(north, (sku_a, 6))  # beyond: pending
    count(south, (sku_b, 5), (sku_a, 10))
    stock_reserve(
        channel=web,
        kind="checkout_hold",
        lines=[ReserveLine(variant=sku_b, quantity=2)],
        reference="CART-1",
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    stock_reserve(
        channel=web,
        lines=[ReserveLine(variant=sku_a, quantity=3, location=north)],
        reference="PICKUP-1",
    )
    stock_reserve(channel=web, lines=[ReserveLine(variant=sku_a, quantity=2)], reference="ORDER-1")
    # A counter sale whose after-commit mending never ran (the worker died).
    stock_sell(location=warehouse, variant=sku_a, quantity=9)
    StockLevel.objects.filter(location=south, variant=sku_b).update(on_hand=F("on_hand") + 2)
    ChannelAvailability.objects.update_or_create(
        variant=sku_b, channel=web, defaults={"quantity": 99, "updated_at": timezone.now()}
    )


def test_a_run_does_everything_and_reports_its_figures(messy, stores, sku_a, sku_b, web):
    warehouse, north, south = stores

    run = stock_reconcile(trigger="test")

    assert run.status == "succeeded"
    assert run.finished_at >= run.started_at
    figures = {
        field: getattr(run, field)
        for field in (
            "counts_processed",
            "lines_compared",
            "discrepancies_found",
            "auto_applied",
            "pending_review",
            "reservations_expired",
            "reservations_resourced",
            "reservations_flagged",
            "on_hand_drift_repaired",
            "reserved_drift_repaired",
        )
    }
    assert figures == {
        "counts_processed": 3,
        "lines_compared": 5,
        "discrepancies_found": 3,
        "auto_applied": 2,
        "pending_review": 1,
        "reservations_expired": 1,
        "reservations_resourced": 2,
        "reservations_flagged": 0,
        "on_hand_drift_repaired": 1,
        "reserved_drift_repaired": 0,
    }
    # Two availability rows were rewritten.
    assert run.availability_updated == 2
    assert level(warehouse, sku_a) == (0, 0)
    # The order the warehouse's counter sale broke moved to the next location by priority.
    assert level(north, sku_a) == (10, 3 + 2)
    assert level(south, sku_a) == (10, 0)
    assert level(south, sku_b) == (5, 0)
    assert Reservation.objects.get(reference="CART-1").status == "expired"
    assert ChannelAvailability.objects.get(variant=sku_b, channel=web).quantity == 6 + 6 + 5


def test_a_second_run_finds_nothing_new_and_writes_nothing(messy):
    stock_reconcile(trigger="test")
    before = snapshot()
    events = OutboxEvent.objects.count()

    again = stock_reconcile(trigger="test")

    assert again.status == "succeeded"
    assert (
        again.counts_processed,
        again.discrepancies_found,
        again.reservations_expired,
        again.reservations_resourced,
        again.reservations_flagged,
        again.on_hand_drift_repaired,
        again.reserved_drift_repaired,
        again.availability_updated,
    ) == (0, 0, 0, 0, 0, 0, 0, 0)
    assert snapshot() == before
    assert OutboxEvent.objects.count() == events
    assert Discrepancy.objects.filter(run=again).count() == 0


def test_a_run_cut_short_and_run_again_ends_like_a_clean_run(messy, monkeypatch):
    start = snapshot()
    with transaction.atomic():  # a clean run on the same data, rolled back afterwards
        stock_reconcile(trigger="test")
        clean = snapshot()
        transaction.set_rollback(True)
    assert snapshot() == start != clean

    real = count_services._reconcile_counts
    calls = []

    def dies_on_the_second_group(count_ids, run, tolerances):
        calls.append(count_ids)
        if len(calls) == 2:
            raise RuntimeError("worker lost")
        return real(count_ids, run, tolerances)

    monkeypatch.setattr(count_services, "GROUP_LINES", 1)  # a group per count
    monkeypatch.setattr(count_services, "_reconcile_counts", dies_on_the_second_group)
    with pytest.raises(RuntimeError):
        stock_reconcile(trigger="test")
    failed = ReconciliationRun.objects.get()
    assert (failed.status, failed.error, failed.counts_processed) == (
        "failed",
        "RuntimeError: worker lost",
        1,
    )
    assert failed.finished_at is not None
    assert snapshot() not in (start, clean)

    monkeypatch.setattr(count_services, "_reconcile_counts", real)
    again = stock_reconcile(trigger="test")

    assert (again.status, again.counts_processed) == ("succeeded", 2)
    assert snapshot() == clean


# --- Concurrency -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_count_is_reconciled_while_a_sale_at_its_store_is_in_flight():
    """A sale on zero of another item at the counted store (it asks the store for a count),
    not yet committed, must not make the run skip the count."""
    store = LocationFactory(code="busy-store")
    counted = VariantFactory(sku="BUSY-COUNTED")
    selling = VariantFactory(sku="BUSY-SELLING")
    stock_receive(location=store, variant=counted, quantity=5)
    stock_receive(location=store, variant=selling, quantity=5)
    stock_count_submit(
        location=store, counted_at=timezone.now(), lines=[{"sku": counted.sku, "quantity": 4}]
    )
    in_flight, done = threading.Event(), threading.Event()
    errors = []

    def sale():
        try:
            with transaction.atomic():
                stock_sell(location=store, variant=selling, quantity=6)
                in_flight.set()
                assert done.wait(timeout=20)
        except BaseException as exc:
            errors.append(exc)
            in_flight.set()
        finally:
            connection.close()

    thread = threading.Thread(target=sale)
    thread.start()
    try:
        assert in_flight.wait(timeout=20)
        run = stock_reconcile(trigger="test")
    finally:
        done.set()
        thread.join(timeout=20)

    assert errors == []
    assert (run.counts_processed, run.pending_review) == (1, 1)
    assert StockLevel.objects.get(variant=selling).on_hand == -1
    assert list(StockCount.objects.values_list("status", flat=True).order_by("pk")) == [
        "reconciled",
        "requested",
    ]
