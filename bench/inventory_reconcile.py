"""Reconciliation of 5 million stock rows with 5% count differences, against two baselines.

- the same work written as raw set-based SQL (run in a transaction that is rolled back, on
  the same data, just before the real run);
- a row-by-row ORM loop (what one would write without thinking of sets), timed on a sample
  of count lines and scaled to all of them (also rolled back).

The real run (``inventory.services.stock_reconcile``) runs in a child process, so its peak
memory (resident set) is its own.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIFFERENCE_EVERY = 20  # one count line in 20 differs from the ledger: 5%
TOLERANCE_UNITS = 1


def prepare_counts(log) -> dict:
    """A submitted POS snapshot of every location (a line per stock row), 5% different."""
    from django.db import connection, transaction
    from django.utils import timezone

    from inventory.models import CountTolerance, Location, StockCount, StockCountLine

    # A rerun on the same database: set earlier snapshots aside (a delete would load their
    # millions of lines into memory to check what refers to them).
    StockCount.objects.filter(status="submitted").update(status="cancelled")
    CountTolerance.objects.update_or_create(
        location=None, defaults={"max_units": TOLERANCE_UNITS, "max_percent": 0}
    )
    started = time.perf_counter()
    with transaction.atomic():
        now = timezone.now()
        counts = StockCount.objects.bulk_create(
            [
                StockCount(
                    location=location,
                    kind="pos_snapshot",
                    status="submitted",
                    counted_at=now,
                    submitted_at=now,
                    source="bench",
                )
                for location in Location.objects.order_by("pk")
            ]
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{StockCountLine._meta.db_table}" '
                "(count_id, variant_id, counted_quantity) "
                "SELECT c.id, s.variant_id, CASE "
                f" WHEN abs(hashtext(s.id::text)) % {DIFFERENCE_EVERY} = 0"
                "  THEN GREATEST(s.on_hand + (abs(hashtext(s.id::text || 'd')) % 7) - 3, 0)"
                " ELSE GREATEST(s.on_hand, 0) END "
                "FROM inventory_stocklevel s JOIN inventory_stockcount c "
                "ON c.location_id = s.location_id AND c.status = 'submitted' "
                # a snapshot's lines are written together, as a POS sends them
                "ORDER BY c.id, s.variant_id"
            )
            lines = cursor.rowcount
            # as stock_count_submit does, each count's number of lines on the count
            cursor.execute(
                "UPDATE inventory_stockcount c SET line_count = (SELECT COUNT(*) "
                "FROM inventory_stockcountline l WHERE l.count_id = c.id) "
                "WHERE c.status = 'submitted'"
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) inventory_stockcountline")
    seconds = time.perf_counter() - started
    log(f"  {len(counts)} counts with {lines:,} lines in {seconds:.1f} s")
    return {"counts": len(counts), "lines": lines, "seconds": round(seconds, 1)}


RAW_SQL = [
    (
        "expire checkout holds",
        """
        WITH expired AS (
          UPDATE inventory_reservation SET status = 'expired', closed_at = now()
          WHERE status = 'active' AND expires_at <= now()
          RETURNING location_id, variant_id, quantity)
        UPDATE inventory_stocklevel s SET reserved = s.reserved - e.q
        FROM (SELECT location_id, variant_id, SUM(quantity) q FROM expired GROUP BY 1, 2) e
        WHERE s.location_id = e.location_id AND s.variant_id = e.variant_id
        """,
    ),
    (
        "on hand against the ledger",
        """
        SELECT s.id FROM inventory_stocklevel s LEFT JOIN inventory_stockmovement m
          ON m.location_id = s.location_id AND m.variant_id = s.variant_id
        GROUP BY s.id HAVING s.on_hand <> COALESCE(SUM(m.quantity), 0)
        """,
    ),
    (
        "reserved against reservations",
        """
        SELECT s.id FROM inventory_stocklevel s LEFT JOIN (
          SELECT location_id, variant_id, SUM(quantity) t FROM inventory_reservation
          WHERE status = 'active' GROUP BY 1, 2) r
          ON r.location_id = s.location_id AND r.variant_id = s.variant_id
        WHERE s.reserved <> COALESCE(r.t, 0)
        """,
    ),
    (
        "expected quantity of every count line",
        """
        UPDATE inventory_stockcountline l
        SET expected_quantity = s.on_hand - COALESCE(m.t, 0)
        FROM inventory_stockcount c
        JOIN inventory_stocklevel s ON s.location_id = c.location_id
        LEFT JOIN (
          SELECT mv.location_id, mv.variant_id, SUM(mv.quantity) t
          FROM inventory_stockmovement mv JOIN inventory_stockcount c2
            ON c2.location_id = mv.location_id AND mv.occurred_at > c2.counted_at
          WHERE c2.id = ANY(%(counts)s) AND mv.occurred_at > %(earliest)s
          GROUP BY 1, 2) m ON m.location_id = s.location_id AND m.variant_id = s.variant_id
        WHERE l.count_id = c.id AND c.id = ANY(%(counts)s) AND l.count_id = ANY(%(counts)s)
          AND s.location_id = ANY(%(locations)s) AND s.variant_id = l.variant_id
        """,
    ),
    (
        "discrepancies",
        """
        INSERT INTO inventory_discrepancy (run_id, kind, status, location_id, variant_id,
          count_line_id, expected, actual, difference, created_at, resolved_at)
        SELECT %(run)s, 'count',
          CASE WHEN abs(l.counted_quantity - l.expected_quantity) <= %(units)s
            THEN 'auto_applied' ELSE 'pending' END,
          c.location_id, l.variant_id, l.id, l.expected_quantity, l.counted_quantity,
          l.counted_quantity - l.expected_quantity, now(), now()
        FROM inventory_stockcountline l JOIN inventory_stockcount c ON c.id = l.count_id
        WHERE c.status = 'submitted' AND l.counted_quantity <> l.expected_quantity
        """,
    ),
    (
        "count corrections in the ledger",
        """
        INSERT INTO inventory_stockmovement (location_id, variant_id, kind, quantity, source,
          reference, reason, idempotency_key, occurred_at, recorded_at)
        SELECT d.location_id, d.variant_id, 'count_correction', d.difference, 'reconcile',
          'count #' || c.id, 'Count difference', 'count-line:' || d.count_line_id,
          c.counted_at, now()
        FROM inventory_discrepancy d JOIN inventory_stockcountline l ON l.id = d.count_line_id
        JOIN inventory_stockcount c ON c.id = l.count_id
        WHERE d.run_id = %(run)s AND d.status = 'auto_applied'
        """,
    ),
    (
        "on hand corrected",
        """
        UPDATE inventory_stocklevel s SET on_hand = s.on_hand + d.difference
        FROM inventory_discrepancy d
        WHERE d.run_id = %(run)s AND d.status = 'auto_applied'
          AND s.location_id = d.location_id AND s.variant_id = d.variant_id
        """,
    ),
    (
        "counts reconciled",
        "UPDATE inventory_stockcount SET status = 'reconciled', reconciled_at = now() "
        "WHERE status = 'submitted'",
    ),
    (
        "channel availability",
        """
        WITH sellable AS (
          SELECT s.variant_id, r.channel_id, SUM(GREATEST(s.on_hand - s.reserved
            - COALESCE(s.safety_stock, l.safety_stock) - r.buffer, 0)) AS units
          FROM inventory_stocklevel s
          JOIN inventory_location l ON l.id = s.location_id AND l.is_active
          JOIN inventory_channelstockrule r ON r.location_id = s.location_id
          GROUP BY 1, 2),
        promised AS (
          SELECT x.variant_id, x.channel_id,
            LEAST(GREATEST(x.units - COALESCE(p.buffer, 0), 0)
              * COALESCE(p.exposed_percent, 100) / 100, COALESCE(p.cap, 2147483647)) AS q,
            COALESCE(p.low_stock_threshold, 0) AS low
          FROM sellable x LEFT JOIN inventory_channelstockpolicy p ON p.channel_id = x.channel_id)
        INSERT INTO inventory_channelavailability (variant_id, channel_id, quantity,
          is_low_stock, updated_at)
        SELECT variant_id, channel_id, q, q > 0 AND q <= low, now() FROM promised
        ON CONFLICT (variant_id, channel_id) DO UPDATE SET quantity = EXCLUDED.quantity,
          is_low_stock = EXCLUDED.is_low_stock, updated_at = EXCLUDED.updated_at
        WHERE (inventory_channelavailability.quantity,
               inventory_channelavailability.is_low_stock)
          IS DISTINCT FROM (EXCLUDED.quantity, EXCLUDED.is_low_stock)
        """,
    ),
]


# The steps stock_reconcile runs in its groups' transactions, with GROUP_WORK_MEM.
COUNT_STEPS = {
    "expected quantity of every count line",
    "discrepancies",
    "count corrections in the ledger",
    "on hand corrected",
    "counts reconciled",
}


def raw_reconcile(log) -> dict:
    """The same work as raw set-based SQL, in one transaction, rolled back at the end."""
    from django.db import connection, transaction
    from django.utils import timezone

    from inventory.models import ReconciliationRun
    from inventory.services.counts import GROUP_WORK_MEM

    steps = []
    started = time.perf_counter()
    try:
        with transaction.atomic():
            run = ReconciliationRun.objects.create(trigger="bench-raw", started_at=timezone.now())
            with connection.cursor() as cursor:
                # as stock_reconcile does: JIT off, and more working memory for the counts
                # only (more memory makes PostgreSQL pick a slower plan for the ledger's sum)
                cursor.execute("SET LOCAL jit = off")
                cursor.execute(
                    "SELECT array_agg(id), array_agg(location_id), min(counted_at) "
                    "FROM inventory_stockcount WHERE status = 'submitted'"
                )
                counts, locations, earliest = cursor.fetchone()
                params = {
                    "run": run.pk,
                    "units": TOLERANCE_UNITS,
                    "counts": counts,
                    "locations": locations,
                    "earliest": earliest,  # read through movement_pair_idx, as the service does
                }
                for name, sql in RAW_SQL:
                    t = time.perf_counter()
                    if name in COUNT_STEPS:
                        cursor.execute(f"SET LOCAL work_mem = '{GROUP_WORK_MEM}'")
                    else:
                        cursor.execute("SET LOCAL work_mem TO DEFAULT")
                    cursor.execute(sql, params)
                    steps.append(
                        {
                            "step": name,
                            "seconds": round(time.perf_counter() - t, 2),
                            "rows": cursor.rowcount,
                        }
                    )
                    log(f"    raw: {name}: {steps[-1]['seconds']} s ({cursor.rowcount:,} rows)")
            seconds = time.perf_counter() - started
            raise _Rollback
    except _Rollback:
        pass
    return {"seconds": round(seconds, 2), "steps": steps}


class _Rollback(Exception):
    pass


def orm_loop_per_line(sample: int, log) -> dict:
    """A row-by-row ORM loop over ``sample`` count lines: per line read the stock row and the
    movements since the count, write the discrepancy, the correction and the stock row."""
    from django.db import transaction
    from django.db.models import Sum
    from django.utils import timezone

    from inventory.models import (
        Discrepancy,
        ReconciliationRun,
        StockCountLine,
        StockLevel,
        StockMovement,
    )

    lines = list(
        StockCountLine.objects.filter(count__status="submitted")
        .select_related("count")
        .order_by("pk")[:sample]
    )
    started = time.perf_counter()
    try:
        with transaction.atomic():
            run = ReconciliationRun.objects.create(trigger="bench-loop", started_at=timezone.now())
            for line in lines:
                level = StockLevel.objects.filter(
                    location_id=line.count.location_id, variant_id=line.variant_id
                ).first()
                since = (
                    StockMovement.objects.filter(
                        location_id=line.count.location_id,
                        variant_id=line.variant_id,
                        occurred_at__gt=line.count.counted_at,
                    ).aggregate(t=Sum("quantity"))["t"]
                    or 0
                )
                line.expected_quantity = (level.on_hand if level else 0) - since
                line.save(update_fields=["expected_quantity"])
                difference = line.counted_quantity - line.expected_quantity
                if not difference:
                    continue
                auto = abs(difference) <= TOLERANCE_UNITS
                Discrepancy.objects.create(
                    run=run,
                    kind="count",
                    status="auto_applied" if auto else "pending",
                    location_id=line.count.location_id,
                    variant_id=line.variant_id,
                    count_line=line,
                    expected=line.expected_quantity,
                    actual=line.counted_quantity,
                    difference=difference,
                )
                if auto:
                    StockMovement.objects.create(
                        location_id=line.count.location_id,
                        variant_id=line.variant_id,
                        kind="count_correction",
                        quantity=difference,
                        source="bench-loop",
                        occurred_at=line.count.counted_at,
                    )
                    level.on_hand += difference
                    level.save(update_fields=["on_hand"])
            seconds = time.perf_counter() - started
            raise _Rollback
    except _Rollback:
        pass
    per_line = seconds / max(len(lines), 1)
    log(
        f"    row-by-row ORM loop: {len(lines):,} lines in {seconds:.1f} s "
        f"({per_line * 1e6:.0f} µs/line)"
    )
    return {"sample_lines": len(lines), "seconds": round(seconds, 2), "per_line_s": per_line}


CHILD = """
import json, os, sys, time
sys.path.insert(0, %(root)r)
def peak_mb():
    # VmHWM is this process's own peak (ru_maxrss would carry the parent's across exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
import django
django.setup()
from inventory.services import stock_reconcile
t = time.perf_counter()
def say(message):
    print("    " + message, file=sys.stderr, flush=True)
run = stock_reconcile(trigger="bench", progress=say)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "status": run.status, "counts": run.counts_processed,
  "lines": run.lines_compared, "discrepancies": run.discrepancies_found,
  "auto_applied": run.auto_applied, "pending": run.pending_review,
  "availability_updated": run.availability_updated, "maxrss_mb": peak_mb()}))
"""


def real_reconcile(env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD % {"root": str(ROOT)}],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    sys.stderr.write(out.stderr[-3000:])
    if out.returncode != 0:
        raise RuntimeError(f"reconcile failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_reconcile(env: dict, log, sample: int = 2000) -> dict:
    from django.db import connections

    counts = prepare_counts(log)
    raw = raw_reconcile(log)
    loop = orm_loop_per_line(sample, log)
    connections.close_all()
    real = real_reconcile(env)
    loop_estimate = loop["per_line_s"] * counts["lines"]
    result = {
        "data": counts,
        "raw_sql": raw,
        "orm_loop": {**loop, "estimated_all_lines_s": round(loop_estimate, 1)},
        "reconcile": real,
        "ratio_to_raw": round(real["seconds"] / raw["seconds"], 2),
        "speedup_over_loop": round(loop_estimate / real["seconds"], 1),
    }
    log(
        f"reconcile: {real['seconds']:.1f} s (raw SQL {raw['seconds']:.1f} s, "
        f"x{result['ratio_to_raw']}); row-by-row loop would take {loop_estimate:,.0f} s "
        f"({result['speedup_over_loop']}x slower); peak memory {real['maxrss_mb']:.0f} MB"
    )
    return result
