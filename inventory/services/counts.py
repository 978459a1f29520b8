"""Stock counts, reconciliation against the ledger, and the review of discrepancies."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from inventory.models import (
    CountKind,
    CountStatus,
    CountTolerance,
    Discrepancy,
    DiscrepancyKind,
    DiscrepancyStatus,
    Location,
    MovementKind,
    ReconciliationRun,
    Reservation,
    ReservationStatus,
    RunStatus,
    StockCount,
    StockCountLine,
    StockLevel,
    StockMovement,
)
from omni.exceptions import Conflict, OmniError, ValidationFailed
from omni.services import outbox_emit

from .availability import availability_refresh
from .common import Move, after_commit_refresh, resolve_variant, stock_level_lock, write_moves
from .reservations import broken_pairs, reservations_expire, reservations_resource
from .stock import _parse_time

RECONCILE_SOURCE = "reconcile"
DRIFT_BATCH = 50_000


@transaction.atomic
def stock_count_submit(
    *,
    location: Location,
    counted_at,
    lines: list[dict],
    kind: str = CountKind.PHYSICAL,
    reference: str = "",
    source: str = "admin",
    actor=None,
) -> StockCount:
    """Record what was counted at ``location`` at ``counted_at``: ``lines`` of ``{"sku" or
    "variant", "quantity"}``. Fills the location's open count request if there is one.
    Reconciliation compares it with the ledger later."""
    now = timezone.now()
    moment, error = _parse_time(counted_at, now)
    if error or counted_at in (None, ""):
        raise ValidationFailed(
            f"When was it counted? {error or 'Required.'}",
            extra={"counted_at": [error or "Required."]},
        )
    if kind not in CountKind.values:
        raise ValidationFailed(f"Unknown count kind {kind!r}.", extra={"kind": ["Invalid."]})
    if not lines:
        raise ValidationFailed("A count needs at least one line.", extra={"lines": ["Required."]})
    errors, resolved, seen = {}, [], {}
    for index, line in enumerate(lines):
        try:
            variant = resolve_variant(line.get("variant") or line.get("sku") or "")
        except OmniError as exc:
            errors[str(index)] = exc.extra or {"sku": [exc.message]}
            continue
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            errors[str(index)] = {"quantity": ["A whole number, 0 or more."]}
            continue
        if variant.pk in seen:
            errors[str(index)] = {"sku": [f"{variant.sku} is counted on line {seen[variant.pk]}."]}
            continue
        seen[variant.pk] = index
        resolved.append((variant, quantity))
    if errors:
        raise ValidationFailed(
            f"{len(errors)} count lines are invalid; nothing was recorded.",
            extra={"lines": errors},
        )
    if not location.is_active:
        raise ValidationFailed(f"Location {location.code} is inactive.", code="location_inactive")
    count = (
        StockCount.objects.select_for_update()
        .filter(location=location, status=CountStatus.REQUESTED)
        .first()
    )
    if count is None:
        count = StockCount(location=location)
    count.kind = kind
    count.status = CountStatus.SUBMITTED
    count.counted_at = moment
    count.submitted_at = now
    count.reference = (reference or "")[:120]
    count.source = source
    count.submitted_by = actor if getattr(actor, "pk", None) else None
    count.save()
    StockCountLine.objects.bulk_create(
        [StockCountLine(count=count, variant=v, counted_quantity=q) for v, q in resolved],
        batch_size=2000,
    )
    Location.objects.filter(pk=location.pk).update(count_requested_at=None)
    return count


@transaction.atomic
def stock_count_cancel(*, count: StockCount) -> StockCount:
    count = StockCount.objects.select_for_update().get(pk=count.pk)
    if count.status not in (CountStatus.REQUESTED, CountStatus.SUBMITTED):
        raise Conflict(f"Count #{count.pk} is {count.get_status_display().lower()} already.")
    count.status = CountStatus.CANCELLED
    count.save(update_fields=["status"])
    if not StockCount.objects.filter(location=count.location, status=CountStatus.REQUESTED):
        Location.objects.filter(pk=count.location_id).update(count_requested_at=None)
    return count


def _tolerances() -> tuple[CountTolerance | None, dict[int, CountTolerance]]:
    general, by_location = None, {}
    for tolerance in CountTolerance.objects.all():
        if tolerance.location_id is None:
            general = tolerance
        else:
            by_location[tolerance.location_id] = tolerance
    return general, by_location


def within_tolerance(tolerance: CountTolerance | None, expected: int, difference: int) -> bool:
    if tolerance is None or difference == 0:
        return difference == 0
    size = abs(difference)
    if size <= tolerance.max_units:
        return True
    return expected > 0 and Decimal(size) * 100 <= tolerance.max_percent * expected


@dataclass
class CountResult:
    lines: int = 0
    discrepancies: int = 0
    auto_applied: int = 0
    pending: int = 0


def _reconcile_count(count_id: int, run: ReconciliationRun, tolerances) -> CountResult | None:
    """One count against the ledger, in one transaction: done wholly or not at all."""
    result = CountResult()
    with transaction.atomic():
        count = (
            StockCount.objects.select_for_update(skip_locked=True)
            .filter(pk=count_id, status=CountStatus.SUBMITTED)
            .select_related("location")
            .first()
        )
        if count is None:  # another run took it, or it is done
            return None
        lines = list(count.lines.all())
        pairs = [(count.location_id, line.variant_id) for line in lines]
        rows = stock_level_lock(pairs, create_missing=True)
        # What the ledger held at the count time: now, less what moved since.
        since = dict(
            StockMovement.objects.filter(
                location_id=count.location_id,
                variant_id__in=[line.variant_id for line in lines],
                occurred_at__gt=count.counted_at,
            )
            .values("variant_id")
            .annotate(total=Sum("quantity"))
            .values_list("variant_id", "total")
        )
        general, by_location = tolerances
        tolerance = by_location.get(count.location_id, general)
        moves, discrepancies = [], []
        for line in lines:
            row = rows[(count.location_id, line.variant_id)]
            line.expected_quantity = row.on_hand - since.get(line.variant_id, 0)
            difference = line.counted_quantity - line.expected_quantity
            result.lines += 1
            if difference == 0:
                continue
            auto = within_tolerance(tolerance, line.expected_quantity, difference)
            discrepancies.append(
                Discrepancy(
                    run=run,
                    kind=DiscrepancyKind.COUNT,
                    status=DiscrepancyStatus.AUTO_APPLIED if auto else DiscrepancyStatus.PENDING,
                    location_id=count.location_id,
                    variant_id=line.variant_id,
                    count_line=line,
                    expected=line.expected_quantity,
                    actual=line.counted_quantity,
                    difference=difference,
                    resolved_at=timezone.now() if auto else None,
                )
            )
            if auto:
                moves.append(_correction(count, line, difference))
        StockCountLine.objects.bulk_update(lines, ["expected_quantity"], batch_size=2000)
        movements = write_moves(moves, source=RECONCILE_SOURCE)
        by_key = {m.idempotency_key: m for m in movements}
        for discrepancy in discrepancies:
            if discrepancy.status == DiscrepancyStatus.AUTO_APPLIED:
                discrepancy.movement = by_key[_correction_key(discrepancy.count_line)]
        Discrepancy.objects.bulk_create(discrepancies, batch_size=2000)
        result.discrepancies = len(discrepancies)
        result.auto_applied = len(moves)
        result.pending = result.discrepancies - result.auto_applied
        count.status = CountStatus.RECONCILED
        count.reconciled_at = timezone.now()
        count.run = run
        count.save(update_fields=["status", "reconciled_at", "run"])
        if result.pending:
            outbox_emit(
                type="inventory.count_discrepancies",
                subject_type="stock_count",
                subject_id=count.pk,
                payload={"location": count.location.code, "pending": result.pending},
            )
        after_commit_refresh(line.variant_id for line in lines)
    return result


def _correction_key(line: StockCountLine) -> str:
    return f"count-line:{line.pk}"


def _correction(count: StockCount, line: StockCountLine, difference: int) -> Move:
    return Move(
        location_id=count.location_id,
        variant_id=line.variant_id,
        kind=MovementKind.COUNT_CORRECTION,
        quantity=difference,
        reference=f"count #{count.pk}",
        reason="Count difference",
        idempotency_key=_correction_key(line),
    )


def _ledger_sum():
    return Coalesce(
        Subquery(
            StockMovement.objects.filter(
                location_id=OuterRef("location_id"), variant_id=OuterRef("variant_id")
            )
            .order_by()
            .values("location_id")
            .annotate(total=Sum("quantity"))
            .values("total"),
            output_field=IntegerField(),
        ),
        Value(0),
    )


def _reserved_sum():
    return Coalesce(
        Subquery(
            Reservation.objects.filter(
                location_id=OuterRef("location_id"),
                variant_id=OuterRef("variant_id"),
                status=ReservationStatus.ACTIVE,
            )
            .order_by()
            .values("location_id")
            .annotate(total=Sum("quantity"))
            .values("total"),
            output_field=IntegerField(),
        ),
        Value(0),
    )


def _repair_drift(run: ReconciliationRun, field: str, kind: str, truth) -> int:
    """Find stock rows whose ``field`` differs from ``truth`` (set-based, by primary-key range),
    set them to it under lock, and record each repair as a discrepancy. Idempotent."""
    repaired = 0
    last = 0
    top = StockLevel.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    while last < top:
        upper = last + DRIFT_BATCH
        suspects = list(
            StockLevel.objects.filter(pk__gt=last, pk__lte=upper)
            .alias(truth=truth)
            .filter(~Q(**{field: F("truth")}))
            .values_list("location_id", "variant_id")
        )
        last = upper
        if not suspects:
            continue
        with transaction.atomic():
            rows = stock_level_lock(suspects)
            current = StockLevel.objects.filter(pk__in=[r.pk for r in rows.values()]).annotate(
                truth=truth
            )
            fixes, discrepancies = [], []
            for row in current:
                actual = getattr(row, field)
                if actual == row.truth:
                    continue
                discrepancies.append(
                    Discrepancy(
                        run=run,
                        kind=kind,
                        status=DiscrepancyStatus.REPAIRED,
                        location_id=row.location_id,
                        variant_id=row.variant_id,
                        expected=actual,
                        actual=row.truth,
                        difference=row.truth - actual,
                        resolved_at=timezone.now(),
                    )
                )
                setattr(row, field, row.truth)
                fixes.append(row)
            StockLevel.objects.bulk_update(fixes, [field], batch_size=2000)
            Discrepancy.objects.bulk_create(discrepancies, batch_size=2000)
            if fixes:
                outbox_emit(
                    type="inventory.drift_repaired",
                    subject_type="reconciliation_run",
                    subject_id=run.pk,
                    payload={"field": field, "rows": len(fixes)},
                )
                after_commit_refresh(row.variant_id for row in fixes)
            repaired += len(fixes)
    return repaired


def stock_reconcile(*, trigger: str = "schedule", progress=None) -> ReconciliationRun:
    """The reconciliation run (every 15 minutes, or on demand).

    1. release checkout holds past their expiry; 2. compare each submitted count with the
    ledger at its count time, record discrepancies, apply those within tolerance as count
    corrections and leave the rest for review; 3. mend reservations that sales broke;
    4. check ``on_hand == sum of movements`` and ``reserved == sum of active reservations``,
    repairing and reporting any drift; 5. recompute channel availability. Each step commits in
    small transactions and is idempotent, so a run cut short and run again ends as a clean run.
    """
    say = progress or (lambda message: None)
    run = ReconciliationRun.objects.create(trigger=trigger[:40], started_at=timezone.now())
    try:
        say("Releasing expired checkout holds")
        while expired := reservations_expire():
            run.reservations_expired += expired
        pending = list(
            StockCount.objects.filter(status=CountStatus.SUBMITTED)
            .order_by("submitted_at", "pk")
            .values_list("pk", flat=True)
        )
        tolerances = _tolerances()
        for number, count_id in enumerate(pending, 1):
            say(f"Count {number}/{len(pending)}")
            result = _reconcile_count(count_id, run, tolerances)
            if result is None:
                continue
            run.counts_processed += 1
            run.lines_compared += result.lines
            run.discrepancies_found += result.discrepancies
            run.auto_applied += result.auto_applied
            run.pending_review += result.pending
        say("Mending reservations broken by sales")
        broken = broken_pairs()
        if broken:
            mended = reservations_resource(variant_ids={v for _, v in broken})
            run.reservations_resourced = mended.moved
            run.reservations_flagged = mended.flagged
        say("Checking on hand against the ledger")
        run.on_hand_drift_repaired = _repair_drift(
            run, "on_hand", DiscrepancyKind.ON_HAND_DRIFT, _ledger_sum()
        )
        say("Checking reserved against reservations")
        run.reserved_drift_repaired = _repair_drift(
            run, "reserved", DiscrepancyKind.RESERVED_DRIFT, _reserved_sum()
        )
        say("Recomputing channel availability")
        run.availability_updated = availability_refresh().rows_written
        run.status = RunStatus.SUCCEEDED
    except Exception as exc:
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        run.finished_at = timezone.now()
        run.save()
    return run


@transaction.atomic
def discrepancy_approve(*, discrepancy: Discrepancy, actor=None) -> Discrepancy:
    """Apply a reviewed count difference to the ledger as a count correction."""
    discrepancy = _lock_pending(discrepancy)
    line = discrepancy.count_line
    movements = write_moves(
        [
            Move(
                location_id=discrepancy.location_id,
                variant_id=discrepancy.variant_id,
                kind=MovementKind.COUNT_CORRECTION,
                quantity=discrepancy.difference,
                reference=f"count #{line.count_id}",
                reason="Count difference approved",
                idempotency_key=_correction_key(line),
            )
        ],
        source=RECONCILE_SOURCE,
        actor=actor,
    )
    discrepancy.movement = movements[0]
    return _resolve(discrepancy, DiscrepancyStatus.APPROVED, actor)


@transaction.atomic
def discrepancy_reject(*, discrepancy: Discrepancy, actor=None) -> Discrepancy:
    """Keep the ledger as it is: the count was wrong."""
    return _resolve(_lock_pending(discrepancy), DiscrepancyStatus.REJECTED, actor)


def _lock_pending(discrepancy: Discrepancy) -> Discrepancy:
    stock_level_lock([(discrepancy.location_id, discrepancy.variant_id)], create_missing=True)
    locked = (
        Discrepancy.objects.select_for_update().select_related("count_line").get(pk=discrepancy.pk)
    )
    if locked.status != DiscrepancyStatus.PENDING:
        raise Conflict(
            f"Discrepancy #{locked.pk} is {locked.get_status_display().lower()} already.",
            code="already_resolved",
        )
    return locked


def _resolve(discrepancy: Discrepancy, status: str, actor) -> Discrepancy:
    discrepancy.status = status
    discrepancy.resolved_by = actor if getattr(actor, "pk", None) else None
    discrepancy.resolved_at = timezone.now()
    discrepancy.save(update_fields=["status", "resolved_by", "resolved_at", "movement"])
    after_commit_refresh([discrepancy.variant_id])
    return discrepancy


def count_differences_by_location() -> dict[int, int]:
    """Pending discrepancies per location (for dashboards)."""
    return dict(
        Discrepancy.objects.filter(status=DiscrepancyStatus.PENDING)
        .values("location_id")
        .annotate(n=Count("id"))
        .values_list("location_id", "n")
    )
