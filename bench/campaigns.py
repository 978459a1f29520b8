#!/usr/bin/env python3
"""Omni's campaign benchmarks (run by ``make bench-campaigns``).

    make bench-campaigns [ARGS="--rounds 5 --send-rounds 3 --only detection,sending"]
    make bench-campaigns ARGS="--scale 0.01"     # a quick check on data 100 x smaller

On a throwaway PostgreSQL (``make bench-campaigns`` starts one): migrates, generates the data
(``bench/campaigns_data.py``: the customer benchmark's 1,000,000 customers, a small catalog,
5,000 past orders, 50,000 eligible abandoned web carts and more that are not, one active
cart-abandoned campaign sending one email), then measures, each against a baseline in the
same run:

- detection: ``campaigns.services.detection.campaign_trigger_detect`` (one ``INSERT ...
  SELECT ... ON CONFLICT DO NOTHING``, which enrols the 50,000) against a hand-written
  ``SELECT`` of the same candidates run raw through psycopg2 (all rows fetched), in
  interleaved rounds on an empty enrolment table; medians; target: at most 3 times the SQL's
  time. Then a second detection over the enrolled customers must add nothing (its time is
  recorded too).
- sending: ``campaigns.services.sending.messages_send`` over the 50,000 due enrolments, end to
  end (claim with the rule checks, render, write each message to the local outbox, record the
  message rows), against ``psycopg2.extras.execute_values`` of the same message rows into a
  table made ``LIKE campaigns_message INCLUDING ALL`` (its indexes and checks; no foreign
  keys); rows per second; target: at least 0.10 of the raw insert's. Every kind of message,
  email included, goes to the local outbox backend in the benchmark.

Results go to ``bench/results/campaigns.json``, ``docs/benchmarks-campaigns.md`` and the
"Campaigns" block of ``docs/benchmarks.md``. Exits non-zero when a figure misses its target
or a check fails.
"""

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # import bench.* and the project, not bench/ modules by bare name
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import machine  # noqa: E402
from bench.report import put_block  # noqa: E402
from bench.run import bench_env, git_info, log, machine_info, manage, step  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "campaigns.json"
DOCS = ROOT / "docs" / "benchmarks-campaigns.md"
SUMMARY = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- campaigns:begin (written by bench/campaigns.py, make bench-campaigns) -->"
END = "<!-- campaigns:end -->"
SECTIONS = ("detection", "sending")
TARGETS = {"detection_ratio": 3.0, "sending_ratio": 0.10}
LOCAL_OUTBOX = "campaigns.backends.local.LocalOutboxBackend"
SCRATCH = "bench_message_raw"

# The same candidates as the campaign's detection, written by hand: open carts idle between
# the campaign's delay and its look-back, with lines, of a customer not erased, opted in on a
# channel the campaign sends on and not enrolled in the campaign within the cooldown; one row
# per customer, her latest cart.
DETECTION_SQL = """
SELECT c.customer_id, max(c.id) AS cart_id, 'cart:' || max(c.id) AS subject_key
FROM orders_cart c
JOIN customers_customer cu ON cu.id = c.customer_id
WHERE c.status = 'open'
  AND c.last_activity_at <= %(idle_since)s
  AND c.last_activity_at >= %(since)s
  AND cu.erased_at IS NULL
  AND EXISTS (SELECT 1 FROM orders_cartline l WHERE l.cart_id = c.id)
  AND EXISTS (SELECT 1 FROM customers_consentstate s
              WHERE s.customer_id = c.customer_id AND s.channel_id = ANY(%(channels)s)
                AND s.status = 'opted_in')
  AND NOT EXISTS (SELECT 1 FROM campaigns_enrolment e
                  WHERE e.campaign_id = %(campaign)s AND e.customer_id = c.customer_id
                    AND e.enrolled_at >= %(cooldown)s)
GROUP BY c.customer_id
""".strip()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/campaigns.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="size against 1,000,000 customers and 50,000 eligible carts (e.g. 0.01 for a "
        "quick check)",
    )
    p.add_argument("--only", default=",".join(SECTIONS), help="sections: detection,sending")
    p.add_argument("--rounds", type=int, default=5, help="interleaved detection rounds")
    p.add_argument("--send-rounds", type=int, default=3, help="interleaved sending rounds")
    p.add_argument(
        "--send-workers",
        type=int,
        default=2,
        help="send worker processes sharing the due steps, as Celery workers do (default 2: "
        "the machine's cores)",
    )
    p.add_argument(
        "--send-budget",
        type=float,
        default=3600,
        help="budget_seconds given to messages_send (large: one call sends everything)",
    )
    p.add_argument("--quiet-wait", type=float, default=60, help="wait for a quiet machine (s)")
    p.add_argument("--quiet-limit", type=float, default=0.2, help="CPUs other work may use")
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the measured rounds, one more sending run under cProfile (not timed)",
    )
    p.add_argument(
        "--no-git", action="store_true", help="do not ask git for the commit (recorded unknown)"
    )
    args = p.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.only - set(SECTIONS) or not args.only:
        p.error(f"--only takes {','.join(SECTIONS)}")
    if not 0 < args.scale <= 1 or args.rounds < 1 or args.send_rounds < 1:
        p.error("need 0 < --scale <= 1, --rounds >= 1 and --send-rounds >= 1")
    return args


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _campaign(now):
    from bench.campaigns_data import CAMPAIGN
    from campaigns.services.common import running_campaigns

    return running_campaigns(now).get(name=CAMPAIGN)


def _truncate_enrolments() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # Messages and attributions point at enrolments.
        cursor.execute("TRUNCATE campaigns_enrolment CASCADE")


@contextlib.contextmanager
def timed_parts(targets: list):
    """Seconds spent in each part of the measured code: ``targets`` lists ``(owner, function
    name, part)``; each function is wrapped with a timer while the block runs (a timer call
    per call: per batch, or per statement)."""
    parts = dict.fromkeys((part for _, _, part in targets), 0.0)
    originals = [(owner, name, getattr(owner, name), part) for owner, name, part in targets]

    def wrap(function, part):
        def timed(*a, **kw):
            started = time.perf_counter()
            try:
                return function(*a, **kw)
            finally:
                parts[part] += time.perf_counter() - started

        return timed

    for owner, name, function, part in originals:
        setattr(owner, name, wrap(function, part))
    try:
        yield parts
    finally:
        for owner, name, function, _part in originals:
            if isinstance(owner, type) or hasattr(owner, "__file__"):
                setattr(owner, name, function)  # a class or a module
            else:
                delattr(owner, name)  # an instance: its class's method shows again


def detection_parts() -> list:
    """The advisory lock, building the SELECT (the ORM, the channel rules), the ``INSERT ...
    SELECT``, the ``UPDATE`` that fills the new enrolments from their subject, and the commit
    (where PostgreSQL checks the deferred foreign keys of the new rows)."""
    from django.db import connections

    from campaigns.services import detection

    return [
        (detection, "advisory_lock", "lock"),
        (detection, "candidates_sql", "build"),
        (detection, "_insert", "insert"),
        (detection, "_fill_subjects", "fill"),
        (connections["default"], "commit", "commit"),
    ]


def sending_parts() -> list:
    """The claim, the delivery, and inside it the rendering and the backend's ``send_many``."""
    from campaigns import rendering
    from campaigns.backends.local import LocalOutboxBackend
    from campaigns.services import sending

    return [
        (sending, "steps_claim", "claim"),
        (sending, "messages_deliver", "deliver"),
        (rendering, "render_batch", "render"),
        (LocalOutboxBackend, "send_many", "backend"),
    ]


# --- detection ------------------------------------------------------------------------------


def table_shape(table: str) -> dict:
    """The indexes and foreign keys (deferred or not) a table's inserts maintain and check."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass ORDER BY i.relname",
            [table],
        )
        indexes = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT conname, condeferred FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype = 'f' ORDER BY conname",
            [table],
        )
        keys = cursor.fetchall()
    return {
        "indexes": indexes,
        "foreign_keys": len(keys),
        "deferred_foreign_keys": sum(1 for _name, deferred in keys if deferred),
    }


def detection_params(campaign, now) -> dict:
    from campaigns.services.common import campaign_channel_ids, rules_by_channel

    return {
        "idle_since": now - timedelta(minutes=campaign.idle_minutes),
        "since": now - timedelta(hours=campaign.lookback_hours),
        "channels": campaign_channel_ids(campaign, rules_by_channel()),
        "campaign": campaign.pk,
        "cooldown": now - timedelta(days=campaign.reentry_cooldown_days),
    }


def bench_detection(args, data, meter) -> dict:
    from django.db import connection

    from campaigns.models import Enrolment
    from campaigns.services.detection import campaign_trigger_detect, candidates_sql

    now = data["now"]
    campaign = _campaign(now)
    params = detection_params(campaign, now)
    expected = data["eligible_carts"]
    connection.ensure_connection()
    raw = connection.connection

    def hand_written() -> list:
        with raw.cursor() as cursor:
            cursor.execute(DETECTION_SQL, params)
            return cursor.fetchall()

    def ours() -> int:
        return campaign_trigger_detect(campaign=campaign, now=now)

    # Check both before timing them: the same candidates, the expected number.
    _truncate_enrolments()
    rows = hand_written()
    added = ours()
    enrolled = set(
        Enrolment.objects.filter(campaign=campaign).values_list("customer_id", "cart_id")
    )
    raw_pairs = {(customer, cart) for customer, cart, _key in rows}
    checks = {
        "expected": expected,
        "raw_rows": len(rows),
        "enrolled": added,
        "same_customers_and_carts": enrolled == raw_pairs,
    }
    checks["ok"] = len(rows) == expected == added and checks["same_customers_and_carts"]
    log(
        f"detection check: the SQL selects {len(rows):,}, detection enrolled {added:,} "
        f"(expected {expected:,}); same customers and carts: "
        f"{checks['same_customers_and_carts']}"
    )
    # The statement detection runs, with its plan, on an empty enrolment table.
    _truncate_enrolments()
    columns, ours_sql, ours_params = candidates_sql(campaign, now)
    plans = {}
    with raw.cursor() as cursor:
        for name, sql, sql_params in (
            ("ours", ours_sql, ours_params),
            ("raw", DETECTION_SQL, params),
        ):
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, sql_params)
            plan = cursor.fetchone()[0][0]
            cursor.execute("EXPLAIN " + sql, sql_params)
            plans[name] = {
                "planning_ms": round(plan["Planning Time"], 2),
                "execution_ms": round(plan["Execution Time"], 2),
                "text": [row[0] for row in cursor.fetchall()],
            }
        statement = cursor.mogrify(ours_sql, ours_params).decode()
    log(
        f"plans: ours executes in {plans['ours']['execution_ms']:.0f} ms, the SQL in "
        f"{plans['raw']['execution_ms']:.0f} ms (EXPLAIN ANALYZE)"
    )
    for _ in range(1):  # warm-up, not counted
        _truncate_enrolments()
        hand_written()
        _truncate_enrolments()
        ours()
    rounds = []
    for n in range(1, args.rounds + 1):
        meter.wait_quiet(limit=args.quiet_limit, max_wait=args.quiet_wait, log=log)
        order = ("raw", "ours") if n % 2 else ("ours", "raw")
        row = {"round": n, "order": "→".join(order)}
        before = meter.snapshot()
        for name in order:
            _truncate_enrolments()
            with timed_parts(detection_parts()) as parts:
                started = time.perf_counter()
                got = len(hand_written()) if name == "raw" else ours()
                row[f"{name}_ms"] = _ms(time.perf_counter() - started)
            if name == "ours":
                row["parts_ms"] = {k: _ms(v) for k, v in parts.items()}
                row["parts_ms"]["rest"] = round(row["ours_ms"] - sum(row["parts_ms"].values()), 1)
            if got != expected:
                raise RuntimeError(f"detection round {n}: {name} found {got:,}, not {expected:,}")
        cpu = meter.between(before, meter.snapshot())
        row["ratio"] = round(row["ours_ms"] / row["raw_ms"], 3)
        row["other_cpus"] = cpu["other_cpus"]
        row["disturbed"] = cpu["other_cpus"] >= args.quiet_limit
        log(
            f"detection round {n}/{args.rounds}: SQL {row['raw_ms']:.0f} ms, ours "
            f"{row['ours_ms']:.0f} ms, ratio {row['ratio']:.2f} (other work "
            f"{cpu['other_cpus']:.2f} CPUs); ours: "
            + ", ".join(f"{k} {v:.0f} ms" for k, v in row["parts_ms"].items())
        )
        rounds.append(row)
    # The last round left the enrolments in place (ours ran last or before a truncate): make
    # sure they are, then run detection again: it must add nothing.
    if Enrolment.objects.filter(campaign=campaign).count() != expected:
        _truncate_enrolments()
        ours()
    started = time.perf_counter()
    again = ours()
    second_ms = _ms(time.perf_counter() - started)
    started = time.perf_counter()
    raw_again = len(hand_written())
    raw_again_ms = _ms(time.perf_counter() - started)
    log(
        f"second detection over the enrolled customers: {again} added in {second_ms:.0f} ms "
        f"(the SQL: {raw_again} rows in {raw_again_ms:.0f} ms)"
    )
    counted = [r for r in rounds if not r["disturbed"]] or rounds
    median_ours = statistics.median(r["ours_ms"] for r in counted)
    median_raw = statistics.median(r["raw_ms"] for r in counted)
    return {
        "campaign": campaign.name,
        "now": now.isoformat(),
        "params": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in params.items()},
        "checks": checks,
        "rounds": rounds,
        "rounds_in_median": [r["round"] for r in counted],
        "median_ours_ms": median_ours,
        "median_raw_ms": median_raw,
        "ratio": round(median_ours / median_raw, 3),
        "parts_ms": {
            part: statistics.median(r["parts_ms"][part] for r in counted)
            for part in counted[0]["parts_ms"]
        },
        "second_run": {
            "added": again,
            "ms": second_ms,
            "raw_rows": raw_again,
            "raw_ms": raw_again_ms,
        },
        "sql": DETECTION_SQL,
        "enrolment_table": table_shape("campaigns_enrolment"),
        "ours_statement": statement,
        "ours_columns": columns,
        "plans": plans,
    }


# --- sending --------------------------------------------------------------------------------


def use_local_outbox(directory: Path) -> None:
    """Every kind of message to the local outbox backend, under ``directory``."""
    from django.conf import settings

    from campaigns.backends import KINDS, reset_backends

    settings.OMNI_MESSAGING_BACKENDS = dict.fromkeys(KINDS, LOCAL_OUTBOX)
    settings.OMNI_LOCAL_OUTBOX_DIR = directory
    reset_backends()


def reset_sending(campaign_id: int, outbox: Path) -> None:
    """No messages, every enrolment due again at its first step, an empty outbox."""
    from django.db import connection

    from campaigns.backends import reset_backends

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE campaigns_message CASCADE")
        cursor.execute(
            "UPDATE campaigns_enrolment SET status = 'active', exit_reason = '', "
            "next_position = 1, due_at = now() - interval '1 second', deferrals = 0, "
            "last_deferral = '', finished_at = NULL WHERE campaign_id = %s",
            [campaign_id],
        )
        cursor.execute("VACUUM (ANALYZE) campaigns_enrolment")
        cursor.execute("VACUUM (ANALYZE) campaigns_message")
    shutil.rmtree(outbox, ignore_errors=True)
    outbox.mkdir(parents=True)
    reset_backends()


def sending_checks(campaign_id: int, expected: int, outbox: Path, result) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*),
              count(DISTINCT enrolment_id),
              count(*) FILTER (WHERE status = 'delivered'),
              (SELECT count(*) FROM campaigns_enrolment e WHERE e.campaign_id = %(c)s
                 AND NOT EXISTS (SELECT 1 FROM campaigns_message m
                                 WHERE m.enrolment_id = e.id)),
              (SELECT count(*) FROM campaigns_enrolment e WHERE e.campaign_id = %(c)s
                 AND e.status = 'completed')
            FROM campaigns_message WHERE campaign_id = %(c)s
            """,
            {"c": campaign_id},
        )
        messages, enrolments, delivered, without, completed = cursor.fetchone()
    files = sum(1 for path in outbox.rglob("*.json"))
    out = {
        "messages": messages,
        "enrolments_with_a_message": enrolments,
        "enrolments_without_a_message": without,
        "delivered": delivered,
        "enrolments_completed": completed,
        "outbox_files": files,
        "result": result.as_dict(),
    }
    out["ok"] = (
        messages == enrolments == delivered == completed == files == expected
        and without == 0
        and result.delivered == expected
        and not result.failed
        and not result.retrying
        and not any(result.suppressed.values())
        and not any(result.deferred.values())
        and not any(result.exited.values())
    )
    return out


def sample_message(outbox: Path) -> dict:
    """One message as the outbox holds it, and what it must show."""
    path = min(outbox.rglob("*.json"), key=lambda p: int(p.stem))
    document = json.loads(path.read_text())
    html, text = document["html"], document["text"]
    shows = {
        "tracked links (/t/)": "/t/" in html and "/t/" in text,
        "unsubscribe link (/u/)": "/u/" in html and document["unsubscribe_url"] in text,
        "cart lines with prices": " x " in text and "EUR" in text,
        "recommendations": "Others also bought" in html,
    }
    return {
        "file": str(path.relative_to(outbox)),
        "to": document["to"],
        "subject": document["subject"],
        "text": text,
        "html_bytes": len(html.encode()),
        "shows": shows,
        "ok": all(shows.values()),
    }


def message_rows():
    """The message rows as sending left them (all columns, by id)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM campaigns_message ORDER BY id")
        columns = [d[0] for d in cursor.description]
        return columns, cursor.fetchall()


def raw_insert(columns, rows) -> float:
    """``execute_values`` of ``rows`` into the scratch table in one transaction; seconds."""
    from django.db import connection, transaction
    from psycopg2.extras import execute_values

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {SCRATCH}")
        cursor.execute(f"VACUUM (ANALYZE) {SCRATCH}")
    names = ", ".join(f'"{c}"' for c in columns)
    started = time.perf_counter()
    with transaction.atomic(), connection.connection.cursor() as cursor:
        execute_values(cursor, f"INSERT INTO {SCRATCH} ({names}) VALUES %s", rows, page_size=1000)
    return time.perf_counter() - started


def _send_worker(budget: float, queue) -> None:
    """One send worker process: what a Celery worker's send task does, timed by parts."""
    from django.db import connections

    from campaigns.services.sending import messages_send

    connections.close_all()  # the parent's connections are not ours to use
    with timed_parts(sending_parts()) as parts:
        result = messages_send(budget_seconds=budget)
    queue.put((result.as_dict(), dict(parts), backend_cpu_seconds()))
    connections.close_all()


def backend_cpu_seconds() -> float:
    """CPU seconds the PostgreSQL backend serving this process's connection has used: it
    ends with the worker, before the meter's next snapshot could see it."""
    from django.db import connection

    stat = machine._proc_stat(connection.connection.get_backend_pid())
    return (int(stat[11]) + int(stat[12])) / machine.TICK if stat else 0.0


def send_in_workers(workers: int, budget: float):
    """Run ``workers`` send processes at once (they share the due steps with SKIP LOCKED, as
    several Celery workers do) and add up what they did; the parts are summed CPU-side."""
    import multiprocessing

    from django.db import connections

    from campaigns.services.sending import SendResult

    connections.close_all()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_send_worker, args=(budget, queue)) for _ in range(workers)]
    for process in processes:
        process.start()
    outcomes = [queue.get() for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a send worker exited with {process.exitcode}")
    total = SendResult()
    parts: dict = {}
    backends = 0.0
    for done, worker_parts, backend_seconds in outcomes:
        backends += backend_seconds
        for name in (
            "claimed",
            "queued",
            "completed",
            "sent",
            "delivered",
            "retrying",
            "failed",
            "recovered",
            "abandoned",
        ):
            setattr(total, name, getattr(total, name) + done[name])
        for name in ("suppressed", "deferred", "exited"):
            for key, n in done[name].items():
                getattr(total, name)[key] += n
        for key, seconds in worker_parts.items():
            parts[key] = parts.get(key, 0.0) + seconds
    return total, parts, backends


def bench_sending(args, data, meter, outbox: Path) -> dict:
    from django.conf import settings
    from django.db import connection

    from campaigns.models import Enrolment
    from campaigns.services.sending import messages_send

    campaign = _campaign(data["now"])
    expected = Enrolment.objects.filter(campaign=campaign).count()
    if expected != data["eligible_carts"]:
        raise RuntimeError(f"{expected:,} enrolments to send to, not {data['eligible_carts']:,}")
    use_local_outbox(outbox)

    def ours(label: str):
        started = time.perf_counter()
        last = [started]

        def progress(result):
            if time.perf_counter() - last[0] >= 5:
                last[0] = time.perf_counter()
                elapsed = last[0] - started
                log(
                    f"  {label}: {result.delivered:,} / {expected:,} delivered "
                    f"({elapsed:.0f} s, {result.delivered / elapsed:,.0f} messages/s)"
                )

        if args.send_workers > 1:
            result, parts, backends = send_in_workers(args.send_workers, args.send_budget)
            return time.perf_counter() - started, result, parts, backends
        with timed_parts(sending_parts()) as parts:
            result = messages_send(budget_seconds=args.send_budget, progress=progress)
        return time.perf_counter() - started, result, dict(parts), 0.0

    # A first run, checked, gives the rows the baseline inserts.
    reset_sending(campaign.pk, outbox)
    log(f"sending check run: {expected:,} due enrolments")
    seconds, result, parts, _backends = ours("check run")
    checks = sending_checks(campaign.pk, expected, outbox, result)
    sample = sample_message(outbox)
    log(
        f"sending check: {checks['messages']:,} messages for "
        f"{checks['enrolments_with_a_message']:,} enrolments, {checks['delivered']:,} "
        f"delivered, {checks['outbox_files']:,} outbox files "
        f"({'ok' if checks['ok'] else 'NOT OK'}) in {seconds:.1f} s; sample message shows "
        + ", ".join(f"{k}: {v}" for k, v in sample["shows"].items())
    )
    columns, rows = message_rows()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        cursor.execute(f"CREATE TABLE {SCRATCH} (LIKE campaigns_message INCLUDING ALL)")
        cursor.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [SCRATCH])
        scratch_indexes = cursor.fetchone()[0]
    raw_insert(columns, rows)  # warm-up
    rounds = []
    for n in range(1, args.send_rounds + 1):
        order = ("raw", "ours") if n % 2 else ("ours", "raw")
        row = {"round": n, "order": "→".join(order), "messages": expected}
        other = 0.0
        for name in order:
            if name == "ours":
                reset_sending(campaign.pk, outbox)
            meter.wait_quiet(limit=args.quiet_limit, max_wait=args.quiet_wait, log=log)
            before = meter.snapshot()
            backends = 0.0  # the send workers' own PostgreSQL backends, gone by the snapshot
            if name == "raw":
                seconds = raw_insert(columns, rows)
            else:
                seconds, result, parts, backends = ours(f"round {n}")
                row_checks = sending_checks(campaign.pk, expected, outbox, result)
                if not row_checks["ok"]:
                    raise RuntimeError(f"sending round {n}: {row_checks}")
                row["parts_s"] = {k: round(v, 2) for k, v in parts.items()}
                row["parts_s"]["deliver_other"] = round(
                    parts["deliver"] - parts["render"] - parts["backend"], 2
                )
            load = meter.between(before, meter.snapshot(), extra={"postgres": backends})
            other = max(other, load["other_cpus"])
            row[f"{name}_s"] = round(seconds, 3)
            row[f"{name}_rows_per_s"] = round(expected / seconds, 1)
        row["ratio"] = round(row["ours_rows_per_s"] / row["raw_rows_per_s"], 4)
        row["other_cpus"] = other
        row["disturbed"] = other >= args.quiet_limit
        log(
            f"sending round {n}/{args.send_rounds}: ours {row['ours_rows_per_s']:,.0f} "
            f"messages/s ({row['ours_s']:.1f} s), raw insert {row['raw_rows_per_s']:,.0f} "
            f"rows/s ({row['raw_s']:.2f} s), ratio {row['ratio']:.3f} (other work "
            f"{other:.2f} CPUs)"
        )
        rounds.append(row)
    profile = None
    if args.profile:
        reset_sending(campaign.pk, outbox)
        log("profiling one more sending run (cProfile, not timed)")
        profiler = cProfile.Profile()
        profiler.enable()
        result = messages_send(budget_seconds=args.send_budget)
        profiler.disable()
        profile = {}
        listings = {
            "cumulative": ("cumulative", [30]),
            "tottime": ("tottime", [30]),
            # the measured code's own functions and the signing of links
            "campaigns": ("cumulative", [r"rendering|sending|local|signing|backends", 30]),
        }
        for name, (key, restrictions) in listings.items():
            buffer = io.StringIO()
            stats = pstats.Stats(profiler, stream=buffer)
            stats.strip_dirs().sort_stats(key).print_stats(*restrictions)
            profile[name] = buffer.getvalue()
            print(f"--- profile: {name} ---\n{profile[name]}", flush=True)
    counted = [r for r in rounds if not r["disturbed"]] or rounds
    median_ours = statistics.median(r["ours_rows_per_s"] for r in counted)
    median_raw = statistics.median(r["raw_rows_per_s"] for r in counted)
    return {
        "campaign": campaign.name,
        "messages": expected,
        "backends": dict(settings.OMNI_MESSAGING_BACKENDS),
        "outbox": str(outbox),
        "send_batch": settings.OMNI_SEND_BATCH,
        "checks": checks,
        "sample": sample,
        "message_table": table_shape("campaigns_message"),
        "scratch_table": {
            "name": SCRATCH,
            "made": f"CREATE TABLE {SCRATCH} (LIKE campaigns_message INCLUDING ALL)",
            "indexes": scratch_indexes,
            "columns": columns,
        },
        "rounds": rounds,
        "rounds_in_median": [r["round"] for r in counted],
        "median_ours_rows_per_s": median_ours,
        "median_raw_rows_per_s": median_raw,
        "ratio": round(median_ours / median_raw, 4),
        "parts_s": {
            part: statistics.median(r["parts_s"][part] for r in counted)
            for part in counted[0]["parts_s"]
        },
        "profile": profile,
    }


# --- report ---------------------------------------------------------------------------------


def verdicts(results: dict) -> list[dict]:
    rows = []
    scale = results.get("scale", 1)
    detection = results.get("detection")
    if detection:
        checks = detection["checks"]
        rows.append(
            {
                "what": f"trigger detection, {checks['expected']:,} eligible carts, time "
                "against hand-written SQL",
                "measured": f"x{detection['ratio']:.2f}",
                "detail": f"{detection['median_ours_ms']:,.0f} ms vs SQL "
                f"{detection['median_raw_ms']:,.0f} ms",
                "target": f"<= x{TARGETS['detection_ratio']:g}",
                "ok": detection["ratio"] <= TARGETS["detection_ratio"],
                "scale": scale,
            }
        )
        rows.append(
            {
                "what": "trigger detection enrols exactly the SQL's candidates",
                "measured": f"{checks['enrolled']:,}",
                "detail": f"SQL {checks['raw_rows']:,} rows, expected {checks['expected']:,}",
                "target": "equal, same customers and carts",
                "ok": checks["ok"],
                "scale": scale,
            }
        )
        second = detection["second_run"]
        rows.append(
            {
                "what": "a second detection run adds nothing",
                "measured": f"{second['added']} added",
                "detail": f"{second['ms']:,.0f} ms",
                "target": "0",
                "ok": second["added"] == 0,
                "scale": scale,
            }
        )
    sending = results.get("sending")
    if sending:
        rows.append(
            {
                "what": f"sending {sending['messages']:,} emails to the local outbox, "
                "rows/s against a raw bulk insert of the message rows",
                "measured": f"{sending['ratio']:.3f}",
                "detail": f"{sending['median_ours_rows_per_s']:,.0f} messages/s vs "
                f"{sending['median_raw_rows_per_s']:,.0f} rows/s",
                "target": f">= {TARGETS['sending_ratio']:g}",
                "ok": sending["ratio"] >= TARGETS["sending_ratio"],
                "scale": scale,
            }
        )
        rows.append(
            {
                "what": "every enrolment got exactly one message, delivered and rendered",
                "measured": f"{sending['checks']['delivered']:,} delivered",
                "detail": f"{sending['checks']['outbox_files']:,} outbox files",
                "target": f"{sending['messages']:,}",
                "ok": sending["checks"]["ok"] and sending["sample"]["ok"],
                "scale": scale,
            }
        )
    return rows


def bar(value: float, scale: float, width: int = 40) -> str:
    filled = max(0, min(width, round(value / scale * width))) if scale else 0
    return "█" * filled + "·" * (width - filled)


def _verdict_table(results: dict) -> list[str]:
    out = ["| figure | measured | target | |", "|---|---|---|---|"]
    for row in verdicts(results):
        out.append(
            f"| {row['what']} | {row['measured']} ({row['detail']}) | {row['target']} | "
            f"**{'pass' if row['ok'] else 'FAIL'}** |"
        )
    return out


def _scale_note(results: dict) -> str:
    scale = results.get("scale", 1)
    if scale == 1:
        return ""
    return (
        f" **Scale {scale:g}: a quick check on data {1 / scale:g} times smaller, not the "
        "figure the issue asks for.**"
    )


def summary_block(results: dict) -> str:
    lines = [
        BEGIN,
        "## Campaigns",
        "",
        f"Last run: {results['timestamp']}, commit `{results['code'].get('commit', '?')[:7]}`"
        f"{' (uncommitted changes)' if results['code'].get('dirty') else ''}, on "
        f"{results['data']['population']['customers']:,} customers and "
        f"{results['data']['eligible_carts']:,} eligible abandoned carts.{_scale_note(results)} "
        "Details: [benchmarks-campaigns.md](benchmarks-campaigns.md). Command: "
        "`make bench-campaigns`.",
        "",
        *_verdict_table(results),
        END,
    ]
    return "\n".join(lines)


def markdown(results: dict) -> str:
    data = results["data"]
    m = results["machine"]
    carts = data["carts"]
    out = [
        "# Campaign benchmarks",
        "",
        "<!-- Generated by bench/campaigns.py (make bench-campaigns); change bench/campaigns.py "
        "or bench/campaigns_data.py, not this file. -->",
        "",
        f"Last run: {results['timestamp']}, commit `{results['code'].get('commit', '?')[:7]}`"
        f"{' (uncommitted changes)' if results['code'].get('dirty') else ''}; "
        f"{m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), PostgreSQL {m.get('postgresql', '?')}, "
        f"Python {m.get('python', '?')}, Django {m.get('django', '?')}.{_scale_note(results)} "
        "Results: `bench/results/campaigns.json`.",
        "",
        *_verdict_table(results),
        "",
        "## Data",
        "",
        f"`bench/campaigns_data.py`, on top of the customer benchmark's population "
        f"({data['population']['customers']:,} customers with identities, consents on email, "
        f"SMS and push, and {data['population']['touchpoints']:,} touchpoints): "
        f"{data['products']} products listed on every sales channel, {data['orders']:,} past "
        "web orders (what recommendations draw on), and web carts of one or two lines at the "
        f"web price: **{data['eligible_carts']:,} eligible** (customers opted in on email with an "
        "email address, not erased, idle 90 to 150 minutes; one cart each) and "
        f"{carts['total'] - data['eligible_carts']:,} the campaign must leave alone: "
        f"{carts['fresh']:,} fresh (idle 2 to 10 minutes), {carts['converted']:,} converted, "
        f"{carts['anonymous']:,} anonymous, {carts['too_old']:,} too old (4 to 10 days), "
        f"{data['other_carts_per_kind']:,} of customers without an email opt-in, "
        f"{carts['without_lines']:,} without lines, and one for each erased customer. The "
        "campaign: cart abandoned, marketing, idle 60 minutes, look-back 72 hours, no holdout, "
        "a 7-day re-entry cooldown, one step without delay on email; the email rule requires "
        "consent, caps at 3 a week and has quiet hours away from the time of the run (checked, "
        f"never hit). Data built in {data['seconds']:.0f} s after the population "
        f"({data['population'].get('seconds', 0):.0f} s).",
        "",
    ]
    detection = results.get("detection")
    if detection:
        top = max(max(r["ours_ms"], r["raw_ms"]) for r in detection["rounds"])
        second = detection["second_run"]
        out += [
            "## Trigger detection",
            "",
            "Ours: `campaign_trigger_detect(campaign=..., now=...)`, one transaction: an advisory "
            "lock, the ORM's `INSERT INTO campaigns_enrolment ... SELECT ... ON CONFLICT DO "
            "NOTHING`, then the `UPDATE` that fills each new enrolment's sales channel from its "
            "cart. The baseline: the same candidates selected by hand-written SQL, run through "
            "psycopg2 with every row fetched. Each run starts from an empty enrolment table "
            "(`TRUNCATE`, not timed); the two take turns going first; one warm-up round is not "
            f"counted. Medians over rounds {detection['rounds_in_median']}: ours "
            f"**{detection['median_ours_ms']:,.0f} ms**, SQL "
            f"**{detection['median_raw_ms']:,.0f} ms**, ratio **x{detection['ratio']:.2f}** "
            f"(target ≤ x{TARGETS['detection_ratio']:g}).",
            "",
            "```text",
        ]
        for r in detection["rounds"]:
            out += [
                f"round {r['round']}  SQL   {bar(r['raw_ms'], top)} {r['raw_ms']:9,.0f} ms",
                f"{'':9}ours  {bar(r['ours_ms'], top)} {r['ours_ms']:9,.0f} ms",
            ]
        out += [
            "```",
            "",
            "| round | order | SQL ms | ours ms | ours / SQL | other work (CPUs) |",
            "|---|---|---|---|---|---|",
        ]
        for r in detection["rounds"]:
            out.append(
                f"| {r['round']} | {r['order']} | {r['raw_ms']:,.1f} | {r['ours_ms']:,.1f} | "
                f"{r['ratio']:.2f} | {r['other_cpus']:.2f}"
                f"{' (disturbed)' if r['disturbed'] else ''} |"
            )
        dp = detection["parts_ms"]
        out += [
            "",
            "Where our time goes (medians, ms; each function wrapped with a timer): the advisory "
            f"lock {dp['lock']:,.1f}, building the SELECT with the ORM (and reading the channel "
            f"rules) {dp['build']:,.1f}, the `INSERT ... SELECT` {dp['insert']:,.1f}, the "
            f"`UPDATE` filling the sales channel from the cart {dp['fill']:,.1f}, the commit "
            f"(where PostgreSQL checks the new rows' deferred foreign keys) {dp['commit']:,.1f}, "
            f"the rest {dp['rest']:,.1f}. `campaigns_enrolment` has "
            f"{len(detection['enrolment_table']['indexes'])} indexes and "
            f"{detection['enrolment_table']['foreign_keys']} foreign keys "
            f"({detection['enrolment_table']['deferred_foreign_keys']} deferred to the commit).",
            "",
            f"Checks: the SQL selects {detection['checks']['raw_rows']:,} rows and detection "
            f"enrolled {detection['checks']['enrolled']:,} (expected "
            f"{detection['checks']['expected']:,}), the same customers with the same carts: "
            f"{'yes' if detection['checks']['same_customers_and_carts'] else '**no**'}. A second "
            f"detection over the enrolled customers added **{second['added']}** in "
            f"{second['ms']:,.0f} ms (the SQL, now excluding everyone by the cooldown: "
            f"{second['raw_rows']} rows in {second['raw_ms']:,.0f} ms).",
            "",
            "The hand-written SQL:",
            "",
            "```sql",
            detection["sql"],
            "```",
            "",
            f"Plans on an empty enrolment table (`EXPLAIN ANALYZE`): ours executes in "
            f"{detection['plans']['ours']['execution_ms']:,.0f} ms (planning "
            f"{detection['plans']['ours']['planning_ms']} ms), the SQL in "
            f"{detection['plans']['raw']['execution_ms']:,.0f} ms (planning "
            f"{detection['plans']['raw']['planning_ms']} ms).",
            "",
            "<details><summary>The SELECT detection runs, and both plans</summary>",
            "",
            "```sql",
            detection["ours_statement"],
            "```",
            "",
            "```text",
            "-- ours",
            *detection["plans"]["ours"]["text"],
            "",
            "-- hand-written SQL",
            *detection["plans"]["raw"]["text"],
            "```",
            "",
            "</details>",
            "",
        ]
    sending = results.get("sending")
    if sending:
        top = max(max(r["ours_rows_per_s"], r["raw_rows_per_s"]) for r in sending["rounds"])
        parts = sending["parts_s"]
        total_parts = parts["claim"] + parts["deliver"]
        sample = sending["sample"]
        out += [
            "## Sending",
            "",
            f"Ours: `messages_send(budget_seconds={results['args']['send_budget']:g})` over "
            f"{sending['messages']:,} due enrolments, end to end, in batches of "
            f"{sending['send_batch']} (`OMNI_SEND_BATCH`): claim the due steps (`FOR UPDATE SKIP "
            "LOCKED`), re-check exit, consent, address, the cap and quiet hours, write the "
            "queued message rows and move the enrolments on; then mark the messages sending, "
            "render them (subject, HTML and text with cart lines, prices, tracked links, "
            "recommendations, unsubscribe link), write each to the local outbox as a JSON file "
            "and record it delivered. **Every kind, email included, goes to the local outbox "
            "backend** (`OMNI_MESSAGING_BACKENDS` set to "
            f"`{LOCAL_OUTBOX}` for every kind, in process): no SMTP "
            "server is involved, the email's rendering still is. The outbox is in "
            f"`{sending.get('outbox', '?')}` "
            + (
                "(`/dev/shm`, a memory file system: on this machine's virtual disk creating a "
                "file takes 10 to 150 µs depending on how many were just deleted there, and "
                "each round deletes the last one's, which would measure the disk, not the "
                "sending; the raw insert writes no files). "
                if str(sending.get("outbox", "")).startswith("/dev/shm/")
                else "(on disk: the machine has no `/dev/shm` with 2 GB free). "
            )
            + "The baseline: the same "
            f"{sending['messages']:,} message rows (read back after a checked run) inserted with "
            "`psycopg2.extras.execute_values(page_size=1000)` in one transaction into "
            f"`{sending['scratch_table']['name']}`, made `LIKE campaigns_message INCLUDING ALL` "
            f"(its {sending['scratch_table']['indexes']} indexes, defaults and checks; no foreign "
            "keys). Before each of our runs (not timed): the message table truncated, the "
            "enrolments due again at their first step, both vacuumed and analysed, the outbox "
            f"emptied. Medians over rounds {sending['rounds_in_median']}: ours "
            f"**{sending['median_ours_rows_per_s']:,.0f} messages/s**, raw insert "
            f"**{sending['median_raw_rows_per_s']:,.0f} rows/s**, ratio "
            f"**{sending['ratio']:.3f}** (target ≥ {TARGETS['sending_ratio']:g}).",
            "",
            "```text",
        ]
        for r in sending["rounds"]:
            out += [
                f"round {r['round']}  raw insert {bar(r['raw_rows_per_s'], top)} "
                f"{r['raw_rows_per_s']:9,.0f} rows/s",
                f"{'':9}ours       {bar(r['ours_rows_per_s'], top)} "
                f"{r['ours_rows_per_s']:9,.0f} messages/s",
            ]
        out += [
            "```",
            "",
            "| round | order | raw insert s | rows/s | ours s | messages/s | ours / raw | "
            "other work (CPUs) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sending["rounds"]:
            out.append(
                f"| {r['round']} | {r['order']} | {r['raw_s']:.2f} | {r['raw_rows_per_s']:,.0f} "
                f"| {r['ours_s']:.2f} | {r['ours_rows_per_s']:,.0f} | {r['ratio']:.3f} | "
                f"{r['other_cpus']:.2f}{' (disturbed)' if r['disturbed'] else ''} |"
            )
        out += [
            "",
            "Where our time goes (medians, seconds; measured by wrapping each part's function "
            "with a timer, one call per batch):",
            "",
            "| part | s | share |",
            "|---|---|---|",
            f"| claim: due steps, rule checks, message rows | {parts['claim']:.2f} | "
            f"{parts['claim'] / total_parts:.0%} |",
            f"| deliver: rendering | {parts['render']:.2f} | {parts['render'] / total_parts:.0%} |",
            f"| deliver: local outbox files | {parts['backend']:.2f} | "
            f"{parts['backend'] / total_parts:.0%} |",
            f"| deliver: the rest (marking, loading, recording) | "
            f"{parts['deliver_other']:.2f} | {parts['deliver_other'] / total_parts:.0%} |",
            "",
            f"Checks: {sending['checks']['messages']:,} messages for "
            f"{sending['checks']['enrolments_with_a_message']:,} enrolments (none without one), "
            f"{sending['checks']['delivered']:,} delivered, "
            f"{sending['checks']['enrolments_completed']:,} enrolments completed, "
            f"{sending['checks']['outbox_files']:,} outbox files; nothing suppressed, deferred, "
            "failed or retried. The first message as the outbox holds it "
            f"({sample['html_bytes']:,} bytes of HTML; shows "
            + ", ".join(f"{k}: {'yes' if v else '**no**'}" for k, v in sample["shows"].items())
            + "):",
            "",
            "```text",
            f"Subject: {sample['subject']}",
            "",
            sample["text"],
            "```",
            "",
        ]
    out += [
        "## Rerun",
        "",
        "```sh",
        "make bench-campaigns                                  # both figures, full size",
        'make bench-campaigns ARGS="--only detection"           # one figure',
        'make bench-campaigns ARGS="--scale 0.01"               # a quick check',
        'make bench-campaigns ARGS="--rounds 9 --send-rounds 5"  # steadier medians',
        'make bench-campaigns ARGS="--profile"                  # and profile a sending run',
        "```",
        "",
        "`bench/campaigns.py --help` lists every option.",
    ]
    return "\n".join(out) + "\n"


def write_docs(results: dict) -> None:
    tmp = DOCS.with_name(DOCS.name + ".tmp")
    tmp.write_text(markdown(results))
    os.replace(tmp, DOCS)
    put_block(SUMMARY, BEGIN, END, summary_block(results))


# --- main -----------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="omni-bench-campaigns-") as tmp_name,
        tempfile.TemporaryDirectory(prefix="omni-bench-outbox-", dir=outbox_root()) as outbox,
    ):
        return _main(args, Path(tmp_name), Path(outbox) / "outbox")


def outbox_root() -> str | None:
    """Where the benchmark's outbox goes: a memory file system when the machine has one.

    On this machine's disk (ext4 on a virtual disk mounted with ``discard``), creating a file
    takes 10 to 150 µs depending on how recently many files were deleted there, which each
    sending round does (the previous round's 50,000). That is the disk, not the sending, and
    the raw insert it is compared with writes no files: on ``/dev/shm`` a file takes ~9 µs.
    """
    shm = Path("/dev/shm")
    # 50,000 messages of a few kB each: room for them with plenty to spare, or the disk.
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 2 << 30:
        return str(shm)
    return None


def _main(args, tmp: Path, outbox: Path) -> int:
    env = bench_env(tmp)
    log(f"the local outbox writes to {outbox}")
    step("migrating")
    log(f"migrated in {manage(env, 'migrate', '--noinput'):.1f} s")
    import django

    django.setup()
    from django.db import connections

    from bench import campaigns_data, customers_data

    size = customers_data.sizes(args.scale)
    carts = campaigns_data.sizes(args.scale)
    results = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": {"commit": "unknown", "dirty": False} if args.no_git else git_info(),
        "machine": machine_info(),
        "scale": args.scale,
        "args": {"rounds": args.rounds, "send_rounds": args.send_rounds,
                 "send_budget": args.send_budget},
        "targets": TARGETS,
    }  # fmt: skip
    if RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        if previous.get("scale") == args.scale:
            for key in SECTIONS:
                if key not in args.only and key in previous:
                    results[key] = previous[key]  # a partial run keeps the other section
    meter = machine.CpuMeter(pg_port=os.environ.get("OMNI_PG_PORT"))
    step(
        f"generating: {size['customers']:,} customers, {size['touchpoints']:,} touchpoints, "
        f"{carts['eligible_carts']:,} eligible carts (scale {args.scale:g})"
    )
    data = campaigns_data.generate(log, scale=args.scale)
    results["data"] = {k: v for k, v in data.items() if k != "now"}
    results["data"]["now"] = data["now"].isoformat()
    if "detection" in args.only:
        step(
            f"trigger detection against hand-written SQL: {args.rounds} interleaved rounds, "
            f"{data['eligible_carts']:,} eligible carts"
        )
        results["detection"] = bench_detection(args, data, meter)
    else:
        from campaigns.services.detection import campaign_trigger_detect

        added = campaign_trigger_detect(campaign=_campaign(data["now"]), now=data["now"])
        log(f"detection (not measured): {added:,} enrolments")
    if "sending" in args.only:
        step(
            f"sending to the local outbox against a raw bulk insert: {args.send_rounds} "
            f"interleaved rounds of {data['eligible_carts']:,} messages"
        )
        results["sending"] = bench_sending(args, data, meter, outbox)
    connections.close_all()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_docs(results)
    log(f"wrote {RESULTS.relative_to(ROOT)}, {DOCS.relative_to(ROOT)} and the Campaigns block of "
        f"{SUMMARY.relative_to(ROOT)}")  # fmt: skip
    failed = False
    for row in verdicts(results):
        failed |= not row["ok"]
        print(
            f"{'PASS' if row['ok'] else 'FAIL'}  {row['what']}: {row['measured']} "
            f"({row['detail']}; target {row['target']})"
            + (f"  [scale {row['scale']:g}: a quick check]" if row["scale"] != 1 else "")
        )
    return 1 if failed else 0


def _on_signal(signum, frame):
    print(f"bench: stopped by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        sys.exit(2)
