#!/usr/bin/env python3
"""Omni's customer benchmarks (run by ``make bench-customers``).

    make bench-customers [ARGS="--rounds 5 --duration 5 --only segment,timeline,ingest"]
    make bench-customers ARGS="--scale 0.01"     # a quick check on a population 100 x smaller

On a throwaway PostgreSQL (``make bench-customers`` starts one): migrates, generates the
population (``bench/customers_data.py``: 1,000,000 customers, 5,000,000 touchpoints with
identities, channel rows, consents, home stores, persona attributes and lifetime stats; one
customer with 10,000 touchpoints), then measures, each against a baseline in the same run:

- generator: the time to build that population (target: under 5 minutes);
- segment: counting a segment of three rules (used the web channel AND opted in on email AND
  lifetime revenue >= 100) with ``customers.segments.segment_queryset(segment).count()``,
  against the equivalent hand-written SQL with ``EXISTS`` run raw through psycopg2; medians of
  interleaved runs after a warm-up (target: at most 2 times the SQL's time);
- timeline: ``GET /api/v1/customers/<id>/timeline`` of the customer with 10,000 events (the
  first page and pages reached by their cursors) against the framework floor ``GET
  /bench/floor``, with wrk in interleaved rounds as ``bench/run.py`` measures (target: at least
  0.30 of the floor's requests per second);
- ingest: batches of 1,000 events through ``POST /api/v1/customers/touchpoints/batch`` from
  several concurrent senders, a realistic mix (``bench/customers_ingest.py``), against a raw
  ``COPY`` of the same events into ``customers_touchpoint`` (target: at least 0.05 of COPY's
  rows per second).

The generator always runs (the other figures need its population); ``--only`` picks the
sections measured after it. Results go to ``bench/results/customers-<section>.json`` (one file
per section, so a partial run keeps the others), ``docs/benchmarks-customers.md`` and the
"Customers" section of ``docs/benchmarks.md``. Exits non-zero when a figure misses its target.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # import bench.* and the project, not bench/ modules by bare name
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import customers_report, machine, server, wrk  # noqa: E402
from bench.run import bench_env, git_info, log, machine_info, manage, step  # noqa: E402

SECTIONS = ("generator", "segment", "timeline", "ingest")
FLOOR_PATH = "/bench/floor"
TIMELINE_PATH = "/api/v1/customers/{id}/timeline"
SEGMENT_NAME = "bench: web shoppers opted in on email, revenue >= 100"
SEGMENT_SQL = """
SELECT count(*) FROM customers_customer c
WHERE c.erased_at IS NULL
  AND EXISTS (SELECT 1 FROM customers_customerchannelstat s
              WHERE s.customer_id = c.id AND s.channel_id = %(web)s)
  AND EXISTS (SELECT 1 FROM customers_consentstate cs
              WHERE cs.customer_id = c.id AND cs.channel_id = %(email)s
                AND cs.status = 'opted_in')
  AND c.lifetime_revenue >= %(revenue)s
""".strip()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/customers.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="size of the population against 1,000,000 customers (e.g. 0.01 for a quick check; "
        "the heavy customer keeps 10,000 events)",
    )
    p.add_argument(
        "--only",
        default=",".join(SECTIONS[1:]),
        help=f"sections to measure after generating, of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--rounds", type=int, default=5, help="rounds of timeline and ingest")
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--warmup", type=float, default=3, help="warm-up seconds per endpoint")
    p.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    p.add_argument("--quiet-wait", type=float, default=60, help="wait for a quiet machine (s)")
    p.add_argument("--quiet-limit", type=float, default=0.2, help="CPUs other work may use")
    p.add_argument("--retries", type=int, default=2, help="repeats of a disturbed wrk round")
    p.add_argument("--timeline-pages", type=int, default=20, help="timeline pages B cycles over")
    p.add_argument("--senders", type=int, default=4, help="concurrent ingest senders")
    p.add_argument("--batch-size", type=int, default=1000, help="events per ingest batch")
    p.add_argument(
        "--ingest-batches",
        type=int,
        default=None,
        help="batches per ingest round (default 24; 4 when --scale < 1)",
    )
    p.add_argument("--segment-runs", type=int, default=7, help="timed runs of each segment count")
    p.add_argument(
        "--no-git", action="store_true", help="do not ask git for the commit (recorded unknown)"
    )
    args = p.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.only - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; use {', '.join(SECTIONS)}")
    if args.ingest_batches is None:
        args.ingest_batches = 24 if args.scale >= 1 else 4
    if not 0 < args.scale <= 1 or args.rounds < 1 or not 1 <= args.batch_size <= 1000:
        p.error("need 0 < --scale <= 1, --rounds >= 1 and 1 <= --batch-size <= 1000")
    return args


def http_get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def tokens() -> dict:
    from omni.models import ApiClient
    from omni.services import api_client_create, api_client_issue_token

    out = {}
    for name, access in (("bench-customers-read", "read"), ("bench-customers-write", "write")):
        client = ApiClient.objects.filter(name=name).first()
        out[access] = (
            api_client_issue_token(client=client)
            if client
            else api_client_create(name=name, access=access)[1]
        )
    return out


# --- segment --------------------------------------------------------------------------------


def bench_segment(args, meter) -> dict:
    from django.db import connection

    from customers.models import Segment, SegmentMatch, SegmentRule, SegmentRuleKind
    from customers.segments import rule_errors, segment_queryset
    from omni.models import Channel

    web = Channel.objects.get(code="web")
    email = Channel.objects.get(code="email")
    revenue = Decimal("100")
    segment, _ = Segment.objects.update_or_create(
        name=SEGMENT_NAME,
        defaults={
            "match": SegmentMatch.ALL,
            "description": "Three rules, for the benchmark (bench/customers.py).",
        },
    )
    segment.rules.all().delete()
    rules = [
        SegmentRule(segment=segment, kind=SegmentRuleKind.CHANNEL_USED, channel=web),
        SegmentRule(segment=segment, kind=SegmentRuleKind.CONSENT, channel=email),
        SegmentRule(segment=segment, kind=SegmentRuleKind.REVENUE_AT_LEAST, amount=revenue),
    ]
    for rule in rules:
        errors = rule_errors(rule)
        if errors:
            raise RuntimeError(f"segment rule {rule.kind}: {errors}")
    SegmentRule.objects.bulk_create(rules)
    params = {"web": web.pk, "email": email.pk, "revenue": revenue}
    connection.ensure_connection()
    raw = connection.connection

    def ours():
        return segment_queryset(segment).count()

    def hand_written():
        with raw.cursor() as cursor:
            cursor.execute(SEGMENT_SQL, params)
            return cursor.fetchone()[0]

    # The statements the ORM sends (the rules, then the count), for the report and EXPLAIN.
    sent = []

    def record(execute, sql, sql_params, many, context):
        sent.append((sql, sql_params))
        return execute(sql, sql_params, many, context)

    with connection.execute_wrapper(record):
        expected = ours()
    count_sql, count_params = sent[-1]
    check = hand_written()
    if check != expected:
        raise RuntimeError(f"segment: the ORM counts {expected:,}, the SQL {check:,}")
    log(f"segment: {expected:,} members; ORM sends {len(sent)} statements; warming up")
    for _ in range(2):
        ours()
        hand_written()
    meter.wait_quiet(limit=args.quiet_limit, max_wait=args.quiet_wait, log=log)
    cpu_before = meter.snapshot()
    runs = []
    for n in range(1, args.segment_runs + 1):
        order = ("orm", "sql") if n % 2 else ("sql", "orm")
        figures = {"run": n, "order": "→".join(x.upper() for x in order)}
        for name in order:
            started = time.perf_counter()
            got = ours() if name == "orm" else hand_written()
            figures[f"{name}_ms"] = round((time.perf_counter() - started) * 1000, 2)
            if got != expected:
                raise RuntimeError(f"segment run {n}: {name} counted {got}, not {expected}")
        figures["ratio"] = round(figures["orm_ms"] / figures["sql_ms"], 3)
        log(
            f"segment run {n}/{args.segment_runs}: ORM {figures['orm_ms']:.1f} ms, "
            f"SQL {figures['sql_ms']:.1f} ms, ratio {figures['ratio']:.2f}"
        )
        runs.append(figures)
    other_cpus = meter.between(cpu_before, meter.snapshot())["other_cpus"]
    plans = {}
    with raw.cursor() as cursor:
        for name, sql, sql_params in (
            ("orm", count_sql, count_params),
            ("sql", SEGMENT_SQL, params),
        ):
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, sql_params)
            plan = cursor.fetchone()[0][0]
            cursor.execute("EXPLAIN " + sql, sql_params)
            plans[name] = {
                "planning_ms": round(plan["Planning Time"], 2),
                "execution_ms": round(plan["Execution Time"], 2),
                "text": [row[0] for row in cursor.fetchall()],
            }
    connection.close()
    median_orm = statistics.median(r["orm_ms"] for r in runs)
    median_sql = statistics.median(r["sql_ms"] for r in runs)
    return {
        "segment": SEGMENT_NAME,
        "rules": ["used web", "opted in on email", f"lifetime revenue >= {revenue}"],
        "members": expected,
        "runs": runs,
        "median_orm_ms": median_orm,
        "median_sql_ms": median_sql,
        "ratio": round(median_orm / median_sql, 3),
        "other_cpus_during_runs": other_cpus,
        "orm_statements": [_interpolate(sql, p) for sql, p in sent],
        "sql": SEGMENT_SQL,
        "plans": plans,
    }


def _interpolate(sql: str, params) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        return cursor.mogrify(sql, params).decode()


# --- timeline -------------------------------------------------------------------------------


def count_timeline_queries(token: str, customer_id: int) -> dict:
    """SQL queries per timeline page, through the whole stack in process."""
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    headers = {"Authorization": f"Token {token}", "Host": "127.0.0.1"}
    path = TIMELINE_PATH.format(id=customer_id)
    connection.close()
    counts, sql = [], []
    for n in range(6):
        close_old_connections()
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"timeline in process: {response.status_code} {response.content!r}")
        nxt = response.json().get("next")
        if n and nxt:  # the first request also checks the token and prepares statements
            counts.append(len(captured.captured_queries))
            sql = [q["sql"] for q in captured.captured_queries]
        if nxt:
            parts = urllib.parse.urlsplit(nxt)
            path = f"{parts.path}?{parts.query}"
    connection.close()
    if not counts:
        raise RuntimeError(f"timeline of customer {customer_id}: fewer than two pages")
    return {"max": max(counts), "mean": round(statistics.mean(counts), 2), "sql": sql}


def timeline_paths(base_url: str, token: str, customer_id: int, pages: int) -> dict:
    """Follow the cursors from the first page; check each page; the paths B asks for."""
    auth = {"Authorization": f"Token {token}"}
    first = TIMELINE_PATH.format(id=customer_id)
    path, paths, seen, previous_key, sizes = first, [], set(), None, []
    for n in range(pages):
        status, body = http_get(base_url + path, auth)
        if status != 200:
            raise RuntimeError(f"timeline page {n + 1}: HTTP {status} {body[:300]!r}")
        data = json.loads(body)
        results = data.get("results") or []
        if not results:
            raise RuntimeError(f"timeline page {n + 1}: no events: {body[:300]!r}")
        for event in results:
            key = (datetime.fromisoformat(event["occurred_at"]), event["id"])
            if previous_key is not None and key >= previous_key:
                raise RuntimeError(f"timeline page {n + 1}: not newest first at {event}")
            if event["id"] in seen:
                raise RuntimeError(f"timeline page {n + 1}: event {event['id']} seen before")
            seen.add(event["id"])
            previous_key = key
        paths.append(path)
        sizes.append(len(body))
        if not data.get("next"):
            break
        parts = urllib.parse.urlsplit(data["next"])
        path = f"{parts.path}?{parts.query}"
    status, body = http_get(base_url + first)
    if status != 401:
        raise RuntimeError(f"timeline without a token: expected 401, got HTTP {status}")
    # Half the requests ask for the first page (what the profile shows), half for the later
    # pages reached by their cursors.
    cycle = []
    for later in paths[1:] or paths:
        cycle += [first, later]
    return {
        "pages": len(paths),
        "events_checked": len(seen),
        "page_size": len(json.loads(http_get(base_url + first, auth)[1])["results"]),
        "body_bytes_mean": round(statistics.mean(sizes)),
        "paths": cycle,
    }


def bench_timeline(args, base_url, tmp, token, customer_id, meter) -> dict:
    from bench import run as floor_run

    checked = timeline_paths(base_url, token, customer_id, args.timeline_pages)
    log(
        f"timeline preflight: {checked['pages']} pages of {checked['page_size']} events newest "
        f"first ({checked['events_checked']:,} events, ~{checked['body_bytes_mean']:,} bytes a "
        "page), no token 401"
    )
    scripts = {
        "a": wrk.write_script(
            tmp / "floor.lua", paths=[FLOOR_PATH], headers={}, threads=args.threads
        ),
        "b": wrk.write_script(
            tmp / "timeline.lua",
            paths=checked.pop("paths"),
            headers={"Authorization": f"Token {token}"},
            threads=args.threads,
        ),
    }
    rounds = floor_run.measure(
        base_url=base_url,
        scripts=scripts,
        args=args,
        meter=meter,
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        label="timeline ",
    )
    counted = [r for r in rounds if not r["disturbed"]] or rounds
    return {
        "customer": customer_id,
        "preflight": checked,
        "wrk": {
            "version": wrk.version(),
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
        "rounds": [
            {
                "round": r["round"],
                "order": r["order"],
                "floor_rps": r["a"]["rps"],
                "timeline_rps": r["b"]["rps"],
                "ratio": r["ratio"],
                "timeline_p50_ms": r["b"]["latency_ms"].get("p50"),
                "timeline_p99_ms": r["b"]["latency_ms"].get("p99"),
                "other_cpus": r["other_cpus_max"],
                "disturbed": r["disturbed"],
            }
            for r in rounds
        ],
        "rounds_in_median": [r["round"] for r in counted],
        "median_floor_rps": statistics.median(r["a"]["rps"] for r in counted),
        "median_timeline_rps": statistics.median(r["b"]["rps"] for r in counted),
        "ratio": round(statistics.median(r["ratio"] for r in counted), 4),
    }


# --- main -----------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="omni-bench-cust-") as tmp_name:
        return _main(args, Path(tmp_name))


def _main(args, tmp: Path) -> int:
    env = bench_env(tmp)
    step("migrating")
    log(f"migrated in {manage(env, 'migrate', '--noinput'):.1f} s")
    step("collecting static files")
    log(f"collectstatic in {manage(env, 'collectstatic', '--noinput'):.1f} s")
    import django

    django.setup()
    from django.db import connections

    from bench import customers_data, customers_ingest

    common = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": {"commit": "unknown", "dirty": False} if args.no_git else git_info(),
        "machine": machine_info(),
        "scale": args.scale,
    }
    size = customers_data.sizes(args.scale)
    meter = machine.CpuMeter(pg_port=os.environ.get("OMNI_PG_PORT"))
    meter.wait_quiet(limit=args.quiet_limit, max_wait=args.quiet_wait, log=log)
    cpu_before = meter.snapshot()
    step(
        f"generating the population: {size['customers']:,} customers, "
        f"{size['touchpoints']:,} touchpoints (scale {args.scale:g})"
    )
    dataset = customers_data.generate(log, scale=args.scale)
    dataset["other_cpus_during"] = meter.between(cpu_before, meter.snapshot())["other_cpus"]
    step("checking the population")
    dataset["checks"] = customers_data.check(size)
    log(
        f"checks {'passed' if dataset['checks']['ok'] else 'FAILED'}: {dataset['checks']}"
        if not dataset["checks"]["ok"]
        else "checks passed: channel rows add up to the touchpoints, lifetime orders to the "
        f"purchases, the heavy customer has {dataset['checks']['heavy_customer_touchpoints']:,} "
        "events, identities are normalised"
    )
    written = {}
    if not dataset.get("reused"):
        written["generator"] = customers_report.save("generator", {**common, **dataset})
    keys = tokens()
    if "segment" in args.only:
        step("segment of three rules over the customers: ORM against hand-written SQL")
        result = bench_segment(args, meter)
        written["segment"] = customers_report.save("segment", {**common, **result})
    heavy = size["heavy_customer"]
    queries = None
    if "timeline" in args.only:
        queries = count_timeline_queries(keys["read"], heavy)
        log(f"timeline page: {queries['max']} SQL queries at most (in process)")
    connections.close_all()
    if {"timeline", "ingest"} & args.only:
        gunicorn = server.Gunicorn(
            env=env,
            workers=args.workers,
            worker_class="sync",
            threads=1,
            log_path=tmp / "gunicorn.log",
            log=log,
        )
        with gunicorn:
            meter.server_pgid = gunicorn.process.pid
            base = gunicorn.base_url
            config = gunicorn.config
            if "timeline" in args.only:
                step(
                    f"timeline of the customer with {size['heavy_touchpoints']:,} events "
                    f"against the floor: {args.rounds} rounds x {args.duration:g} s, "
                    f"wrk -t{args.threads} -c{args.connections}"
                )
                result = bench_timeline(args, base, tmp, keys["read"], heavy, meter)
                result.update({"queries": queries, "gunicorn": config})
                written["timeline"] = customers_report.save("timeline", {**common, **result})
            if "ingest" in args.only:
                step(
                    f"touchpoint ingest through the API against COPY: {args.rounds} rounds x "
                    f"{args.ingest_batches} batches of {args.batch_size} events"
                )
                result = customers_ingest.bench_ingest(args, base, keys["write"], size, log, meter)
                result["gunicorn"] = config
                result["server_log_tail"] = gunicorn.tail(20)
                written["ingest"] = customers_report.save("ingest", {**common, **result})
    step("report")
    sections = customers_report.write_docs()
    for path in written.values():
        log(f"wrote {path.relative_to(ROOT)}")
    log(
        f"wrote {customers_report.DOCS.relative_to(ROOT)} and the Customers section of "
        f"{customers_report.SUMMARY.relative_to(ROOT)}"
    )
    failed = False
    for row in customers_report.verdicts(sections):
        if row["section"] not in written:
            continue
        failed |= not row["ok"]
        print(
            f"{'PASS' if row['ok'] else 'FAIL'}  {row['what']}: {row['ratio']} "
            f"({row['measured']}; {row['baseline']}; target {row['target']})"
            + (f"  [scale {row['scale']:g}: a quick check]" if row["scale"] != 1 else "")
        )
    return 1 if failed or not dataset["checks"]["ok"] else 0


def _on_signal(signum, frame):
    print(f"bench: stopped by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through the blocks that stop gunicorn


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
