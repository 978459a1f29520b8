#!/usr/bin/env python3
"""Omni's inventory benchmarks (run by ``make bench-inventory``).

    make bench-inventory [ARGS="--rounds 5 --duration 5 --only lookup,batch,hot,pos,admin"]

On a throwaway PostgreSQL (``make bench-inventory`` starts one): migrates, generates the
catalog (100,000 variants) and the stock (50 locations x 100,000 variants = 5 million stock
rows with their opening receipts), then measures, each against a baseline in the same run:

- lookup: ``GET /api/v1/inventory/availability/web/<SKU>/`` against the framework floor
  (wrk, interleaved rounds; target >= 0.33, at most 2 SQL queries);
- batch: availability of 100 SKUs (the selector the batch endpoint runs) against the same
  query run raw through psycopg2, in rows per second (target >= 0.30); the HTTP endpoint is
  timed too, for information;
- hot: 64 concurrent buyers reserving one unit each of a SKU with 500 units through the API
  (exactly 500 must succeed, the rest get ``insufficient_stock``), and the throughput against
  pgbench running a conditional single-row decrement with 64 clients (target >= 0.25);
- pos: a POS batch of 10,000 movements through the API against a raw COPY of the same rows
  (target >= 0.10), and its replay (>= 20 times faster than the first, writes nothing);
- admin: the stock changelist filtered by one location (p95 < 500 ms, at most 5 queries).

Results go to ``bench/results/inventory.json`` and ``docs/benchmarks-inventory.md``.
"""

import argparse
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import machine, server, wrk  # noqa: E402
from bench.report import put_block  # noqa: E402
from bench.run import bench_env, git_info, log, machine_info, manage, step  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "inventory.json"
DOCS = ROOT / "docs" / "benchmarks-inventory.md"
SUMMARY = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- inventory:begin (written by bench/inventory.py, make bench-inventory) -->"
END = "<!-- inventory:end -->"
FLOOR_PATH = "/bench/floor"
AVAILABILITY_PATH = "/api/v1/inventory/availability/web/{sku}/"
BATCH_PATH = "/api/v1/inventory/availability/web/batch/"
RESERVE_PATH = "/api/v1/inventory/reservations/"
POS_PATH = "/api/v1/inventory/movements/batches/"
TARGETS = {
    "lookup_ratio": 0.33,
    "lookup_queries": 2,
    "batch_ratio": 0.30,
    "hot_ratio": 0.25,
    "pos_ratio": 0.10,
    "pos_replay_speedup": 20,
    "admin_p95_ms": 500,
    "admin_queries": 5,
    "reconcile_ratio_to_raw": 2.0,
    "reconcile_speedup_over_loop": 200,
    "reconcile_memory_mb": 300,
}
HOT_UNITS = 500
HOT_CLIENTS = 64
HOT_EXACT_SECONDS = 10
POS_MOVEMENTS = 10_000
PGBENCH = Path(os.environ.get("OMNI_PG_BIN", "/usr/lib/postgresql/15/bin")) / "pgbench"

HOT_LUA = """
local counter = 0
ok, short, other = 0, 0, 0  -- globals: done() reads them from each thread
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"channel": "web", "reference": "%(prefix)s-%%d-%%d", '
    .. '"lines": [{"sku": "%(sku)s", "quantity": 1}]}',
    id, counter)
  return wrk.format("POST", "%(path)s", {
    ["Authorization"] = "Token %(token)s",
    ["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 201 then ok = ok + 1
  elseif status == 409 and string.find(body, "insufficient_stock", 1, true) then short = short + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok"); b = b + t:get("short"); c = c + t:get("other")
  end
  io.write(string.format('HOT {"ok": %%d, "short": %%d, "other": %%d, '
    .. '"requests": %%d, "duration_us": %%d}\\n', a, b, c, summary.requests, summary.duration))
end
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/inventory.py", description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--quiet-wait", type=float, default=60)
    p.add_argument("--quiet-limit", type=float, default=0.2)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--only", default="lookup,batch,hot,pos,admin,reconcile")
    return p.parse_args(argv)


# --- helpers --------------------------------------------------------------------------------


def http(method, url, *, token=None, body=None, timeout=120):
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body else None
    headers = {"Content-Type": "application/json"} if data else {}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def tokens() -> dict:
    from omni.models import ApiClient
    from omni.services import api_client_create, api_client_issue_token

    out = {}
    for name, access in (("bench-inventory-read", "read"), ("bench-inventory-write", "write")):
        client = ApiClient.objects.filter(name=name).first()
        out[access] = (
            api_client_issue_token(client=client)
            if client
            else api_client_create(name=name, access=access)[1]
        )
    return out


def sample_skus(count, seed=7) -> list[str]:
    from catalog.models import Variant

    skus = list(Variant.objects.order_by("pk").values_list("sku", flat=True))
    return random.Random(seed).sample(skus, count)


def timed_loop(func, seconds) -> tuple[int, float]:
    n, started = 0, time.perf_counter()
    while True:
        func()
        n += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return n, elapsed


# --- lookup ---------------------------------------------------------------------------------


def count_lookup_queries(token, skus) -> dict:
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    headers = {"Authorization": f"Token {token}", "Host": "127.0.0.1"}

    def lookup(sku):
        close_old_connections()
        response = client.get(AVAILABILITY_PATH.format(sku=sku), headers=headers)
        if response.status_code != 200 or response.json().get("sku") != sku:
            raise RuntimeError(f"availability {sku}: {response.status_code} {response.content!r}")

    connection.close()
    lookup(skus[0])
    counts, sql = [], []
    for sku in skus[1:]:
        with CaptureQueriesContext(connection) as captured:
            lookup(sku)
        counts.append(len(captured.captured_queries))
        sql = [q["sql"] for q in captured.captured_queries]
    return {"max": max(counts), "mean": round(statistics.mean(counts), 2), "sql": sql}


def bench_lookup(args, base_url, tmp, token, skus, meter) -> dict:
    from bench import run as sku_run

    scripts = {
        "a": wrk.write_script(
            tmp / "floor.lua", paths=[FLOOR_PATH], headers={}, threads=args.threads
        ),
        "b": wrk.write_script(
            tmp / "availability.lua",
            paths=[AVAILABILITY_PATH.format(sku=s) for s in skus],
            headers={"Authorization": f"Token {token}"},
            threads=args.threads,
        ),
    }
    rounds = sku_run.measure(
        base_url=base_url,
        scripts=scripts,
        args=args,
        meter=meter,
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        label="lookup ",
    )
    counted = [r for r in rounds if not r["disturbed"]] or rounds
    return {
        "rounds": [
            {
                "round": r["round"],
                "order": r["order"],
                "floor_rps": r["a"]["rps"],
                "lookup_rps": r["b"]["rps"],
                "ratio": r["ratio"],
                "lookup_p99_ms": r["b"]["latency_ms"].get("p99"),
                "disturbed": r["disturbed"],
            }
            for r in rounds
        ],
        "median_ratio": round(statistics.median(r["ratio"] for r in counted), 3),
    }


# --- batch ----------------------------------------------------------------------------------


def bench_batch(args, base_url, token, skus) -> dict:
    from django.db import connection

    from catalog.models import Variant
    from inventory import selectors

    batches = [skus[i : i + 100] for i in range(0, 2000, 100)]
    queryset = selectors._with_availability(
        Variant.objects.filter(sku__in=batches[0]), "web", "web"
    )
    sql, params = queryset.query.sql_with_params()
    connection.ensure_connection()
    raw = connection.connection  # the psycopg2 connection under Django's wrapper

    def raw_query(batch):
        with raw.cursor() as cursor:
            cursor.execute(sql, _swap_params(params, batches[0], batch))
            rows = cursor.fetchall()
        return len(rows)

    def ours(batch):
        results, unknown = selectors.availability_batch(batch, "web")
        return len(results)

    rounds = []
    for n in range(1, args.rounds + 1):
        order = ("ours", "raw") if n % 2 else ("raw", "ours")
        figures = {}
        for name in order:
            func = ours if name == "ours" else raw_query
            i = 0

            def one(func=func, name=name):
                nonlocal i
                rows = func(batches[i % len(batches)])
                if rows != 100:
                    raise RuntimeError(f"{name}: {rows} rows instead of 100")
                i += 1

            count, seconds = timed_loop(one, min(args.duration, 3))
            figures[name] = round(count * 100 / seconds)
        ratio = figures["ours"] / figures["raw"]
        log(
            f"batch round {n}: selector {figures['ours']:,} rows/s, "
            f"raw {figures['raw']:,} rows/s, ratio {ratio:.3f}"
        )
        rounds.append(
            {
                "round": n,
                "selector_rows_s": figures["ours"],
                "raw_rows_s": figures["raw"],
                "ratio": round(ratio, 3),
            }
        )
    connection.close()
    # The whole endpoint over HTTP, for information (one client, sequential).
    api_times = []
    for batch in batches[:10] * 3:
        started = time.perf_counter()
        status, body = http("POST", base_url + BATCH_PATH, token=token, body={"skus": batch})
        api_times.append(time.perf_counter() - started)
        if status != 200 or len(json.loads(body)["results"]) != 100:
            raise RuntimeError(f"batch endpoint: HTTP {status} {body[:200]!r}")
    return {
        "rounds": rounds,
        "median_ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        "http_endpoint_ms_median": round(statistics.median(api_times) * 1000, 2),
        "http_endpoint_rows_s": round(100 / statistics.median(api_times)),
        "sql": sql,
    }


def _swap_params(params, old_batch, new_batch):
    out = []
    old = set(old_batch)
    replacement = iter(new_batch)
    for value in params:
        if isinstance(value, (list, tuple)) and set(value) == old:
            out.append(type(value)(new_batch))
        elif isinstance(value, str) and value in old:
            out.append(next(replacement))
        else:
            out.append(value)
    return out


# --- hot SKU --------------------------------------------------------------------------------


def hot_sku(units) -> str:
    """A fresh variant with ``units`` at one warehouse that feeds web, none elsewhere."""
    from catalog.models import Product, Variant
    from inventory.models import Location
    from inventory.services import availability_refresh, stock_receive

    suffix = f"{time.time_ns() % 10**9}"
    product = Product.objects.order_by("pk").first()
    variant = Variant.objects.create(product=product, sku=f"HOT-{suffix}", base_price=10)
    stock_receive(location=Location.objects.get(code="w01"), variant=variant, quantity=units)
    availability_refresh(variant_ids=[variant.pk])
    return variant.sku


def run_hot(base_url, token, sku, tmp, *, duration, prefix) -> dict:
    script = tmp / f"hot-{prefix}.lua"
    script.write_text(
        HOT_LUA % {"sku": sku, "token": token, "path": RESERVE_PATH, "prefix": prefix}
    )
    out = subprocess.run(
        [
            wrk.wrk_binary(),
            "-t2",
            f"-c{HOT_CLIENTS}",
            f"-d{duration:g}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            base_url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 90,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("HOT ")), None)
    if line is None:
        raise RuntimeError(f"wrk (hot) failed: {out.stdout}\n{out.stderr}")
    result = json.loads(line[4:])
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    return result


def run_pgbench(duration) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_hot")
        cursor.execute("CREATE TABLE bench_hot (id integer PRIMARY KEY, qty bigint NOT NULL)")
        cursor.execute("INSERT INTO bench_hot VALUES (1, 1000000000)")
    settings = connection.settings_dict
    script = Path(tempfile.mkstemp(suffix=".sql")[1])
    script.write_text("UPDATE bench_hot SET qty = qty - 1 WHERE id = 1 AND qty > 0;\n")
    env = dict(os.environ, PGPASSWORD=settings.get("PASSWORD") or "")
    cmd = [
        str(PGBENCH),
        "-n",
        "-c",
        str(HOT_CLIENTS),
        "-j",
        "2",
        "-T",
        str(int(duration)),
        "-f",
        str(script),
        "-h",
        settings["HOST"] or "127.0.0.1",
        "-p",
        str(settings["PORT"]),
        "-U",
        settings["USER"],
        settings["NAME"],
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    if not found:
        raise RuntimeError(f"pgbench failed: {out.stdout}\n{out.stderr}")
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_hot")
    return {"tps": round(float(found.group(1)), 1), "command": " ".join(cmd[:-1])}


def bench_hot(args, base_url, token, tmp) -> dict:
    from inventory.models import Reservation, StockLevel

    sku = hot_sku(HOT_UNITS)
    # Long enough for the 500 units to sell out at well under 100 reservations a second, so
    # that the rest of the run shows the refusals.
    exact = run_hot(base_url, token, sku, tmp, duration=HOT_EXACT_SECONDS, prefix="exact")
    level = StockLevel.objects.get(variant__sku=sku, location__code="w01")
    active = Reservation.objects.filter(variant__sku=sku, status="active")
    exact.update(
        {
            "sku": sku,
            "reserved_after": level.reserved,
            "on_hand_after": level.on_hand,
            "reservations": active.count(),
            "exact": exact["ok"] == HOT_UNITS
            and exact["other"] == 0
            and level.reserved == HOT_UNITS
            and active.count() == HOT_UNITS,
        }
    )
    log(
        f"hot SKU, {HOT_UNITS} units: {exact['ok']} reserved, {exact['short']} insufficient_stock, "
        f"{exact['other']} other; reserved {level.reserved}; {exact['rps']} req/s"
    )
    rounds = []
    for n in range(1, args.rounds + 1):
        sustained_sku = hot_sku(1_000_000)
        order = ("api", "pgbench") if n % 2 else ("pgbench", "api")
        figures = {}
        for name in order:
            if name == "api":
                result = run_hot(
                    base_url, token, sustained_sku, tmp, duration=args.duration, prefix=f"s{n}"
                )
                if result["other"] or result["short"]:
                    raise RuntimeError(f"sustained hot run: unexpected responses {result}")
                figures["api_rps"] = result["rps"]
            else:
                figures["pgbench_tps"] = run_pgbench(args.duration)["tps"]
        ratio = figures["api_rps"] / figures["pgbench_tps"]
        log(
            f"hot round {n}: API {figures['api_rps']:.0f} reservations/s, "
            f"pgbench {figures['pgbench_tps']:.0f} tps, ratio {ratio:.3f}"
        )
        rounds.append({"round": n, **figures, "ratio": round(ratio, 3)})
    return {
        "exactness": exact,
        "rounds": rounds,
        "median_ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        "mixed_run_ratio": round(
            exact["rps"] / statistics.median(r["pgbench_tps"] for r in rounds), 3
        ),
    }


# --- POS ingest -----------------------------------------------------------------------------


def pos_movements(n, seed) -> list[dict]:
    from catalog.models import Variant

    rng = random.Random(seed)
    ids = list(Variant.objects.order_by("pk").values_list("sku", flat=True)[:100_000])
    out = []
    for i in range(n):
        kind = rng.choice(("sale", "sale", "sale", "return", "receipt"))
        out.append(
            {
                "id": f"{seed}-{i}",
                "sku": rng.choice(ids),
                "kind": kind,
                "quantity": rng.randint(1, 3),
                "reference": f"ticket-{seed}-{i // 3}",
            }
        )
    return out


def raw_copy_seconds(movements, location_id) -> float:
    """COPY the same rows into the ledger, in a transaction rolled back."""
    from django.db import connection

    from catalog.models import Variant

    ids = dict(
        Variant.objects.filter(sku__in={m["sku"] for m in movements}).values_list("sku", "pk")
    )
    now = datetime.now(UTC).isoformat()
    buffer = io.StringIO()
    for m in movements:
        quantity = -m["quantity"] if m["kind"] == "sale" else m["quantity"]
        buffer.write(
            f"{location_id}\t{ids[m['sku']]}\t{m['kind']}\t{quantity}\tbench-copy\t{m['reference']}\t\t{m['id']}\t{now}\t{now}\n"
        )
    connection.ensure_connection()
    raw = connection.connection
    raw.autocommit = False
    try:
        with raw.cursor() as cursor:
            buffer.seek(0)
            started = time.perf_counter()
            cursor.copy_expert(
                "COPY inventory_stockmovement (location_id, variant_id, kind, quantity, source, "
                "reference, reason, idempotency_key, occurred_at, recorded_at) FROM STDIN",
                buffer,
            )
            seconds = time.perf_counter() - started
    finally:
        raw.rollback()
        raw.autocommit = True
    return seconds


def bench_pos(args, base_url, token) -> dict:
    from inventory.models import Location, StockMovement

    location = Location.objects.get(code="s07")
    rounds = []
    for n in range(1, args.rounds + 1):
        movements = pos_movements(POS_MOVEMENTS, seed=1000 + n)
        body = json.dumps(
            {
                "batch_id": f"bench-{n}-{time.time_ns()}",
                "location": location.code,
                "movements": movements,
            }
        ).encode()  # encoded once, outside the timings
        order = ("api", "copy") if n % 2 else ("copy", "api")
        figures = {}
        for name in order:
            if name == "copy":
                figures["copy_s"] = raw_copy_seconds(movements, location.pk)
                continue
            before = StockMovement.objects.count()
            started = time.perf_counter()
            status, reply = http("POST", base_url + POS_PATH, token=token, body=body, timeout=300)
            figures["api_s"] = time.perf_counter() - started
            if status != 201:
                raise RuntimeError(f"POS batch: HTTP {status} {reply[:300]!r}")
            written = StockMovement.objects.count() - before
            started = time.perf_counter()
            status, replay = http("POST", base_url + POS_PATH, token=token, body=body, timeout=300)
            figures["replay_s"] = time.perf_counter() - started
            if status != 200 or not json.loads(replay)["replayed"]:
                raise RuntimeError(f"POS replay: HTTP {status} {replay[:300]!r}")
            figures["rows_written"] = written
            figures["rows_written_by_replay"] = StockMovement.objects.count() - before - written
        ratio = figures["copy_s"] / figures["api_s"]
        speedup = figures["api_s"] / figures["replay_s"]
        log(
            f"pos round {n}: API {POS_MOVEMENTS / figures['api_s']:,.0f} rows/s "
            f"({figures['api_s']:.2f} s), COPY {POS_MOVEMENTS / figures['copy_s']:,.0f} rows/s, "
            f"ratio {ratio:.3f}; replay {figures['replay_s'] * 1000:.0f} ms "
            f"({speedup:.0f}x faster, {figures['rows_written_by_replay']} rows written)"
        )
        rounds.append(
            {
                "round": n,
                **{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
                "ratio": round(ratio, 3),
                "replay_speedup": round(speedup, 1),
            }
        )
    return {
        "rounds": rounds,
        "median_ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        "median_replay_speedup": round(statistics.median(r["replay_speedup"] for r in rounds), 1),
        "replay_wrote": sum(r["rows_written_by_replay"] for r in rounds),
    }


# --- admin ----------------------------------------------------------------------------------


def bench_admin(args) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from inventory.models import Location

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    locations = list(Location.objects.order_by("code").values_list("pk", flat=True))
    times, queries = [], []
    for i in range(60):
        url = f"/admin/inventory/stocklevel/?location__id__exact={locations[i % len(locations)]}"
        if i % 3 == 1:
            url += "&p=5"
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url, headers={"Host": "127.0.0.1"})
            elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"admin changelist: HTTP {response.status_code}")
        if i >= 5:  # the first requests warm caches (templates, statements)
            times.append(elapsed * 1000)
            queries.append(len(captured.captured_queries))
    times.sort()
    return {
        "requests": len(times),
        "p50_ms": round(times[len(times) // 2], 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "max_queries": max(queries),
        "sql": [q["sql"][:300] for q in captured.captured_queries],
    }


# --- report ---------------------------------------------------------------------------------


def verdicts(results) -> list[tuple[str, str, str, bool]]:
    rows = []
    t = TARGETS
    if "lookup" in results:
        rows.append(
            (
                "availability of one SKU, ratio to the floor",
                f"{results['lookup']['median_ratio']}",
                f">= {t['lookup_ratio']}",
                results["lookup"]["median_ratio"] >= t["lookup_ratio"],
            )
        )
        rows.append(
            (
                "SQL queries per availability lookup",
                f"{results['lookup_queries']['max']}",
                f"<= {t['lookup_queries']}",
                results["lookup_queries"]["max"] <= t["lookup_queries"],
            )
        )
    if "batch" in results:
        rows.append(
            (
                "batch of 100 SKUs, ratio to raw psycopg2 (rows/s)",
                f"{results['batch']['median_ratio']}",
                f">= {t['batch_ratio']}",
                results["batch"]["median_ratio"] >= t["batch_ratio"],
            )
        )
    if "hot" in results:
        h = results["hot"]
        rows.append(
            (
                "hot SKU: exactly 500 of the buyers succeed",
                f"{h['exactness']['ok']} ok, {h['exactness']['short']} insufficient_stock, "
                f"{h['exactness']['other']} other",
                "500 ok, 0 other",
                h["exactness"]["exact"],
            )
        )
        rows.append(
            (
                "hot SKU throughput, ratio to pgbench",
                f"{h['median_ratio']}",
                f">= {t['hot_ratio']}",
                h["median_ratio"] >= t["hot_ratio"],
            )
        )
    if "pos" in results:
        p = results["pos"]
        rows.append(
            (
                "POS batch of 10,000, ratio to raw COPY (rows/s)",
                f"{p['median_ratio']}",
                f">= {t['pos_ratio']}",
                p["median_ratio"] >= t["pos_ratio"],
            )
        )
        rows.append(
            (
                "POS replay, times faster than the first apply",
                f"{p['median_replay_speedup']}",
                f">= {t['pos_replay_speedup']}",
                p["median_replay_speedup"] >= t["pos_replay_speedup"],
            )
        )
        rows.append(
            ("rows written by the replays", f"{p['replay_wrote']}", "0", p["replay_wrote"] == 0)
        )
    if "admin" in results:
        a = results["admin"]
        rows.append(
            (
                "admin stock changelist by location, p95",
                f"{a['p95_ms']} ms",
                f"< {t['admin_p95_ms']} ms",
                a["p95_ms"] < t["admin_p95_ms"],
            )
        )
        rows.append(
            (
                "admin stock changelist, SQL queries",
                f"{a['max_queries']}",
                f"<= {t['admin_queries']}",
                a["max_queries"] <= t["admin_queries"],
            )
        )
    if "reconcile" in results:
        r = results["reconcile"]
        rows.append(
            (
                "reconcile of 5M rows, wall time against raw SQL",
                f"x{r['ratio_to_raw']}",
                f"<= x{t['reconcile_ratio_to_raw']}",
                r["ratio_to_raw"] <= t["reconcile_ratio_to_raw"],
            )
        )
        rows.append(
            (
                "reconcile, times faster than a row-by-row ORM loop",
                f"{r['speedup_over_loop']}",
                f">= {t['reconcile_speedup_over_loop']}",
                r["speedup_over_loop"] >= t["reconcile_speedup_over_loop"],
            )
        )
        rows.append(
            (
                "reconcile worker peak memory",
                f"{r['reconcile']['maxrss_mb']:.0f} MB",
                f"< {t['reconcile_memory_mb']} MB",
                r["reconcile"]["maxrss_mb"] < t["reconcile_memory_mb"],
            )
        )
    return rows


def bar(value, scale, width=40) -> str:
    blocks = int(round(min(value / scale, 1.0) * width))
    return "█" * blocks


def write_docs(results) -> None:
    lines = [
        "# Inventory benchmarks",
        "",
        "<!-- Generated by bench/inventory.py (make bench-inventory); "
        "change that file, not this one. -->",
        "",
        f"Last run: {results['timestamp']}, commit `{results['code']['commit']}`"
        + (" (with uncommitted changes)" if results["code"]["dirty"] else "")
        + f", {results['machine']['nproc']} CPUs, PostgreSQL {results['machine']['postgresql']}. "
        f"Data: {results['dataset'].get('stock_rows', 0):,} stock rows "
        "(50 locations x 100,000 variants). "
        "Full results: `bench/results/inventory.json`. Command: `make bench-inventory`.",
        "",
    ]
    carried = results.get("carried_over") or {}
    if carried:
        lines += [
            "Measured in earlier runs of the same command and kept: "
            + ", ".join(f"{key} ({when})" for key, when in sorted(carried.items()))
            + ".",
            "",
        ]
    lines += [
        "| what | measured | target | |",
        "|---|---:|---:|---|",
    ]
    for name, measured, target, ok in verdicts(results):
        lines.append(f"| {name} | {measured} | {target} | {'pass' if ok else '**FAIL**'} |")
    lines.append("")
    ds = results["dataset"]
    if ds.get("stages"):
        lines += ["## Data set", "", "| stage | rows | elapsed s |", "|---|---:|---:|"]
        lines += [f"| {s['stage']} | {s['rows']:,} | {s['seconds']} |" for s in ds["stages"]]
        lines += [
            "",
            "The full availability sweep (100,000 variants on 4 fed channels) took "
            f"{ds.get('availability_sweep_s')} s.",
            "",
        ]
    charts = []
    for key, label in (
        ("lookup", "availability lookup / floor"),
        ("batch", "batch selector / raw psycopg2"),
        ("hot", "hot SKU API / pgbench"),
        ("pos", "POS batch API / COPY"),
    ):
        if key in results:
            charts.append((label, results[key]["median_ratio"], TARGETS[f"{key}_ratio"]))
    if charts:
        lines += ["## Ratios against their baselines", "", "```text"]
        for label, value, target in charts:
            lines.append(f"{label:<32} {value:6.3f}  {bar(value, 1.0)}  (target {target})")
        lines += ["```", ""]
    for key, title, columns in (
        (
            "lookup",
            "Availability of one SKU (wrk, interleaved rounds)",
            ("round", "order", "floor_rps", "lookup_rps", "ratio", "lookup_p99_ms"),
        ),
        (
            "batch",
            "Batch of 100 SKUs, rows per second",
            ("round", "selector_rows_s", "raw_rows_s", "ratio"),
        ),
        ("hot", "Hot SKU, sustained (64 clients)", ("round", "api_rps", "pgbench_tps", "ratio")),
        (
            "pos",
            "POS batch of 10,000 movements",
            (
                "round",
                "api_s",
                "copy_s",
                "ratio",
                "replay_s",
                "replay_speedup",
                "rows_written_by_replay",
            ),
        ),
    ):
        if key not in results:
            continue
        lines += [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in results[key]["rounds"]:
            lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
        lines.append("")
    if "batch" in results:
        lines += [
            "The batch endpoint over HTTP (one client, sequential) answered 100 SKUs in "
            f"{results['batch']['http_endpoint_ms_median']} ms (median), "
            f"{results['batch']['http_endpoint_rows_s']:,} rows/s.",
            "",
        ]
    if "hot" in results:
        e = results["hot"]["exactness"]
        lines += [
            f"Hot SKU exactness run (500 units, 64 clients, {HOT_EXACT_SECONDS} s): "
            f"{e['ok']} reservations, "
            f"{e['short']} `insufficient_stock`, {e['other']} other responses, "
            f"{e['rps']} requests/s; afterwards reserved = {e['reserved_after']}, "
            f"active reservations = {e['reservations']}.",
            "",
        ]
        if "lookup" in results:
            lines += [hot_scale(results), ""]
    if "reconcile" in results:
        r = results["reconcile"]
        lines += [
            "## Reconciliation",
            "",
            "| step (raw SQL baseline) | seconds | rows |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {s['step']} | {s['seconds']} | {s['rows']:,} |" for s in r["raw_sql"]["steps"]
        ]
        rec = r["reconcile"]
        lines += [
            "",
            f"`stock_reconcile` over {r['data']['lines']:,} count lines in {r['data']['counts']} "
            f"counts: {rec['seconds']:.1f} s against {r['raw_sql']['seconds']} s of raw SQL "
            f"(x{r['ratio_to_raw']}); {rec['discrepancies']:,} discrepancies, "
            f"{rec['auto_applied']:,} applied within tolerance, {rec['pending']:,} pending; "
            f"peak memory {rec['maxrss_mb']:.0f} MB. A row-by-row ORM loop took "
            f"{r['orm_loop']['per_line_s'] * 1e6:.0f} µs per line on a sample of "
            f"{r['orm_loop']['sample_lines']:,}: about "
            f"{r['orm_loop']['estimated_all_lines_s']:,} s "
            f"for all ({r['speedup_over_loop']}x slower).",
            "",
        ]
    if "admin" in results:
        a = results["admin"]
        lines += [
            "Admin stock changelist filtered by one location (in process, "
            f"{a['requests']} requests): p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms, "
            f"{a['max_queries']} queries.",
            "",
        ]
    DOCS.write_text("\n".join(lines))
    put_block(SUMMARY, BEGIN, END, summary_block(results))


def hot_scale(results) -> str:
    """The hot-SKU target set against the cheapest request this API serves, both measured in
    this run: the one-query availability lookup (a read, no transaction) bounds what any
    reservation (a write transaction) can reach on the same machine."""
    lookup = statistics.median(r["lookup_rps"] for r in results["lookup"]["rounds"])
    floor = statistics.median(r["floor_rps"] for r in results["lookup"]["rounds"])
    pgbench = statistics.median(r["pgbench_tps"] for r in results["hot"]["rounds"])
    api = statistics.median(r["api_rps"] for r in results["hot"]["rounds"])
    target = TARGETS["hot_ratio"] * pgbench
    return (
        f"For scale: the target, {TARGETS['hot_ratio']} of pgbench's {pgbench:,.0f} tps, is "
        f"{target:,.0f} reservations/s. The framework floor (an empty view) ran at "
        f"{floor:,.0f} req/s in this run and the availability lookup, one indexed read and no "
        f"transaction, at {lookup:,.0f} req/s, {lookup / pgbench:.3f} of pgbench: below the "
        f"target already. The reservations ran at {api:,.0f}/s, {api / lookup:.3f} of the lookup."
    )


def summary_block(results) -> str:
    """The "Inventory" section of docs/benchmarks.md: every figure against its target."""
    carried = results.get("carried_over") or {}
    lines = [
        BEGIN,
        "## Inventory",
        "",
        f"Last run: {results['timestamp']}, commit `{results['code']['commit'][:7]}`, on "
        f"{results['dataset'].get('stock_rows', 0):,} stock rows (50 locations x 100,000 "
        "variants). Details: [benchmarks-inventory.md](benchmarks-inventory.md). Command: "
        "`make bench-inventory`."
        + (f" Kept from earlier runs: {', '.join(sorted(carried))}." if carried else ""),
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
    ]
    for name, measured, target, ok in verdicts(results):
        lines.append(f"| {name} | {measured} | {target} | {'pass' if ok else '**FAIL**'} |")
    lines.append(END)
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="omni-bench-inv-") as tmp_name:
        tmp = Path(tmp_name)
        env = bench_env(tmp)
        step("migrating")
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        import django

        django.setup()
        from django.db import connections

        from bench import generate, inventory_data

        step("generating the catalog (100,000 variants)")
        catalog = generate.generate(log)
        step("generating stock: 50 locations x 100,000 variants")
        dataset = inventory_data.generate(log)
        dataset["catalog_seconds"] = catalog.get("seconds")
        keys = tokens()
        skus = sample_skus(5000)
        results = {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "code": git_info(),
            "machine": machine_info(),
            "dataset": dataset,
            "targets": TARGETS,
        }
        if "lookup" in only:
            results["lookup_queries"] = count_lookup_queries(keys["read"], skus[:21])
            log(f"availability lookup: {results['lookup_queries']['max']} queries at most")
        if "admin" in only:
            step("admin stock changelist filtered by location")
            results["admin"] = bench_admin(args)
            log(
                f"admin: p95 {results['admin']['p95_ms']} ms, "
                f"{results['admin']['max_queries']} queries"
            )
        connections.close_all()
        meter = machine.CpuMeter(pg_port=os.environ.get("OMNI_PG_PORT"))
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
            if "lookup" in only:
                step("availability lookup against the floor")
                results["lookup"] = bench_lookup(args, base, tmp, keys["read"], skus, meter)
            if "batch" in only:
                step("batch availability of 100 SKUs against raw psycopg2")
                results["batch"] = bench_batch(args, base, keys["read"], skus)
            if "pos" in only:
                step("POS batches of 10,000 movements against COPY")
                results["pos"] = bench_pos(args, base, keys["write"])
            if "hot" in only:
                step("hot SKU: 64 buyers")
                results["hot"] = bench_hot(args, base, keys["write"], tmp)
            results["server_log_tail"] = gunicorn.tail(20)
        if "reconcile" in only:
            from bench import inventory_reconcile

            step("reconciliation of every stock row, 5% different, against raw SQL")
            results["reconcile"] = inventory_reconcile.bench_reconcile(env, log)
        sections = ("lookup", "lookup_queries", "batch", "hot", "pos", "admin", "reconcile")
        if RESULTS.exists() and any(key not in results for key in sections):
            # A partial run (--only): keep the other sections of the last run, saying so.
            previous = json.loads(RESULTS.read_text())
            carried = {}
            for key in sections:
                if key not in results and key in previous:
                    results[key] = previous[key]
                    carried[key] = previous.get("carried_over", {}).get(
                        key, previous.get("timestamp")
                    )
            results["carried_over"] = carried
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
        write_docs(results)
        failed = [name for name, _m, _t, ok in verdicts(results) if not ok]
        for name, measured, target, ok in verdicts(results):
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {measured} (target {target})")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
