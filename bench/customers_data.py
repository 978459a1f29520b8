"""The customer benchmark's population: 1,000,000 customers and 5,000,000 touchpoints.

Generated inside PostgreSQL with set-based ``INSERT ... SELECT generate_series`` statements, in
one transaction (a data generator, not product code: nothing else writes customers without the
services). Every figure is derived from hashes of the row number, so two runs at the same scale
build the same population.

- customers ``1..N``, the oldest first (``created_at`` spread over two years); customer 1 is the
  "heavy" one with 10,000 touchpoints (the timeline figure); one in 997 was erased (no
  identities, touchpoints, consents nor channel rows, blank profile);
- touchpoints: customers with lower ids (older) have more; a channel and kind mix of web, app,
  stores (with a store location), marketplace, social shop and messages; purchases carry an
  amount, views a SKU;
- identities: email (90%), phone in E.164 (60%), loyalty card (35%), web cookie (70%), app device
  (25%), POS customer id (15%), social handle (10%), all in their normalised form;
- channel rows (``CustomerChannelStat``) aggregated from the touchpoints, and first/last seen,
  last purchase, lifetime orders and revenue and the inferred preferred channel on the
  customers, all consistent with the touchpoints;
- consent history on email, SMS and push (opt-ins, some later opt-outs) and its current state;
- persona attributes (age range, gender, city, occupation, language) on most, a home store on a
  quarter.

Secondary indexes, unique and foreign-key constraints of these tables are dropped before the
load and created again after it from their own definitions (``pg_get_indexdef`` and
``pg_get_constraintdef``), which is how one bulk-loads PostgreSQL; creating them validates
every row. The stages log their progress.
"""

import time
from datetime import timedelta

CUSTOMERS = 1_000_000
TOUCHPOINTS = 5_000_000
HEAVY_CUSTOMER = 1
HEAVY_TOUCHPOINTS = 10_000
ERASED_EVERY = 997  # customer ids divisible by this were erased
HISTORY_DAYS = 730
STORES = 20
SOURCE = "bench:generator"
CHUNKS = 10  # the big inserts run in chunks, so that their progress shows

TABLES = (
    "customers_customer",
    "customers_identity",
    "customers_touchpoint",
    "customers_customerchannelstat",
    "customers_consent",
    "customers_consentstate",
)

# (channel code, weight in 1000, [(kind, weight), ...]): the touchpoint mix.
MIX = [
    ("web", 350, [("product_view", 55), ("search", 15), ("add_to_cart", 12),
                  ("remove_from_cart", 3), ("checkout_started", 6), ("purchase", 7),
                  ("sign_up", 2)]),
    ("app", 230, [("app_open", 30), ("product_view", 40), ("add_to_cart", 12),
                  ("qr_scan", 8), ("purchase", 10)]),
    ("store", 150, [("store_visit", 45), ("purchase", 40), ("pickup", 10), ("return", 5)]),
    ("email", 100, [("message_sent", 50), ("message_opened", 35), ("link_clicked", 15)]),
    ("marketplace", 50, [("product_view", 55), ("purchase", 45)]),
    ("social-shop", 50, [("product_view", 50), ("support_message", 20), ("purchase", 30)]),
    ("sms", 40, [("message_sent", 70), ("link_clicked", 30)]),
    ("push", 30, [("message_sent", 60), ("message_opened", 40)]),
]  # fmt: skip

FIRST_NAMES = (
    "ana", "lucas", "emma", "hugo", "lea", "louis", "chloe", "gabriel", "manon", "arthur",
    "ines", "jules", "camille", "adam", "sarah", "nathan", "julie", "tom", "clara", "leo",
    "alice", "noah", "lina", "paul", "eva", "mael", "zoe", "victor", "rose", "ethan",
    "maria", "joao", "sofia", "pedro", "laura", "pablo", "elena", "marco", "giulia", "omar",
    "yasmine", "karim", "nora", "samuel", "agathe", "remi", "margot", "theo", "lou", "axel",
)  # fmt: skip
LAST_NAMES = (
    "martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy",
    "moreau", "simon", "laurent", "lefebvre", "michel", "garcia", "david", "bertrand", "roux",
    "vincent", "fournier", "morel", "girard", "andre", "mercier", "dupont", "lambert", "bonnet",
    "francois", "martinez", "legrand", "garnier", "faure", "rousseau", "blanc", "guerin",
    "muller", "henry", "roussel", "nicolas", "perrin", "morin", "mathieu", "clement", "gauthier",
    "dumont", "lopez", "fontaine", "chevalier", "robin", "silva",
)  # fmt: skip
CITIES = (
    "Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Nantes", "Strasbourg", "Montpellier",
    "Bordeaux", "Lille", "Rennes", "Reims", "Toulon", "Grenoble", "Dijon", "Angers", "Nimes",
    "Brest", "Tours", "Limoges", "Amiens", "Perpignan", "Metz", "Besancon", "Orleans", "Rouen",
    "Caen", "Nancy", "Avignon", "Pau",
)  # fmt: skip
OCCUPATIONS = (
    "Teacher", "Engineer", "Nurse", "Student", "Designer", "Retired", "Sales", "Developer",
    "Doctor", "Accountant", "Chef", "Artist", "Lawyer", "Driver", "Manager",
)  # fmt: skip
AGE_RANGES = ("18_24", "25_34", "25_34", "35_44", "35_44", "45_54", "55_64", "65_plus")
GENDERS = ("female", "female", "male", "male", "non_binary", "undisclosed")
LANGUAGES = ("fr", "fr", "fr", "fr", "fr", "fr", "fr", "en", "en", "es", "de", "pt-BR")
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.fr")
CONSENT = (("email", 60), ("sms", 30), ("push", 25))  # (channel, percent with a history)
OPT_OUT_PERCENT = 20  # of those, later opted out


def sizes(scale: float) -> dict:
    customers = max(2_000, round(CUSTOMERS * scale))
    touchpoints = max(4 * customers, round(TOUCHPOINTS * scale))
    heavy = min(HEAVY_TOUCHPOINTS, touchpoints // 3)
    return {
        "customers": customers,
        "touchpoints": touchpoints,
        "heavy_customer": HEAVY_CUSTOMER,
        "heavy_touchpoints": heavy,
        # one touchpoint in `heavy_every` (by row number) belongs to the heavy customer, so
        # hers are spread over the table as a real customer's would be
        "heavy_every": touchpoints // heavy,
    }


def phone_for(k: int) -> str:
    """The E.164 French mobile number ``k`` (0 <= k < 29,000,000), as the SQL builds it."""
    return f"+336{10 + (k // 1_000_000) % 29}{k % 1_000_000:06d}"


PHONE_SPACE = 29_000_000
PHONE_MULTIPLIER = 7919  # coprime with PHONE_SPACE: customer id -> phone is one-to-one


def phone_of_customer(customer_id: int) -> str:
    return phone_for(customer_id * PHONE_MULTIPLIER % PHONE_SPACE)


# Hashes of row numbers: bh(x, salt) is a non-negative bigint, u(x, salt) uniform in [0, 1).
FUNCTIONS = """
CREATE FUNCTION pg_temp.bh(x bigint, salt bigint) RETURNS bigint
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT hashint8extended(x, salt) & 9223372036854775807 $$;
CREATE FUNCTION pg_temp.u(x bigint, salt bigint) RETURNS float8
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT ((hashint8extended(x, salt) >> 11) & 9007199254740991)::float8
              / 9007199254740992.0 $$;
"""


def _lit(values) -> str:
    """A SQL text array literal of simple ASCII words."""
    for v in values:
        if not all(c.isalnum() or c in " _-." for c in v):
            raise ValueError(v)
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]::text[]"


def generate(log, *, scale: float = 1.0) -> dict:
    """Build the population (or reuse it when the tables hold it already)."""
    from django.db import connection, transaction

    from customers.models import Customer, Touchpoint

    size = sizes(scale)
    if Customer.objects.exists():
        log("customers exist already: reusing them")
        return {
            "reused": True,
            **size,
            "customers_rows": Customer.objects.count(),
            "touchpoints_rows": Touchpoint.objects.count(),
        }
    started = time.perf_counter()
    stages = []

    def stage(name, rows):
        elapsed = time.perf_counter() - started
        took = elapsed - (stages[-1]["at"] if stages else 0)
        stages.append(
            {"stage": name, "rows": rows, "seconds": round(took, 1), "at": round(elapsed, 1)}
        )
        log(f"  {elapsed:6.1f}s  {name}: {rows:,} rows ({took:.1f} s)")

    stores = _store_locations()
    stage("store locations (home stores, store touchpoints)", len(stores))
    now = _now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SET LOCAL work_mem = '256MB'; SET LOCAL maintenance_work_mem = '1GB'; "
            "SET LOCAL max_parallel_maintenance_workers = 2; SET LOCAL jit = off"
        )
        cursor.execute(FUNCTIONS)
        _mix_tables(cursor)
        saved = _drop_constraints(cursor)
        stage(
            f"dropped {len(saved['constraints'])} constraints, {len(saved['indexes'])} indexes", 0
        )
        _touchpoints(cursor, size, stores, now, stage)
        _customers(cursor, size, stores, now, stage)
        _identities(cursor, size, now, stage)
        _consents(cursor, now, stage)
        _restore_constraints(cursor, saved, stage)
        for table in TABLES:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )
    stage("commit", 0)
    with connection.cursor() as cursor:
        for n, table in enumerate(TABLES, 1):
            t = time.perf_counter()
            cursor.execute(f"VACUUM (ANALYZE) {table}")
            log(f"    vacuum analyze {n}/{len(TABLES)} {table} ({time.perf_counter() - t:.1f} s)")
    stage("vacuum analyze", 0)
    seconds = time.perf_counter() - started
    counts = table_counts()
    log(
        f"  population built in {seconds:.1f} s: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    )
    return {
        "reused": False,
        **size,
        "scale": scale,
        "seconds": round(seconds, 1),
        "stages": stages,
        "counts": counts,
        "now": now.isoformat(),
        "stores": len(stores),
    }


def table_counts() -> dict:
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")
            out[table.removeprefix("customers_")] = cursor.fetchone()[0]
    return out


def _now():
    from django.utils import timezone

    return timezone.now().replace(microsecond=0) - timedelta(minutes=10)


def _store_locations() -> list[int]:
    """The stores (existing ones, e.g. from the inventory data set, or 20 new ones)."""
    from inventory.models import Location

    found = list(
        Location.objects.filter(kind="store", is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if found:
        return found
    Location.objects.bulk_create(
        [
            Location(
                code=f"s{n:02d}",
                name=f"Store {n:02d}",
                kind="store",
                city=CITIES[n % len(CITIES)],
                country="FR",
                time_zone="Europe/Paris",
                offers_pickup=True,
            )
            for n in range(1, STORES + 1)
        ]
    )
    return list(Location.objects.filter(kind="store").order_by("pk").values_list("pk", flat=True))


def _channels() -> dict[str, tuple[int, str]]:
    from omni.models import Channel

    return {
        code: (pk, kind) for code, pk, kind in Channel.objects.values_list("code", "pk", "kind")
    }


def _mix_tables(cursor) -> None:
    """Temporary lookup tables: the touchpoint mix by bucket (0..999) and, per channel, the
    messaging channel that reaches people there (``customers.services.stats``)."""
    from customers.services.stats import REACHED_BY
    from omni.models import MESSAGING_KINDS, Channel

    channels = _channels()
    rows = []
    for code, weight, kinds in MIX:
        total = sum(w for _, w in kinds)
        start = len(rows)
        for kind, w in kinds:
            rows += [(channels[code][0], kind, code == "store")] * round(weight * w / total)
        while len(rows) - start < weight:  # rounding
            rows.append(rows[-1])
        del rows[start + weight :]
    if len(rows) != 1000:
        raise RuntimeError(f"touchpoint mix has {len(rows)} buckets, not 1000")
    cursor.execute(
        "CREATE TEMP TABLE bench_tp_mix (bucket int PRIMARY KEY, channel_id bigint, kind text, "
        "store boolean) ON COMMIT DROP"
    )
    cursor.executemany(
        "INSERT INTO bench_tp_mix VALUES (%s, %s, %s, %s)",
        [(n, *row) for n, row in enumerate(rows)],
    )
    messaging = {}
    for pk, kind in Channel.objects.messaging().active().order_by("code").values_list("pk", "kind"):
        messaging.setdefault(kind, pk)
    reach = []
    for pk, kind in channels.values():
        target = pk if kind in MESSAGING_KINDS else messaging.get(REACHED_BY.get(kind))
        if target is not None:
            reach.append((pk, target))
    cursor.execute(
        "CREATE TEMP TABLE bench_reach (channel_id bigint PRIMARY KEY, target bigint) "
        "ON COMMIT DROP"
    )
    cursor.executemany("INSERT INTO bench_reach VALUES (%s, %s)", reach)


def _drop_constraints(cursor) -> dict:
    saved = {"constraints": [], "indexes": []}
    for table in TABLES:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('f', 'u') "
            "ORDER BY contype DESC, conname",
            [table],
        )
        saved["constraints"] += [(table, name, sql, kind) for name, sql, kind in cursor.fetchall()]
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) "
            "ORDER BY i.relname",
            [table],
        )
        saved["indexes"] += [(table, name, sql) for name, sql in cursor.fetchall()]
    # foreign keys first: a unique constraint may back one
    for table, name, _sql, _kind in sorted(saved["constraints"], key=lambda c: c[3] != "f"):
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for _table, name, _sql in saved["indexes"]:
        cursor.execute(f'DROP INDEX "{name}"')
    return saved


def _restore_constraints(cursor, saved, stage) -> None:
    items = [("index", t, n, sql) for t, n, sql in saved["indexes"]]
    items += [("unique", t, n, sql) for t, n, sql, kind in saved["constraints"] if kind == "u"]
    items += [("foreign key", t, n, sql) for t, n, sql, kind in saved["constraints"] if kind == "f"]
    for number, (what, table, name, sql) in enumerate(items, 1):
        t = time.perf_counter()
        if what == "index":
            cursor.execute(sql)
        else:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {sql}')
        print(
            f"           {what} {number}/{len(items)} on {table}: {name} "
            f"({time.perf_counter() - t:.1f} s)",
            flush=True,
        )
    stage(f"indexes and constraints created again ({len(items)})", 0)


def _chunks(total: int, n: int = CHUNKS):
    step = -(-total // n)
    for lo in range(1, total + 1, step):
        yield lo, min(lo + step - 1, total)


def _touchpoints(cursor, size, stores, now, stage) -> None:
    n = size["customers"]
    every = size["heavy_every"]
    heavy = size["heavy_touchpoints"]
    total = size["touchpoints"]
    # The customer of row g: the heavy one for one row in `every`; else skewed towards the
    # older customers (lower ids), never an erased one (ids divisible by ERASED_EVERY).
    customer = f"""CASE WHEN g %% {every} = 0 AND g / {every} <= {heavy} THEN {HEAVY_CUSTOMER}
        ELSE (SELECT CASE WHEN c %% {ERASED_EVERY} = 0 THEN c - 1 ELSE c END
              FROM (SELECT LEAST({n}, 2 + floor(({n} - 1) * power(pg_temp.u(g, 2), 1.5)))::bigint
                    AS c) cc) END"""
    age = f"(1 + {HISTORY_DAYS - 1} * (1 - (c - 1)::float8 / {n}))"
    from customers.timeline_json import rendition_sql

    # Each event's timeline JSON, as the ingest writes it (customers.timeline_json).
    rendition = rendition_sql("omni_channel", "inventory_location", row="e")
    sql = f"""
    INSERT INTO customers_touchpoint (customer_id, channel_id, kind, occurred_at, location_id,
        properties, source, event_id, received_at, rendition)
    SELECT e.*, {rendition} FROM (
    SELECT t.c AS customer_id, m.channel_id, m.kind, t.at AS occurred_at,
      CASE WHEN m.store THEN (%(stores)s::bigint[])[1 + pg_temp.bh(t.c, 11) %% %(nstores)s] END
        AS location_id,
      CASE m.kind
        WHEN 'purchase' THEN jsonb_build_object(
          'amount', round((5 + pg_temp.bh(t.g, 6) %% 20000 / 100.0)::numeric, 2),
          'order', 'G' || t.g, 'items', 1 + pg_temp.bh(t.g, 7) %% 4)
        WHEN 'return' THEN jsonb_build_object('order', 'G' || (t.g - 1))
        WHEN 'product_view' THEN jsonb_build_object(
          'sku', 'SKU-' || lpad((pg_temp.bh(t.g, 8) %% 100000)::text, 6, '0'))
        WHEN 'add_to_cart' THEN jsonb_build_object(
          'sku', 'SKU-' || lpad((pg_temp.bh(t.g, 8) %% 100000)::text, 6, '0'),
          'quantity', 1 + pg_temp.bh(t.g, 9) %% 2)
        WHEN 'search' THEN jsonb_build_object(
          'query', (%(words)s)[1 + pg_temp.bh(t.g, 10) %% 8])
        WHEN 'message_sent' THEN jsonb_build_object(
          'campaign', 'C' || (1 + pg_temp.bh(t.g, 12) %% 40))
        WHEN 'link_clicked' THEN jsonb_build_object(
          'campaign', 'C' || (1 + pg_temp.bh(t.g, 12) %% 40))
        ELSE '{{}}'::jsonb END AS properties,
      %(source)s::varchar AS source, 'g' || t.g AS event_id,
      t.at + interval '3 seconds' AS received_at
    FROM (
      SELECT g, c, %(now)s::timestamptz
               - ({age} * pg_temp.u(g, 3)) * interval '1 day' AS at
      FROM (SELECT g, {customer} AS c FROM generate_series(%(lo)s::bigint, %(hi)s) AS g) x
    ) t
    JOIN bench_tp_mix m ON m.bucket = pg_temp.bh(t.g, 4) %% 1000
    ) e
    """
    started = time.perf_counter()
    done = 0
    words = _lit(("shoes", "dress", "jacket", "bag", "jeans", "sneakers", "coat", "shirt"))
    for lo, hi in _chunks(total):
        cursor.execute(
            sql.replace("%(words)s", words),
            {
                "stores": stores,
                "nstores": len(stores),
                "source": SOURCE,
                "now": now,
                "lo": lo,
                "hi": hi,
            },
        )
        done += cursor.rowcount
        elapsed = time.perf_counter() - started
        print(
            f"           touchpoints {done:,} / {total:,} ({done / total:.0%}, {elapsed:.1f} s)",
            flush=True,
        )
    stage("touchpoints", done)
    # One pass over the touchpoints: per customer and channel, the rollup and the purchases.
    cursor.execute(
        """
        CREATE TEMP TABLE bench_agg ON COMMIT DROP AS
        SELECT customer_id, channel_id, count(*) AS n, min(occurred_at) AS first,
          max(occurred_at) AS last, count(*) FILTER (WHERE kind = 'purchase') AS purchases,
          COALESCE(sum((properties->>'amount')::numeric) FILTER (WHERE kind = 'purchase'), 0)
            AS revenue,
          max(occurred_at) FILTER (WHERE kind = 'purchase') AS last_purchase
        FROM customers_touchpoint GROUP BY customer_id, channel_id
        """
    )
    stage("touchpoints rolled up per customer and channel", cursor.rowcount)
    cursor.execute(
        "INSERT INTO customers_customerchannelstat (customer_id, channel_id, touchpoints, "
        "first_seen_at, last_seen_at) "
        "SELECT customer_id, channel_id, n, first, last FROM bench_agg ORDER BY customer_id"
    )
    stage("channel rows", cursor.rowcount)


def _customers(cursor, size, stores, now, stage) -> None:
    n = size["customers"]
    sql = f"""
    WITH per AS (
      SELECT customer_id, min(first) AS first, max(last) AS last, sum(purchases) AS orders,
        sum(revenue) AS revenue, max(last_purchase) AS last_purchase
      FROM bench_agg WHERE customer_id BETWEEN %(lo)s AND %(hi)s GROUP BY customer_id),
    pref AS (
      SELECT DISTINCT ON (customer_id) customer_id, target FROM (
        SELECT a.customer_id, r.target, sum(a.n) AS uses, max(a.last) AS last
        FROM bench_agg a JOIN bench_reach r ON r.channel_id = a.channel_id
        WHERE a.customer_id BETWEEN %(lo)s AND %(hi)s
        GROUP BY a.customer_id, r.target) x
      ORDER BY customer_id, uses DESC, last DESC)
    INSERT INTO customers_customer (id, first_name, last_name, age_range, gender, city,
      occupation, language, time_zone, preferred_channel_id, preferred_channel_source,
      home_store_id, first_seen_at, last_seen_at, last_purchase_at, lifetime_orders,
      lifetime_revenue, field_times, erased_at, created_at, updated_at)
    SELECT s.id,
      CASE WHEN erased OR named >= 85 THEN '' ELSE ({_lit(FIRST_NAMES)})[1 + pg_temp.bh(s.id, 31) %% {len(FIRST_NAMES)}] END,
      CASE WHEN erased OR named >= 85 THEN '' ELSE ({_lit(LAST_NAMES)})[1 + pg_temp.bh(s.id, 32) %% {len(LAST_NAMES)}] END,
      CASE WHEN erased OR pg_temp.bh(s.id, 33) %% 100 >= 60 THEN '' ELSE ({_lit(AGE_RANGES)})[1 + pg_temp.bh(s.id, 34) %% {len(AGE_RANGES)}] END,
      CASE WHEN erased OR pg_temp.bh(s.id, 35) %% 100 >= 55 THEN '' ELSE ({_lit(GENDERS)})[1 + pg_temp.bh(s.id, 36) %% {len(GENDERS)}] END,
      CASE WHEN erased OR pg_temp.bh(s.id, 37) %% 100 >= 50 THEN '' ELSE ({_lit(CITIES)})[1 + pg_temp.bh(s.id, 38) %% {len(CITIES)}] END,
      CASE WHEN erased OR pg_temp.bh(s.id, 39) %% 100 >= 30 THEN '' ELSE ({_lit(OCCUPATIONS)})[1 + pg_temp.bh(s.id, 40) %% {len(OCCUPATIONS)}] END,
      CASE WHEN erased OR pg_temp.bh(s.id, 41) %% 100 >= 80 THEN '' ELSE ({_lit(LANGUAGES)})[1 + pg_temp.bh(s.id, 42) %% {len(LANGUAGES)}] END,
      CASE WHEN NOT erased AND pg_temp.bh(s.id, 43) %% 100 < 15 THEN 'Europe/Paris' ELSE '' END,
      pref.target, 'inferred',
      CASE WHEN NOT erased AND pg_temp.bh(s.id, 44) %% 100 < 25
        THEN (%(stores)s::bigint[])[1 + pg_temp.bh(s.id, 11) %% %(nstores)s] END,
      per.first, per.last, per.last_purchase, COALESCE(per.orders, 0),
      COALESCE(per.revenue, 0), '{{}}'::jsonb,
      CASE WHEN erased THEN %(now)s::timestamptz - interval '1 day' END,
      %(now)s::timestamptz - (1 + {HISTORY_DAYS - 1} * (1 - (s.id - 1)::float8 / {n})) * interval '1 day',
      %(now)s
    FROM (SELECT id, id %% {ERASED_EVERY} = 0 AS erased, pg_temp.bh(id, 30) %% 100 AS named
          FROM generate_series(%(lo)s::bigint, %(hi)s) AS id) s
    LEFT JOIN per ON per.customer_id = s.id
    LEFT JOIN pref ON pref.customer_id = s.id
    """  # noqa: E501
    started = time.perf_counter()
    done = 0
    for lo, hi in _chunks(n):
        cursor.execute(
            sql,
            {"stores": stores, "nstores": len(stores), "now": now, "lo": lo, "hi": hi},
        )
        done += cursor.rowcount
        print(
            f"           customers {done:,} / {n:,} ({done / n:.0%}, "
            f"{time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    stage("customers (profiles and lifetime stats)", done)


def _identities(cursor, size, now, stage) -> None:
    n = size["customers"]
    domains = _lit(EMAIL_DOMAINS)
    sql = f"""
    INSERT INTO customers_identity (customer_id, kind, value, verified, source, first_seen_at)
    SELECT c.id, v.kind, v.value, pg_temp.bh(c.id, 60 + v.salt) %% 100 < v.verified, v.source,
      LEAST(c.created_at + (pg_temp.u(c.id, 70 + v.salt) * 30) * interval '1 day', %(now)s)
    FROM customers_customer c CROSS JOIN LATERAL (VALUES
      (1, 'email', 90, 60, 'web',
        CASE WHEN c.first_name <> '' THEN c.first_name || '.' || c.last_name || '.' || c.id
          ELSE 'customer' || c.id END
        || '@' || ({domains})[1 + pg_temp.bh(c.id, 51) %% {len(EMAIL_DOMAINS)}]),
      (2, 'phone', 60, 40, 'store',
        '+336' || (10 + (c.id * {PHONE_MULTIPLIER} %% {PHONE_SPACE}) / 1000000 %% 29)
        || lpad(((c.id * {PHONE_MULTIPLIER} %% {PHONE_SPACE}) %% 1000000)::text, 6, '0')),
      (3, 'loyalty_card', 35, 100, 'store', 'LC' || lpad(c.id::text, 10, '0')),
      (4, 'web_cookie', 70, 0, 'web', md5('cookie:' || c.id)),
      (5, 'app_device', 25, 0, 'app',
        (SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-'
                || substr(h, 17, 4) || '-' || substr(h, 21) FROM md5('device:' || c.id) AS h)),
      (6, 'pos_customer_id', 15, 100, 'store', 'POS' || c.id),
      (7, 'social_handle', 10, 0, 'social-shop',
        'instagram:' || CASE WHEN c.first_name <> '' THEN c.first_name || '_' ELSE 'user' END
        || c.id)
    ) AS v(salt, kind, percent, verified, source, value)
    WHERE c.id BETWEEN %(lo)s AND %(hi)s AND c.erased_at IS NULL
      AND pg_temp.bh(c.id, 50 + v.salt) %% 100 < v.percent
    """
    started = time.perf_counter()
    done = 0
    for lo, hi in _chunks(n):
        cursor.execute(sql, {"now": now, "lo": lo, "hi": hi})
        done += cursor.rowcount
        print(
            f"           identities of customers {hi:,} / {n:,} ({hi / n:.0%}): {done:,} rows, "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    stage("identities", done)


def _consents(cursor, now, stage) -> None:
    """An opt-in for some customers per messaging channel, a later opt-out for some of them, and
    the current state (the latest decision) per customer and channel."""
    channels = _channels()
    values = ", ".join(
        f"({channels[code][0]}, {percent}, {salt})"
        for salt, (code, percent) in enumerate(CONSENT, 1)
    )
    cursor.execute(
        f"""
        INSERT INTO customers_consent (customer_id, channel_id, status, source, occurred_at,
          proof, recorded_at)
        SELECT c.id, ch.id, e.status, e.source, e.at, e.proof, e.at
        FROM customers_customer c
        CROSS JOIN (VALUES {values}) AS ch(id, percent, salt)
        CROSS JOIN LATERAL (SELECT c.created_at
          + pg_temp.u(c.id, 81 + ch.salt) * (%(now)s::timestamptz - c.created_at) AS at) AS o
        CROSS JOIN LATERAL (VALUES
          ('opted_in', 'web form', 'checkbox "keep me informed", ip 192.0.2.'
             || (pg_temp.bh(c.id, 80) %% 250 + 1), o.at, true),
          ('opted_out', 'unsubscribe link', '',
           o.at + pg_temp.u(c.id, 85 + ch.salt) * (%(now)s::timestamptz - o.at),
           pg_temp.bh(c.id, 90 + ch.salt) %% 100 < {OPT_OUT_PERCENT})
        ) AS e(status, source, proof, at, wanted)
        WHERE c.erased_at IS NULL AND e.wanted
          AND pg_temp.bh(c.id, 95 + ch.salt) %% 100 < ch.percent
        ORDER BY c.id, ch.id, e.at
        """,
        {"now": now},
    )
    stage("consent history", cursor.rowcount)
    cursor.execute(
        """
        INSERT INTO customers_consentstate (customer_id, channel_id, status, occurred_at,
          consent_id)
        SELECT DISTINCT ON (customer_id, channel_id) customer_id, channel_id, status,
          occurred_at, id
        FROM customers_consent ORDER BY customer_id, channel_id, occurred_at DESC, id DESC
        """
    )
    stage("current consent per customer and channel", cursor.rowcount)


def check(size: dict) -> dict:
    """Cheap consistency checks of the population (not timed): the channel rows add up to the
    touchpoints, the lifetime stats to the purchases, the heavy customer has her events, and a
    sample of identities is in the form the services normalise to."""
    from django.db import connection

    from customers.identifiers import normalize

    out = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM customers_touchpoint), "
            "(SELECT sum(touchpoints) FROM customers_customerchannelstat), "
            "(SELECT count(*) FROM customers_touchpoint WHERE kind = 'purchase'), "
            "(SELECT sum(lifetime_orders) FROM customers_customer), "
            "(SELECT count(*) FROM customers_touchpoint WHERE customer_id = %s)",
            [size["heavy_customer"]],
        )
        touchpoints, stat_sum, purchases, orders, heavy = cursor.fetchone()
        cursor.execute(
            "SELECT kind, value FROM customers_identity WHERE id % 997 = 1 ORDER BY id LIMIT 2000"
        )
        sample = cursor.fetchall()
    bad = [(k, v) for k, v in sample if normalize(k, v) != v]
    out = {
        "touchpoints": touchpoints,
        "channel_rows_sum": stat_sum,
        "purchases": purchases,
        "lifetime_orders_sum": orders,
        "heavy_customer_touchpoints": heavy,
        "identities_sampled": len(sample),
        "identities_not_normalised": bad[:10],
        "ok": touchpoints == stat_sum
        and purchases == orders
        and heavy == size["heavy_touchpoints"]
        and not bad,
    }
    return out
