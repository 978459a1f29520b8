"""Stock counts, reconciliation against the ledger, and the review of discrepancies."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, IntegerField, OuterRef, Q, Subquery, Sum, Value
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
    ReservationStatus,
    RunStatus,
    StockCount,
    StockCountLine,
    StockLevel,
    StockMovement,
)
from omni.db import bulk_update_values
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.formats import parse_past_time
from omni.services import outbox_emit

from .availability import availability_refresh
from .common import (
    MAX_QUANTITY,
    Move,
    after_commit_refresh,
    stock_level_lock,
    variant_of,
    variants_by_sku,
    write_moves,
)
from .reservations import broken_pairs, reservations_expire, reservations_resource

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
    moment, error = parse_past_time(counted_at, now)
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
    # Every SKU in one query: a POS snapshot has thousands of lines.
    given = [line.get("variant") or line.get("sku") or "" for line in lines]
    variants = variants_by_sku(given)
    for index, (line, value) in enumerate(zip(lines, given, strict=True)):
        try:
            variant = variant_of(variants, value)
        except NotFound as exc:
            errors[str(index)] = exc.extra
            continue
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            errors[str(index)] = {"quantity": ["A whole number, 0 or more."]}
            continue
        if quantity > MAX_QUANTITY:
            errors[str(index)] = {"quantity": [f"At most {MAX_QUANTITY:,}."]}
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
    for tolerance in CountTolerance.objects.order_by("-pk"):  # the oldest general rule wins
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
        # Only the count row (``of``): locking the joined location too would skip the count
        # whenever another transaction has written the location row (a sale on zero asking
        # for a count), and would hold up the commit of every movement at that store (their
        # deferred foreign-key checks take a key-share lock on the location) meanwhile.
        count = (
            StockCount.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=count_id, status=CountStatus.SUBMITTED)
            .select_related("location")
            .first()
        )
        if count is None:  # another run took it, or it is done
            return None
        lines = StockCountLine.objects.filter(count=count)
        # What the ledger held at the count time, for every line in one statement (so one
        # snapshot): on hand now, less what moved since. No stock row is locked: the
        # corrections below are differences against that moment, added to whatever on hand
        # is by then, so sales meanwhile are neither lost nor counted twice.
        on_hand_now = Subquery(
            StockLevel.objects.filter(
                location_id=count.location_id, variant_id=OuterRef("variant_id")
            ).values("on_hand")[:1]
        )
        moved_since = Subquery(
            StockMovement.objects.filter(
                location_id=count.location_id,
                variant_id=OuterRef("variant_id"),
                occurred_at__gt=count.counted_at,
            )
            .order_by()
            .values("variant_id")
            .annotate(total=Sum("quantity"))
            .values("total"),
            output_field=IntegerField(),
        )
        result.lines = lines.update(
            expected_quantity=Coalesce(on_hand_now, Value(0)) - Coalesce(moved_since, Value(0))
        )
        differing = list(
            lines.exclude(counted_quantity=F("expected_quantity"))
            .order_by("pk")
            .values_list("pk", "variant_id", "expected_quantity", "counted_quantity")
        )
        general, by_location = tolerances
        tolerance = by_location.get(count.location_id, general)
        now = timezone.now()
        moves, discrepancies = [], []
        for line_id, variant_id, expected, counted in differing:
            difference = counted - expected
            auto = within_tolerance(tolerance, expected, difference)
            discrepancies.append(
                Discrepancy(
                    run=run,
                    kind=DiscrepancyKind.COUNT,
                    status=DiscrepancyStatus.AUTO_APPLIED if auto else DiscrepancyStatus.PENDING,
                    location_id=count.location_id,
                    variant_id=variant_id,
                    count_line_id=line_id,
                    expected=expected,
                    actual=counted,
                    difference=difference,
                    resolved_at=now if auto else None,
                )
            )
            if auto:
                moves.append(_correction(count, line_id, variant_id, difference))
        movements = write_moves(moves, source=RECONCILE_SOURCE)
        by_key = {m.idempotency_key: m for m in movements}
        for discrepancy in discrepancies:
            if discrepancy.status == DiscrepancyStatus.AUTO_APPLIED:
                discrepancy.movement = by_key[_correction_key(discrepancy.count_line_id)]
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
        after_commit_refresh(m.variant_id for m in moves)
    return result


def _correction_key(line_id: int) -> str:
    return f"count-line:{line_id}"


def _correction(count: StockCount, line_id: int, variant_id: int, difference: int) -> Move:
    return Move(
        location_id=count.location_id,
        variant_id=variant_id,
        kind=MovementKind.COUNT_CORRECTION,
        quantity=difference,
        reference=f"count #{count.pk}",
        reason="Count difference",
        idempotency_key=_correction_key(line_id),
    )


def _ledger_sum():
    """A stock row's ledger total: summed over the rows joined on (location, variant)."""
    return Coalesce(Sum("ledger__quantity"), Value(0))


def _reserved_sum():
    return Coalesce(
        Sum("holds__quantity", filter=Q(holds__status=ReservationStatus.ACTIVE)), Value(0)
    )


def _drift_suspects(field: str, truth) -> list[tuple[int, int]]:
    """Stock rows whose ``field`` differs from ``truth``: one grouped join over the whole
    table (a hash join and aggregate in PostgreSQL; no per-row subquery), no locks."""
    return list(
        StockLevel.objects.values("pk", "location_id", "variant_id", field)
        .annotate(truth=truth)
        .exclude(**{field: F("truth")})
        .order_by()
        .values_list("location_id", "variant_id")
    )


def _repair_drift(run: ReconciliationRun, field: str, kind: str, truth) -> int:
    """Find the stock rows whose ``field`` differs from ``truth``, then, a batch at a time,
    lock them, check again under the lock, set them to it and record each repair as a
    discrepancy. Idempotent."""
    suspects = _drift_suspects(field, truth)
    repaired = 0
    for start in range(0, len(suspects), 2000):
        with transaction.atomic():
            rows = stock_level_lock(suspects[start : start + 2000])
            current = (
                StockLevel.objects.filter(pk__in=[r.pk for r in rows.values()])
                .values("pk", "location_id", "variant_id", field)
                .annotate(truth=truth)
                .order_by("pk")
            )
            fixes, discrepancies = [], []
            for row in current:
                actual = row[field]
                if actual == row["truth"]:
                    continue
                discrepancies.append(
                    Discrepancy(
                        run=run,
                        kind=kind,
                        status=DiscrepancyStatus.REPAIRED,
                        location_id=row["location_id"],
                        variant_id=row["variant_id"],
                        expected=actual,
                        actual=row["truth"],
                        difference=row["truth"] - actual,
                        resolved_at=timezone.now(),
                    )
                )
                fixes.append(
                    StockLevel(pk=row["pk"], variant_id=row["variant_id"], **{field: row["truth"]})
                )
            bulk_update_values(StockLevel, fixes, [field])
            Discrepancy.objects.bulk_create(discrepancies, batch_size=2000)
            if fixes:
                outbox_emit(
                    type="inventory.drift_repaired",
                    subject_type="reconciliation_run",
                    subject_id=run.pk,
                    payload={"field": field, "rows": len(fixes)},
                )
                after_commit_refresh(fix.variant_id for fix in fixes)
            repaired += len(fixes)
    return repaired


def stock_reconcile(*, trigger: str = "schedule", progress=None) -> ReconciliationRun:
    """The reconciliation run (every 15 minutes, or on demand).

    1. release checkout holds past their expiry; 2. check ``on_hand == sum of movements`` and
    ``reserved == sum of active reservations``, repairing and reporting any drift (first, so
    that the later steps work from true figures: a count compared with a drifted ``on_hand``
    would record a wrong difference, and a drifted ``reserved`` would move reservations that
    nothing broke); 3. compare each submitted count with the ledger at its count time, record
    discrepancies, apply those within tolerance as count corrections and leave the rest for
    review; 4. mend reservations that sales (or corrections) broke; 5. recompute channel
    availability. Each step commits in small transactions and is idempotent, so a run cut short
    and run again ends as a clean run.
    """
    say = progress or (lambda message: None)
    run = ReconciliationRun.objects.create(trigger=trigger[:40], started_at=timezone.now())
    jit = _jit_off()
    try:
        say("Releasing expired checkout holds")
        while expired := reservations_expire():
            run.reservations_expired += expired
        say("Checking on hand against the ledger")
        run.on_hand_drift_repaired = _repair_drift(
            run, "on_hand", DiscrepancyKind.ON_HAND_DRIFT, _ledger_sum()
        )
        say("Checking reserved against reservations")
        run.reserved_drift_repaired = _repair_drift(
            run, "reserved", DiscrepancyKind.RESERVED_DRIFT, _reserved_sum()
        )
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
        say("Recomputing channel availability")
        run.availability_updated = availability_refresh().rows_written
        run.status = RunStatus.SUCCEEDED
    except Exception as exc:
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        _jit_restore(jit)
        run.finished_at = timezone.now()
        run.save()
    return run


def _jit_off():
    """PostgreSQL's JIT compiles each of reconciliation's big statements anew, which costs
    more (about 0.15 s a statement) than it saves; off for this session while it runs."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        previous = cursor.fetchone()[0]
        cursor.execute("SET jit = off")
    return previous


def _jit_restore(previous) -> None:
    if previous is None:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('jit', %s, false)", [previous])


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
                idempotency_key=_correction_key(line.pk),
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
    # ``of``: the count line is an outer join, which PostgreSQL refuses to lock.
    locked = (
        Discrepancy.objects.select_for_update(of=("self",))
        .select_related("count_line")
        .get(pk=discrepancy.pk)
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
