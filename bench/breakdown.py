"""Where a SKU lookup spends its time, measured in process (call after ``django.setup()``).

Times the whole request through Django's WSGI handler (as gunicorn calls it, without the
network), then the pieces it is made of, calling the project's own functions: the token
check (as a lookup makes it: from the connection's token cache, then confirmed after the
view), the selector, rendering its result, the connection health check; the remainder is
the framework around them. The token check on a cache miss is timed too, for reference.
Database time is split from Python time with an ``execute_wrapper``, and PostgreSQL's
planning and execution times come from ``EXPLAIN (ANALYZE)`` of the queries the lookup sent.
Read-only: nothing here changes how the code under test runs.
"""

import io
import re
import statistics
import time

REPEATS = 5


class _DbTimer:
    """An ``execute_wrapper`` adding up the time spent waiting for the database."""

    def __init__(self):
        self.seconds = 0.0
        self.queries = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.queries += 1


def _time(fn, items, *, calls: int) -> dict:
    """Median over REPEATS batches of ``calls`` calls: wall µs per call and DB µs per call."""
    from django.db import connection

    for i in range(min(calls, 100)):  # warm caches and the connection
        fn(items[i % len(items)])
    walls, dbs, queries = [], [], []
    for _ in range(REPEATS):
        timer = _DbTimer()
        with connection.execute_wrapper(timer):
            started = time.perf_counter()
            for i in range(calls):
                fn(items[i % len(items)])
            wall = time.perf_counter() - started
        walls.append(wall / calls * 1e6)
        dbs.append(timer.seconds / calls * 1e6)
        queries.append(timer.queries / calls)
    wall, db = statistics.median(walls), statistics.median(dbs)
    return {
        "us": round(wall, 1),
        "db_us": round(db, 1),
        "python_us": round(wall - db, 1),
        "queries": round(statistics.median(queries), 2),
    }


def _wsgi_get(path: str, auth: str | None = None):
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.url_scheme": "http",
    }
    if auth:
        environ["HTTP_AUTHORIZATION"] = auth

    def get(item=None):
        status = []
        env = {**environ, "wsgi.input": io.BytesIO(b"")}
        if item is not None:
            env["PATH_INFO"] = path.format(sku=item)
        response = handler(env, lambda s, headers, exc_info=None: status.append(s))
        try:
            b"".join(response)
        finally:
            response.close()  # request_finished, as a server sends it
        if not status[0].startswith("200"):
            raise RuntimeError(f"GET {env['PATH_INFO']}: {status[0]}")

    return get


def _explain(sql: str) -> tuple[float, float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, SUMMARY) " + sql)
        text = "\n".join(row[0] for row in cursor.fetchall())
    planning = float(re.search(r"Planning Time: ([\d.]+) ms", text).group(1))
    execution = float(re.search(r"Execution Time: ([\d.]+) ms", text).group(1))
    return planning, execution


def lookup_breakdown(*, token: str, skus: list[str], floor_path: str, variant_path: str, calls=300):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.renderers import JSONRenderer

    from catalog.selectors import variant_detail_by_sku
    from omni.api import token_cache
    from omni.services import api_client_authenticate

    def cached_token_check(_):
        client, unconfirmed = token_cache.authenticate(token)
        if unconfirmed is not None:
            token_cache.confirm(unconfirmed)
        return client

    auth = f"Token {token}"
    rows = {}
    rows["A floor, whole request"] = _time(_wsgi_get(floor_path), [None], calls=calls)
    rows["B SKU lookup, whole request"] = _time(_wsgi_get(variant_path, auth), skus, calls=calls)
    rows["token check: token_cache.authenticate() and confirm()"] = _time(
        cached_token_check, [None], calls=calls
    )
    rows["selector: variant_detail_by_sku()"] = _time(variant_detail_by_sku, skus, calls=calls)
    details = [variant_detail_by_sku(sku) for sku in skus[:50]]
    rows["output: JSONRenderer().render(selector result)"] = _time(
        lambda d: JSONRenderer().render(d), details, calls=calls
    )
    if connection.settings_dict.get("CONN_HEALTH_CHECKS"):  # else no request runs it
        connection.ensure_connection()
        rows["health check: connection.is_usable() (SELECT 1)"] = _time(
            lambda _: connection.is_usable(), [None], calls=calls
        )
    whole = rows["B SKU lookup, whole request"]
    pieces = [r for name, r in rows.items() if "whole request" not in name]
    rows["remainder: middleware, URL resolving, DRF, the view"] = {
        "us": round(whole["us"] - sum(r["us"] for r in pieces), 1),
        "db_us": round(whole["db_us"] - sum(r["db_us"] for r in pieces), 1),
        "python_us": round(whole["python_us"] - sum(r["python_us"] for r in pieces), 1),
        "queries": round(whole["queries"] - sum(r["queries"] for r in pieces), 2),
    }
    # Not part of a lookup any more (so not in the remainder): what the cache saves.
    rows["for reference, a cache miss: api_client_authenticate()"] = _time(
        lambda _: api_client_authenticate(token), [None], calls=calls
    )

    with CaptureQueriesContext(connection) as captured:
        api_client_authenticate(token)
        variant_detail_by_sku(skus[0])
    plans = []
    names = ("token check (on a cache miss)", "selector")
    for query, name in zip(captured.captured_queries, names, strict=False):
        try:
            samples = [_explain(query["sql"]) for _ in range(20)]
        except Exception as exc:  # a diagnostic: never fail the benchmark for it
            plans.append({"query": name, "error": str(exc), "sql": query["sql"]})
            continue
        plans.append(
            {
                "query": name,
                "planning_ms": round(statistics.median(p for p, _ in samples), 3),
                "execution_ms": round(statistics.median(e for _, e in samples), 3),
                "sql": query["sql"],
            }
        )
    return {"calls_per_batch": calls, "batches": REPEATS, "rows": rows, "plans": plans}
