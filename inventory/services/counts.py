"""Stock counts, reconciliation against the ledger, and the review of discrepancies."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Q, Sum, Value
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
    count.line_count = len(resolved)
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
    counts: int = 0
    lines: int = 0
    discrepancies: int = 0
    auto_applied: int = 0
    pending: int = 0


# A group of counts is compared with the ledger in one transaction, by a few statements over
# all its lines: each statement reads the stock rows once for the whole group (a store's rows
# are spread over every page of the table, so a statement per count read the table once per
# count). Groups hold at most this many lines, and one count per location, so that the
# movements since each count time are those of its own location.
GROUP_LINES = 1_000_000
GROUP_WORK_MEM = "128MB"  # the group's stock rows hashed in memory (about 70 MB a million)


def _count_groups(pending: list[tuple[int, int, int]]) -> list[list[int]]:
    """Split ``(count, location, lines)`` in the order given into groups of at most
    ``GROUP_LINES`` lines (a larger count alone) with one count per location."""
    groups, group, locations, lines = [], [], set(), 0
    for count_id, location_id, size in pending:
        if group and (location_id in locations or lines + size > GROUP_LINES):
            groups.append(group)
            group, locations, lines = [], set(), 0
        group.append(count_id)
        locations.add(location_id)
        lines += size
    if group:
        groups.append(group)
    return groups


def _pending_counts() -> list[tuple[int, int, int]]:
    """The submitted counts, ``(count, location, lines)``, oldest count time first: a count
    is then compared with a ledger that holds the corrections of the earlier counts."""
    return list(
        StockCount.objects.filter(status=CountStatus.SUBMITTED)
        .order_by("counted_at", "pk")
        .values_list("pk", "location_id", "line_count")
    )


class _Sql:
    """The parts of a group's set-based statements, with the tables' real names."""

    DIFFERING = "reconcile_differing"  # a temporary table, the transaction's own

    def __init__(self, counts: list[StockCount], tolerances):
        q = connection.ops.quote_name
        self.line = q(StockCountLine._meta.db_table)
        self.count = q(StockCount._meta.db_table)
        self.level = q(StockLevel._meta.db_table)
        self.movement = q(StockMovement._meta.db_table)
        self.discrepancy = q(Discrepancy._meta.db_table)
        self.ids = ", ".join(["%s"] * len(counts))
        self.id_params = [c.pk for c in counts]
        self.locations = ", ".join(["%s"] * len(counts))
        self.location_params = [c.location_id for c in counts]
        self.earliest = min(c.counted_at for c in counts)
        # Within tolerance, as ``within_tolerance`` says: at most ``max_units`` off, or at most
        # ``max_percent`` of a positive expected quantity (compared in hundredths of a percent,
        # integers, so both databases compare exactly). No rule: nothing is applied unreviewed
        # (a comparison with NULL is not true).
        general, by_location = tolerances
        rules = [
            (c.location_id, by_location[c.location_id])
            for c in counts
            if c.location_id in by_location
        ]

        def per_location(value):
            cases = " ".join(["WHEN %s THEN %s"] * len(rules))
            sql = f"CASE c.location_id {cases} ELSE %s END" if rules else "%s"
            params = [v for location_id, rule in rules for v in (location_id, value(rule))]
            return f"CAST({sql} AS BIGINT)", [*params, value(general) if general else None]

        units, units_params = per_location(lambda rule: rule.max_units)
        hundredths, hundredths_params = per_location(lambda rule: int(rule.max_percent * 100))
        size = "CAST(abs(l.counted_quantity - l.expected_quantity) AS BIGINT)"
        self.auto = (
            f"CASE WHEN {size} <= {units} OR (l.expected_quantity > 0 "
            f"AND {size} * 10000 <= {hundredths} * l.expected_quantity) THEN 1 ELSE 0 END"
        )
        self.auto_params = units_params + hundredths_params


def _reconcile_counts(count_ids: list[int], run: ReconciliationRun, tolerances) -> CountResult:
    """A group of counts against the ledger, in one transaction: done wholly or not at all.

    Set-based: the expected quantity of every line in one statement (so one snapshot of the
    ledger); the lines that differ, with whether each is within tolerance, into a temporary
    table; from it the corrections, the stock they move and the discrepancies, a statement
    each. No stock row is locked to read: the corrections are differences against the count
    time, added to whatever on hand is by then, so sales meanwhile are neither lost nor counted
    twice. A correction is dated at its count time, so a later count of the same item sees it
    in the ledger and does not find the difference again.
    """
    result = CountResult()
    with transaction.atomic():
        # Only the count rows (``of``): locking the joined location too would skip a count
        # whenever another transaction has written the location row (a sale on zero asking
        # for a count), and would hold up the commit of every movement at that store (their
        # deferred foreign-key checks take a key-share lock on the location) meanwhile.
        counts = list(
            StockCount.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=count_ids, status=CountStatus.SUBMITTED)
            .select_related("location")
            .order_by("pk")
        )
        if not counts:  # another run took them, or they are done
            return result
        sql = _Sql(counts, tolerances)
        now = timezone.now()
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"SET LOCAL work_mem = '{GROUP_WORK_MEM}'")
            result.lines = _expected(cursor, sql)
            _differing(cursor, sql)
            result.auto_applied, moved = _apply_corrections(cursor, sql, now)
            d = sql.DIFFERING
            cursor.execute(
                f"INSERT INTO {sql.discrepancy} (run_id, kind, status, location_id, variant_id, "
                "count_line_id, expected, actual, difference, movement_id, resolved_at, "
                "created_at) "
                "SELECT %s, %s, CASE WHEN d.auto = 1 THEN %s ELSE %s END, d.location_id, "
                "d.variant_id, d.line_id, d.expected, d.counted, d.counted - d.expected, m.id, "
                "CASE WHEN d.auto = 1 THEN %s END, %s "
                f"FROM {d} d LEFT JOIN {sql.movement} m "
                "ON d.auto = 1 AND m.source = %s AND m.idempotency_key = %s || d.line_id",
                [
                    run.pk,
                    DiscrepancyKind.COUNT.value,
                    DiscrepancyStatus.AUTO_APPLIED.value,
                    DiscrepancyStatus.PENDING.value,
                    now,
                    now,
                    RECONCILE_SOURCE,
                    CORRECTION_KEY_PREFIX,
                ],
            )
            result.discrepancies = max(cursor.rowcount, 0)
            cursor.execute(f"SELECT count_id, COUNT(*) FROM {d} WHERE auto = 0 GROUP BY count_id")
            pending = dict(cursor.fetchall())
            cursor.execute(f"DROP TABLE {d}")
        result.pending = sum(pending.values())
        result.counts = len(counts)
        StockCount.objects.filter(pk__in=sql.id_params).update(
            status=CountStatus.RECONCILED, reconciled_at=timezone.now(), run=run
        )
        for count in counts:
            if pending.get(count.pk):
                outbox_emit(
                    type="inventory.count_discrepancies",
                    subject_type="stock_count",
                    subject_id=count.pk,
                    payload={"location": count.location.code, "pending": pending[count.pk]},
                )
        after_commit_refresh(variant_id for _location_id, variant_id in moved)
    return result


def _expected(cursor, sql: _Sql) -> int:
    """What the ledger held at the count time, for every line of the group: on hand now, less
    what moved at its location since. One statement, so one snapshot of the ledger; then the
    lines of items the location has no stock row for, the same way in one statement (whatever
    it sees, a row created meanwhile say, it sees whole)."""
    # The earliest count time as a constant too: the scan of the ledger drops the rows before
    # it itself, rather than handing every row to the join to compare with each count's time.
    since = (
        f"SELECT mv.location_id, mv.variant_id, SUM(mv.quantity) AS total "
        f"FROM {sql.movement} mv JOIN {sql.count} c2 ON c2.location_id = mv.location_id "
        f"AND mv.occurred_at > c2.counted_at WHERE c2.id IN ({sql.ids}) "
        "AND mv.occurred_at > %s GROUP BY mv.location_id, mv.variant_id"
    )
    line = sql.line
    # The lists of counts and locations are repeated for each table, so that the planner
    # knows how many rows of each the group reads (it does not carry them over the joins).
    cursor.execute(
        f"UPDATE {line} SET expected_quantity = s.on_hand - COALESCE(m.total, 0) "
        f"FROM {sql.count} c JOIN {sql.level} s ON s.location_id = c.location_id "
        f"LEFT JOIN ({since}) m ON m.location_id = s.location_id "
        "AND m.variant_id = s.variant_id "
        f"WHERE {line}.count_id = c.id AND c.id IN ({sql.ids}) "
        f"AND {line}.count_id IN ({sql.ids}) AND s.location_id IN ({sql.locations}) "
        f"AND s.variant_id = {line}.variant_id",
        sql.id_params + [sql.earliest] + sql.id_params * 2 + sql.location_params,
    )
    lines = max(cursor.rowcount, 0)
    cursor.execute(
        f"UPDATE {line} SET expected_quantity = "
        f"COALESCE((SELECT s.on_hand FROM {sql.level} s WHERE s.location_id = c.location_id "
        f"AND s.variant_id = {line}.variant_id), 0) - "
        f"COALESCE((SELECT SUM(mv.quantity) FROM {sql.movement} mv "
        f"WHERE mv.location_id = c.location_id AND mv.variant_id = {line}.variant_id "
        "AND mv.occurred_at > c.counted_at), 0) "
        f"FROM {sql.count} c WHERE {line}.count_id = c.id AND c.id IN ({sql.ids}) "
        f"AND {line}.count_id IN ({sql.ids}) AND {line}.expected_quantity IS NULL",
        sql.id_params * 2,
    )
    return lines + max(cursor.rowcount, 0)


def _differing(cursor, sql: _Sql) -> None:
    """The group's lines that differ from the ledger, into a temporary table (a few percent of
    the lines, read by each of the next statements), each marked within tolerance or not."""
    cursor.execute(
        f"CREATE TEMPORARY TABLE {sql.DIFFERING} AS "
        "SELECT l.id AS line_id, c.id AS count_id, c.location_id, l.variant_id, "
        "l.expected_quantity AS expected, l.counted_quantity AS counted, c.counted_at, "
        f"{sql.auto} AS auto "
        f"FROM {sql.line} l JOIN {sql.count} c ON c.id = l.count_id "
        f"WHERE c.id IN ({sql.ids}) AND l.count_id IN ({sql.ids}) "
        "AND l.counted_quantity <> l.expected_quantity",
        sql.auto_params + sql.id_params * 2,
    )
    if connection.vendor == "postgresql":
        cursor.execute(f"ANALYZE {sql.DIFFERING}")  # so the joins below know it is small


def _apply_corrections(cursor, sql: _Sql, now) -> tuple[int, list[tuple[int, int]]]:
    """Write the differences within tolerance to the ledger as count corrections, dated at the
    count time, and move on hand with them. Returns how many, and the stock rows moved as
    (location, variant)."""
    d, level = sql.DIFFERING, sql.level
    # The stock rows locked in primary-key order (the one lock order for stock rows: no
    # deadlock with reservations and sales), those of items counted where the ledger never
    # had them created empty after them, with the highest keys.
    cursor.execute(f"SELECT DISTINCT location_id, variant_id FROM {d} WHERE auto = 1")
    stock_level_lock(cursor.fetchall(), create_missing=True)
    cursor.execute(
        f"INSERT INTO {sql.movement} (location_id, variant_id, kind, quantity, source, "
        "reference, reason, idempotency_key, occurred_at, recorded_at) "
        "SELECT d.location_id, d.variant_id, %s, d.counted - d.expected, %s, %s || d.count_id, "
        f"%s, %s || d.line_id, d.counted_at, %s FROM {d} d WHERE d.auto = 1",
        [
            MovementKind.COUNT_CORRECTION.value,
            RECONCILE_SOURCE,
            CORRECTION_REFERENCE_PREFIX,
            "Count difference",
            CORRECTION_KEY_PREFIX,
            now,
        ],
    )
    applied = max(cursor.rowcount, 0)
    cursor.execute(
        f"UPDATE {level} SET on_hand = {level}.on_hand + t.difference, updated_at = %s "
        "FROM (SELECT location_id, variant_id, SUM(counted - expected) AS difference "
        f"FROM {d} WHERE auto = 1 GROUP BY location_id, variant_id) t "
        f"WHERE {level}.location_id = t.location_id AND {level}.variant_id = t.variant_id "
        f"RETURNING {level}.location_id, {level}.variant_id",
        [now],
    )
    return applied, cursor.fetchall()


# A count correction's idempotency key and reference, written by the reconciliation (in SQL,
# ``prefix || id``) and by an approval (``_correction``).
CORRECTION_KEY_PREFIX = "count-line:"
CORRECTION_REFERENCE_PREFIX = "count #"


def _correction(line: StockCountLine, difference: int, reason: str) -> Move:
    """The count correction of ``line``, dated at its count time."""
    return Move(
        location_id=line.count.location_id,
        variant_id=line.variant_id,
        kind=MovementKind.COUNT_CORRECTION,
        quantity=difference,
        reference=f"{CORRECTION_REFERENCE_PREFIX}{line.count_id}",
        reason=reason,
        idempotency_key=f"{CORRECTION_KEY_PREFIX}{line.pk}",
        occurred_at=line.count.counted_at,
    )


def _ledger_sum():
    """A stock row's ledger total: summed over the rows joined on (location, variant)."""
    return Coalesce(Sum("ledger__quantity"), Value(0))


def _reserved_sum():
    return Coalesce(
        Sum("holds__quantity", filter=Q(holds__status=ReservationStatus.ACTIVE)), Value(0)
    )


def _held():
    """The stock rows where ``reserved`` can be wrong: something is reserved, or held by an
    active reservation (a few of the table; the rest are 0 and held by nothing). The held
    rows' keys are one uncorrelated subquery, hashed once by PostgreSQL."""
    return Q(reserved__gt=0) | Q(
        pk__in=StockLevel.objects.filter(holds__status=ReservationStatus.ACTIVE).values("pk")
    )


def _drift_suspects(field: str, truth, among: Q) -> list[tuple[int, int]]:
    """Stock rows (``among`` them) whose ``field`` differs from ``truth``: one grouped join
    (a hash join and aggregate in PostgreSQL; no per-row subquery), no locks."""
    return list(
        StockLevel.objects.filter(among)
        .values("pk", "location_id", "variant_id", field)
        .annotate(truth=truth)
        .exclude(**{field: F("truth")})
        .order_by()
        .values_list("location_id", "variant_id")
    )


def _repair_drift(run: ReconciliationRun, field: str, kind: str, truth, among=None) -> int:
    """Find the stock rows (``among`` them) whose ``field`` differs from ``truth``, then, a
    batch at a time, lock them, check again under the lock, set them to it and record each
    repair as a discrepancy. Idempotent."""
    suspects = _drift_suspects(field, truth, among or Q())
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
    discrepancies, apply those within tolerance as count corrections (dated at the count time)
    and leave the rest for review: set-based, in groups of counts (``_reconcile_counts``),
    oldest count time first; 4. mend reservations that sales (or corrections) broke;
    5. recompute channel availability. Each step commits in small transactions and is
    idempotent, so a run cut short and run again ends as a clean run.
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
            run, "reserved", DiscrepancyKind.RESERVED_DRIFT, _reserved_sum(), _held()
        )
        pending = _pending_counts()
        tolerances = _tolerances()
        groups = _count_groups(pending)
        sizes = {pk: size for pk, _location, size in pending}
        total, done = sum(sizes.values()), 0
        for group in groups:
            say(f"Counts: {done:,}/{total:,} lines")
            result = _reconcile_counts(group, run, tolerances)
            done += sum(sizes[pk] for pk in group)
            run.counts_processed += result.counts
            run.lines_compared += result.lines
            run.discrepancies_found += result.discrepancies
            run.auto_applied += result.auto_applied
            run.pending_review += result.pending
        if pending:
            say(f"Counts: {done:,}/{total:,} lines")
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
    # Dated at the count time, as the corrections the run applies: a count of the item taken
    # later, waiting still, then finds the ledger corrected and not the same difference again.
    correction = _correction(line, discrepancy.difference, "Count difference approved")
    movements = write_moves([correction], source=RECONCILE_SOURCE, actor=actor)
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
        .select_related("count_line__count")
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
