"""The benchmark's data set and in-process measurements (call after ``django.setup()``).

The catalog comes from ``catalog.demo.generate_catalog``, the generator the demo uses, so the
benchmark reads the same shape of data a shop would hold: 25,000 products with 4 variants each,
every variant listed on the 5 sales channels (500,000 listings).
"""

import random
import time

PRODUCTS = 25_000
VARIANTS_PER_PRODUCT = 4
BATCH_SIZE = 5_000
SALES_CHANNELS = ("app", "marketplace", "social-shop", "store", "web")
CLIENT_NAME = "bench"


def sales_channels():
    from omni.models import Channel

    channels = list(Channel.objects.sales().active().order_by("code"))
    codes = tuple(c.code for c in channels)
    if codes != SALES_CHANNELS:
        raise RuntimeError(
            f"expected the 5 default sales channels {SALES_CHANNELS}, found {codes} "
            "(are the omni migrations applied?)"
        )
    return channels


def catalog_counts() -> dict:
    from catalog.models import ChannelListing, Product, Variant

    return {
        "products": Product.objects.count(),
        "variants": Variant.objects.count(),
        "listings": ChannelListing.objects.count(),
    }


def generate(log) -> dict:
    """Create the catalog (or reuse it when it is there already) and return what was done."""
    from catalog.demo import generate_catalog

    channels = sales_channels()
    existing = catalog_counts()
    wanted = PRODUCTS * VARIANTS_PER_PRODUCT
    if existing["variants"] >= wanted:
        log(f"catalog already holds {existing['variants']:,} variants: reusing it")
        return {"reused": True, "seconds": 0.0, "stages": [], **existing}
    if existing["variants"]:
        raise RuntimeError(
            f"the database holds a partial catalog ({existing['variants']:,} variants); "
            "run the benchmark on an empty database (make bench starts a fresh one)"
        )

    stages = []
    started = time.perf_counter()

    def progress(stage: str, count: int) -> None:
        elapsed = time.perf_counter() - started
        stages.append({"stage": stage, "rows": count, "seconds": round(elapsed, 2)})
        log(f"  {elapsed:6.1f}s  {stage}: {count:,}")

    created = generate_catalog(
        products=PRODUCTS,
        variants_per_product=VARIANTS_PER_PRODUCT,
        channels=channels,
        batch_size=BATCH_SIZE,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    # generate_catalog is one transaction: the last stage ends before the commit, which runs
    # the deferred foreign-key checks of every inserted row.
    if stages:
        stages.append(
            {
                "stage": "commit (deferred FK checks)",
                "rows": 0,
                "seconds": round(seconds, 2),
            }
        )
    log(f"  {seconds:6.1f}s  committed")
    counts = catalog_counts()
    if counts["variants"] != wanted or counts["listings"] != wanted * len(channels):
        raise RuntimeError(f"unexpected catalog size after generation: {counts}")
    return {
        "reused": False,
        "seconds": round(seconds, 2),
        "stages": stages,
        "created": created,
        "channels": [c.code for c in channels],
        **counts,
    }


def vacuum_analyze() -> float:
    """``VACUUM (ANALYZE)`` the database, as a live one would have been; returns the seconds.

    Without it autovacuum wakes up on the freshly inserted half million rows during the
    first rounds and takes CPU from them.
    """
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    return round(time.perf_counter() - started, 2)


def api_token() -> str:
    """A read token of the ``bench`` API client (created, or given a new token)."""
    from omni.models import ApiClient
    from omni.services import api_client_create, api_client_issue_token

    client = ApiClient.objects.filter(name=CLIENT_NAME).first()
    if client is not None:
        return api_client_issue_token(client=client)
    _client, token = api_client_create(name=CLIENT_NAME, access="read")
    return token


def sample_skus(count: int, seed: int = 42) -> list[str]:
    """``count`` different SKUs spread over the whole catalog, in a shuffled order."""
    from catalog.models import Variant

    skus = list(Variant.objects.order_by("sku").values_list("sku", flat=True))
    rng = random.Random(seed)
    return rng.sample(skus, min(count, len(skus)))


def count_queries(token: str, skus: list[str]) -> dict:
    """SQL per SKU lookup, in process, through the whole stack (middleware, DRF, auth).

    Starts on a fresh connection with one warm-up lookup, not counted: it checks the token
    with a query (later lookups on the connection take the client from its token cache), marks
    the client as used (``last_used_at``, a write at most once per five minutes per client)
    and does whatever a connection does on first use (preparing statements). Also counts the
    connection health checks (``CONN_HEALTH_CHECKS``): a ``SELECT 1`` sent on the raw
    connection at the start of each request, which Django's query log does not show but which
    is a round trip.
    """
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    headers = {"Authorization": f"Token {token}", "Host": "127.0.0.1"}

    health_checks = 0
    original_is_usable = connection.is_usable

    def counting_is_usable():
        nonlocal health_checks
        health_checks += 1
        return original_is_usable()

    def lookup(sku):
        # The test client skips the request_started handler that, under a real server, marks
        # a persistent connection for a health check; run it as the server would.
        close_old_connections()
        response = client.get(f"/api/v1/catalog/variants/{sku}/", headers=headers)
        if response.status_code != 200 or response.json().get("sku") != sku:
            raise RuntimeError(
                f"GET variant {sku}: HTTP {response.status_code} {response.content[:300]!r}"
            )

    connection.close()  # a fresh connection: CONN_MAX_AGE cannot expire it mid-count
    with CaptureQueriesContext(connection) as first:
        lookup(skus[0])
    per_request, sql = [], []
    connection.is_usable = counting_is_usable
    try:
        for sku in skus[1:]:
            with CaptureQueriesContext(connection) as captured:
                lookup(sku)
            per_request.append(len(captured.captured_queries))
            sql = [q["sql"] for q in captured.captured_queries]
    finally:
        del connection.is_usable
    lookups = len(per_request)
    return {
        "lookups": lookups,
        "per_request": per_request,
        "max": max(per_request),
        "mean": round(sum(per_request) / lookups, 2),
        "first_request": len(first.captured_queries),
        "first_request_note": (
            "first lookup on a new connection: includes the token check (later lookups take "
            "the client from the connection's token cache), the last_used_at write (at most "
            "once per 5 minutes per client) and any statements prepared on first use"
        ),
        "first_request_sql": [q["sql"] for q in first.captured_queries],
        "health_check_round_trips_per_request": round(health_checks / lookups, 2),
        "sql_of_last_lookup": sql,
    }
