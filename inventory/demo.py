"""Demo inventory for ``load_demo``: three stores and a warehouse with stock, the channels' stock
rules, a count tolerance, reorder rules, a count with discrepancies waiting for review, a count
requested at another store and a transfer in transit.

Stock is inserted set-based: the stock rows and their ledger lines (a receipt, and for some rows
a few sales) in bulk, so ``on_hand == sum of movements`` holds from the start. The scenario then
goes through the services (count, reconciliation, transfer, suggestions), as staff would.

Running it again (``load_demo --force``) stocks only the variants that have no stock yet and
leaves what it created before, and what staff changed since, as it is.
"""

import random
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from catalog.models import Variant
from inventory.models import (
    AllocationStrategy,
    ChannelStockPolicy,
    ChannelStockRule,
    CountTolerance,
    Location,
    LocationKind,
    MovementKind,
    ReorderRule,
    StockCount,
    StockLevel,
    StockMovement,
    Transfer,
)
from inventory.services import (
    reorder_suggest,
    stock_count_request,
    stock_count_submit,
    stock_reconcile,
    transfer_request,
    transfer_ship,
)
from omni.models import Channel

BATCH = 2000
SOURCE = "demo"
COUNT_REFERENCE = "DEMO-COUNT-LYON"
TRANSFER_REFERENCE = "DEMO-REPLENISHMENT"

WAREHOUSE = "wh-orleans"
PARIS, LYON, MARSEILLE = "paris-rivoli", "lyon-part-dieu", "marseille-vieux-port"

LOCATIONS = [
    {
        "code": WAREHOUSE,
        "name": "Orléans distribution centre",
        "kind": LocationKind.WAREHOUSE,
        "address_line1": "Parc d'activités des Portes du Loiret",
        "address_line2": "Allée des Entrepôts",
        "postal_code": "45770",
        "city": "Saran",
        "country": "FR",
        "time_zone": "Europe/Paris",
        "latitude": Decimal("47.949800"),
        "longitude": Decimal("1.876100"),
        "ships_online_orders": True,
        "offers_pickup": False,
        "safety_stock": 0,
    },
    {
        "code": PARIS,
        "name": "Paris Rivoli",
        "kind": LocationKind.STORE,
        "address_line1": "112 Rue de Rivoli",
        "postal_code": "75001",
        "city": "Paris",
        "country": "FR",
        "time_zone": "Europe/Paris",
        "latitude": Decimal("48.860600"),
        "longitude": Decimal("2.341500"),
        "ships_online_orders": True,
        "offers_pickup": True,
        "safety_stock": 1,
    },
    {
        "code": LYON,
        "name": "Lyon Part-Dieu",
        "kind": LocationKind.STORE,
        "address_line1": "17 Rue du Docteur Bouchut",
        "postal_code": "69003",
        "city": "Lyon",
        "country": "FR",
        "time_zone": "Europe/Paris",
        "latitude": Decimal("45.761100"),
        "longitude": Decimal("4.855600"),
        "ships_online_orders": False,
        "offers_pickup": True,
        "safety_stock": 1,
    },
    {
        "code": MARSEILLE,
        "name": "Marseille Vieux-Port",
        "kind": LocationKind.STORE,
        "address_line1": "9 Quai du Port",
        "postal_code": "13002",
        "city": "Marseille",
        "country": "FR",
        "time_zone": "Europe/Paris",
        "latitude": Decimal("43.296400"),
        "longitude": Decimal("5.369700"),
        "ships_online_orders": False,
        "offers_pickup": True,
        "safety_stock": 1,
    },
]

STORES = [PARIS, LYON, MARSEILLE]
EVERYWHERE = [(WAREHOUSE, 1, 0), (PARIS, 10, 1), (LYON, 20, 1), (MARSEILLE, 30, 1)]

# channel code -> (stock policy, [(location, priority, buffer)])
CHANNELS = {
    "web": ({"low_stock_threshold": 3}, EVERYWHERE),
    "app": (
        {"low_stock_threshold": 3, "allocation_strategy": AllocationStrategy.NEAREST},
        EVERYWHERE,
    ),
    "marketplace": (
        {"exposed_percent": 80, "buffer": 2, "cap": 50, "low_stock_threshold": 5},
        [(WAREHOUSE, 1, 0)],
    ),
    "social-shop": ({"buffer": 1, "low_stock_threshold": 2}, [(WAREHOUSE, 1, 0), (PARIS, 10, 2)]),
}


def _locations() -> dict[str, Location]:
    locations = {}
    for spec in LOCATIONS:
        fields = dict(spec)
        code = fields.pop("code")
        locations[code], _ = Location.objects.get_or_create(code=code, defaults=fields)
    return locations


def _quantity(rng: random.Random, warehouse: bool) -> int | None:
    """What a location holds of an item: None when a store does not carry it."""
    draw = rng.random()
    if warehouse:
        if draw < 0.05:
            return 0
        return rng.randint(1, 4) if draw < 0.15 else rng.randint(20, 120)
    if rng.random() < 0.25:
        return None
    if draw < 0.08:
        return 0
    return rng.randint(1, 2) if draw < 0.20 else rng.randint(3, 15)


def _stock(locations, rng, now, progress) -> tuple[int, int]:
    """Stock rows with their ledger lines for every variant that has no stock yet."""
    stocked = StockLevel.objects.values("variant_id")
    variant_ids = list(
        Variant.objects.exclude(pk__in=stocked).order_by("pk").values_list("pk", flat=True)
    )
    opened = now - timedelta(days=30)
    rows, movements = [], []
    for variant_id in variant_ids:
        for code, location in locations.items():
            on_hand = _quantity(rng, location.kind == LocationKind.WAREHOUSE)
            if on_hand is None:
                continue
            rows.append(StockLevel(location=location, variant_id=variant_id, on_hand=on_hand))
            sold = rng.randint(1, 4) if code in STORES and rng.random() < 0.3 else 0
            if on_hand + sold == 0:
                continue  # nothing ever arrived: an empty row, no ledger line

            def move(kind, quantity, when, variant_id=variant_id, location=location):
                return StockMovement(
                    location=location,
                    variant_id=variant_id,
                    kind=kind,
                    quantity=quantity,
                    source=SOURCE,
                    reference="opening stock" if kind == MovementKind.RECEIPT else "",
                    occurred_at=when,
                )

            movements.append(move(MovementKind.RECEIPT, on_hand + sold, opened))
            for _ in range(sold):
                movements.append(
                    move(MovementKind.SALE, -1, now - timedelta(days=rng.randint(1, 27)))
                )
    StockLevel.objects.bulk_create(rows, batch_size=BATCH)
    StockMovement.objects.bulk_create(movements, batch_size=BATCH)
    if progress:
        progress("stock rows", len(rows))
        progress("ledger lines", len(movements))
    return len(rows), len(movements)


def _channel_rules(locations) -> None:
    for code, (policy, rules) in CHANNELS.items():
        channel = Channel.objects.filter(code=code).first()
        if channel is None or not channel.is_sales:
            continue
        ChannelStockPolicy.objects.get_or_create(channel=channel, defaults=policy)
        for location_code, priority, buffer in rules:
            ChannelStockRule.objects.get_or_create(
                channel=channel,
                location=locations[location_code],
                defaults={"priority": priority, "buffer": buffer},
            )
    CountTolerance.objects.get_or_create(
        location=None, defaults={"max_units": 2, "max_percent": Decimal("5.00")}
    )


def _reorder_rules(locations, rng) -> None:
    """A few dozen rules at two stores, on items running low there."""
    rules = []
    for code in (PARIS, LYON):
        low = list(
            StockLevel.objects.filter(location=locations[code], on_hand__lte=4)
            .order_by("variant_id")
            .values_list("variant_id", flat=True)[:18]
        )
        for variant_id in low:
            rules.append(
                ReorderRule(
                    location=locations[code],
                    variant_id=variant_id,
                    min_quantity=3,
                    max_quantity=rng.choice([8, 10, 12]),
                    lead_time_days=rng.choice([3, 7, 14]),
                    pack_size=rng.choice([1, 1, 2]),
                )
            )
    ReorderRule.objects.bulk_create(rules, ignore_conflicts=True)


def _transfer_in_transit(locations) -> None:
    if Transfer.objects.filter(reference=TRANSFER_REFERENCE).exists():
        return
    spare = list(
        StockLevel.objects.filter(location=locations[WAREHOUSE], on_hand__gte=30, reserved=0)
        .order_by("variant_id")
        .select_related("variant")[:3]
    )
    if not spare:
        return
    transfer = transfer_request(
        from_location=locations[WAREHOUSE],
        to_location=locations[PARIS],
        lines=[
            {"variant": row.variant, "quantity": q}
            for row, q in zip(spare, (4, 6, 3), strict=False)
        ],
        reference=TRANSFER_REFERENCE,
        note="Weekly replenishment of the Paris store.",
    )
    transfer_ship(transfer=transfer)


def _count_with_discrepancies(locations, rng, now) -> None:
    """A count at Lyon two hours ago: most lines match, a few are off by a unit (within the
    tolerance, applied by reconciliation) and a few by more (left for review)."""
    if StockCount.objects.filter(reference=COUNT_REFERENCE).exists():
        return
    rows = list(
        StockLevel.objects.filter(location=locations[LYON])
        .order_by("variant_id")
        .values_list("variant_id", "on_hand")[:24]
    )
    lines = []
    for index, (variant_id, on_hand) in enumerate(rows):
        if index % 4 == 1:
            difference = rng.choice([-1, 1]) if on_hand > 0 else 1
        elif index % 4 == 3:
            difference = rng.choice([-4, -3, 5, 6]) if on_hand >= 4 else rng.choice([3, 5])
        else:
            difference = 0
        lines.append({"variant": variant_id, "quantity": on_hand + difference})
    if not lines:
        return
    skus = dict(Variant.objects.filter(pk__in=[v for v, _ in rows]).values_list("pk", "sku"))
    stock_count_submit(
        location=locations[LYON],
        counted_at=now - timedelta(hours=2),
        lines=[{"sku": skus[line["variant"]], "quantity": line["quantity"]} for line in lines],
        reference=COUNT_REFERENCE,
        source=SOURCE,
    )


@transaction.atomic
def generate_inventory(*, seed: int = 11, progress=None) -> dict:
    """Create the demo inventory (see the module docstring). Returns what it created."""
    rng = random.Random(seed)
    now = timezone.now()
    locations = _locations()
    rows, movements = _stock(locations, rng, now, progress)
    _channel_rules(locations)
    _reorder_rules(locations, rng)
    _transfer_in_transit(locations)
    _count_with_discrepancies(locations, rng, now)
    run = stock_reconcile(trigger=SOURCE)
    stock_count_request(location=locations[MARSEILLE], reason="Quarterly count.")
    suggestions = reorder_suggest()
    return {
        "locations": len(locations),
        "stock_rows": rows,
        "movements": movements,
        "pending_review": run.pending_review,
        "suggestions": suggestions.proposed,
    }
