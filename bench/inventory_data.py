"""The inventory benchmark's data set: 50 locations x 100,000 variants = 5 million stock rows.

Stock rows and their opening receipts are generated inside PostgreSQL with one
``INSERT ... SELECT`` each (a data generator, not product code: nothing else writes stock
without the services). Locations, rules and policies go through the ORM.
"""

import time

STORES = 45
WAREHOUSES = 5
MAX_ON_HAND = 25  # opening stock per row: 0..24 units, deterministic per (location, variant)


def location_codes() -> list[str]:
    return [f"w{n:02d}" for n in range(1, WAREHOUSES + 1)] + [
        f"s{n:02d}" for n in range(1, STORES + 1)
    ]


def generate(log) -> dict:
    from django.db import connection, transaction

    from inventory.models import (
        ChannelStockPolicy,
        ChannelStockRule,
        Location,
        StockLevel,
        StockMovement,
    )
    from omni.models import Channel

    if StockLevel.objects.exists():
        log("stock rows exist already: reusing them")
        return {"reused": True, "stock_rows": StockLevel.objects.count()}
    started = time.perf_counter()
    stages = []

    def stage(name, rows):
        elapsed = time.perf_counter() - started
        stages.append({"stage": name, "rows": rows, "seconds": round(elapsed, 1)})
        log(f"  {elapsed:6.1f}s  {name}: {rows:,}")

    with transaction.atomic():
        locations = []
        for index, code in enumerate(location_codes()):
            warehouse = code.startswith("w")
            locations.append(
                Location(
                    code=code,
                    name=("Warehouse " if warehouse else "Store ") + code[1:],
                    kind="warehouse" if warehouse else "store",
                    time_zone="Europe/Paris",
                    latitude=43 + (index * 0.13) % 7,
                    longitude=-1 + (index * 0.29) % 8,
                    ships_online_orders=warehouse or index % 3 == 0,
                    offers_pickup=not warehouse,
                    safety_stock=0 if warehouse else 1,
                )
            )
        Location.objects.bulk_create(locations)
        by_code = {loc.code: loc for loc in Location.objects.all()}
        channels = {c.code: c for c in Channel.objects.sales()}
        feeds = {
            "web": [f"w{n:02d}" for n in range(1, 6)] + [f"s{n:02d}" for n in range(1, 11)],
            "app": [f"w{n:02d}" for n in range(1, 6)] + [f"s{n:02d}" for n in range(1, 11)],
            "marketplace": [f"w{n:02d}" for n in range(1, 6)],
            "social-shop": ["w01"] + [f"s{n:02d}" for n in range(1, 6)],
        }
        rules = [
            ChannelStockRule(
                channel=channels[channel], location=by_code[code], priority=priority, buffer=0
            )
            for channel, codes in feeds.items()
            for priority, code in enumerate(codes, 1)
        ]
        ChannelStockRule.objects.bulk_create(rules)
        ChannelStockPolicy.objects.bulk_create(
            [
                ChannelStockPolicy(channel=channels["web"], low_stock_threshold=5),
                ChannelStockPolicy(channel=channels["app"], low_stock_threshold=5),
                ChannelStockPolicy(
                    channel=channels["marketplace"],
                    buffer=2,
                    exposed_percent=80,
                    cap=50,
                    low_stock_threshold=3,
                ),
                ChannelStockPolicy(channel=channels["social-shop"], allocation_strategy="nearest"),
            ]
        )
        stage("locations", len(locations))
        stage("channel stock rules", len(rules))
        stock = StockLevel._meta.db_table
        ledger = StockMovement._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{stock}" (location_id, variant_id, on_hand, reserved, updated_at) '
                "SELECT l.id, v.id, "
                f"abs(hashtext(l.id::text || ':' || v.id::text)) % {MAX_ON_HAND}, 0, now() "
                "FROM catalog_variant v CROSS JOIN inventory_location l"
            )
            stage("stock rows", cursor.rowcount)
            cursor.execute(
                f'INSERT INTO "{ledger}" (location_id, variant_id, kind, quantity, source, '
                "reference, reason, occurred_at, recorded_at) "
                "SELECT location_id, variant_id, 'receipt', on_hand, 'bench', 'opening stock', "
                f"'', now() - interval '30 days', now() FROM \"{stock}\" WHERE on_hand > 0"
            )
            stage("opening receipts in the ledger", cursor.rowcount)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    stage("vacuum analyze", 0)
    from inventory.services import availability_refresh

    sweep_started = time.perf_counter()
    result = availability_refresh(
        progress=lambda total: (
            total.variants % 20000 == 0 and log(f"    availability: {total.variants:,} variants")
        )
    )
    sweep_seconds = time.perf_counter() - sweep_started
    stage("channel availability rows (full sweep)", result.rows_written)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    return {
        "reused": False,
        "seconds": round(time.perf_counter() - started, 1),
        "stages": stages,
        "availability_sweep_s": round(sweep_seconds, 1),
        "availability_rows": result.rows_written,
        "stock_rows": StockLevel.objects.count(),
    }
