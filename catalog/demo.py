"""A realistic generated catalog, for the demo (``load_demo``) and the benchmarks.

Deterministic for a given seed. Inserts are set-based (``bulk_create`` in batches), so
100,000 variants on 5 channels take seconds, not minutes.
"""

import random
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from catalog.models import Brand, Category, ChannelListing, Product, Variant
from catalog.validators import gtin_check_digit
from omni.models import Channel

BRANDS = [
    "Northwind",
    "Alder & Co",
    "Kestrel",
    "Lumen",
    "Marlow",
    "Oakridge",
    "Pinecrest",
    "Quill",
    "Riverstone",
    "Solstice",
    "Tidewater",
    "Umber",
    "Vantage",
    "Willow Lane",
    "Yarrow",
    "Zephyr",
    "Bramble",
    "Cobalt",
    "Driftwood",
    "Ember",
]

# category path -> (nouns, option sets, price range, weight range in grams)
CATEGORIES = {
    "Apparel > Tops": (
        ["T-Shirt", "Shirt", "Sweater", "Hoodie", "Polo", "Blouse", "Cardigan"],
        {"size": ["XS", "S", "M", "L", "XL"], "colour": ["Black", "White", "Navy", "Olive"]},
        (12, 90),
        (150, 600),
    ),
    "Apparel > Bottoms": (
        ["Jeans", "Chinos", "Shorts", "Skirt", "Joggers", "Trousers"],
        {"size": ["28", "30", "32", "34", "36"], "colour": ["Indigo", "Black", "Stone"]},
        (25, 120),
        (300, 800),
    ),
    "Apparel > Outerwear": (
        ["Jacket", "Parka", "Raincoat", "Gilet", "Overcoat"],
        {"size": ["S", "M", "L", "XL"], "colour": ["Black", "Khaki", "Navy"]},
        (60, 320),
        (600, 1800),
    ),
    "Footwear > Sneakers": (
        ["Runner", "Court Sneaker", "Trail Shoe", "Slip-On"],
        {"size": ["38", "39", "40", "41", "42", "43", "44"], "colour": ["White", "Black"]},
        (45, 180),
        (700, 1100),
    ),
    "Footwear > Boots": (
        ["Chelsea Boot", "Hiking Boot", "Work Boot"],
        {"size": ["38", "39", "40", "41", "42", "43", "44"]},
        (80, 260),
        (1100, 1900),
    ),
    "Home > Kitchen": (
        ["Chef's Knife", "Skillet", "Dutch Oven", "Mug Set", "Cutting Board", "Kettle"],
        {"colour": ["Graphite", "Sage", "Cream"]},
        (15, 220),
        (300, 5000),
    ),
    "Home > Bedding": (
        ["Duvet Cover", "Pillowcase Pair", "Fitted Sheet", "Throw"],
        {"size": ["Single", "Double", "King"], "colour": ["White", "Grey", "Sand"]},
        (20, 160),
        (400, 2200),
    ),
    "Electronics > Audio": (
        ["Headphones", "Earbuds", "Bluetooth Speaker", "Soundbar"],
        {"colour": ["Black", "Silver", "Blue"]},
        (30, 450),
        (50, 3500),
    ),
    "Electronics > Accessories": (
        ["Charger", "Power Bank", "USB-C Cable", "Phone Case"],
        {"model": ["Standard", "Pro", "Max"]},
        (8, 90),
        (30, 400),
    ),
    "Beauty > Skincare": (
        ["Moisturiser", "Cleanser", "Serum", "Sunscreen", "Face Mask"],
        {"size": ["30 ml", "50 ml", "100 ml"]},
        (9, 75),
        (50, 250),
    ),
    "Sports > Fitness": (
        ["Yoga Mat", "Kettlebell", "Resistance Band", "Water Bottle"],
        {"colour": ["Black", "Teal", "Coral"]},
        (10, 120),
        (200, 12000),
    ),
}
ADJECTIVES = [
    "Classic",
    "Essential",
    "Everyday",
    "Heritage",
    "Urban",
    "Coastal",
    "Alpine",
    "Studio",
    "Vintage",
    "Modern",
    "Organic",
    "Lightweight",
    "Premium",
    "Relaxed",
    "Slim",
    "Tailored",
]
MATERIALS = [
    "Cotton",
    "Linen",
    "Wool",
    "Recycled polyester",
    "Leather",
    "Steel",
    "Bamboo",
    "Ceramic",
]
CHANNEL_PRICE_FACTORS = {
    "store_pos": Decimal("1.00"),
    "web": Decimal("1.00"),
    "app": Decimal("0.95"),
    "social": Decimal("1.00"),
    "marketplace": Decimal("1.10"),
}


def _gtin13(n: int) -> str:
    body = f"40{n:010d}"
    return body + str(gtin_check_digit(body))


def _ensure_categories() -> dict[str, int]:
    ids = {}
    for path in CATEGORIES:
        parent_name, name = [p.strip() for p in path.split(">")]
        parent, _ = Category.objects.get_or_create(path=parent_name, defaults={"name": parent_name})
        child, _ = Category.objects.get_or_create(
            path=path, defaults={"name": name, "parent": parent}
        )
        ids[path] = child.pk
    return ids


def _variant_options(rng: random.Random, options: dict, limit: int) -> list[dict]:
    combos = [{}]
    for key, values in options.items():
        combos = [{**c, key: v} for c in combos for v in values]
    if len(combos) > limit:
        combos = rng.sample(combos, limit)
    return combos


@transaction.atomic
def generate_catalog(
    *,
    products: int,
    variants_per_product: int | None = None,
    channels: list[Channel] | None = None,
    seed: int = 7,
    batch_size: int = 5000,
    progress=None,
    start: int = 0,
) -> dict:
    """Create ``products`` products with variants listed on ``channels`` (default: all sales).

    With ``variants_per_product`` every product gets exactly that many variants; otherwise 1
    to 8 depending on its options. Returns the counts created.
    """
    rng = random.Random(seed)
    channels = list(channels if channels is not None else Channel.objects.sales().active())
    brand_ids = []
    for name in BRANDS:
        brand, _ = Brand.objects.get_or_create(name=name)
        brand_ids.append(brand.pk)
    category_ids = _ensure_categories()
    paths = list(CATEGORIES)
    now = timezone.now()

    product_rows, specs = [], []
    for i in range(start, start + products):
        path = paths[i % len(paths)]
        nouns, options, (lo, hi), (wlo, whi) = CATEGORIES[path]
        title = f"{rng.choice(ADJECTIVES)} {rng.choice(nouns)}"
        material = rng.choice(MATERIALS)
        product_rows.append(
            Product(
                handle=f"p{i:06d}-{title.lower().replace(' ', '-').replace(chr(39), '')}"[:120],
                title=title,
                description=f"{title} in {material.lower()}. Designed to last, made to be worn "
                f"and used every day.",
                brand_id=rng.choice(brand_ids),
                category_id=category_ids[path],
                attributes={
                    "material": material,
                    "model": f"{path.split('>')[1].strip()[:3].upper()}-{i:05d}",
                },
                updated_at=now,
            )
        )
        count = variants_per_product or rng.randint(1, 8)
        specs.append(
            (path, options, _variant_options(rng, options, count), count, (lo, hi), (wlo, whi))
        )
    Product.objects.bulk_create(product_rows, batch_size=batch_size)
    if progress:
        progress("products", len(product_rows))

    variant_rows = []
    serial = start * 16
    for product, (_path, _options, combos, count, (lo, hi), (wlo, whi)) in zip(
        product_rows, specs, strict=True
    ):
        base = Decimal(rng.randint(lo * 100, hi * 100)) / 100
        base = base.quantize(Decimal("1")) - Decimal("0.01") if base > 1 else base
        for n in range(count):
            option_values = combos[n % len(combos)] if combos else {}
            serial += 1
            variant_rows.append(
                Variant(
                    product_id=product.pk,
                    sku=f"{product.handle.split('-')[0].upper()}-{n + 1:02d}",
                    gtin=_gtin13(serial),
                    option_values=option_values
                    if n < len(combos)
                    else {**option_values, "pack": str(n + 1)},
                    weight_grams=rng.randint(wlo, whi),
                    base_price=base,
                    updated_at=now,
                )
            )
    Variant.objects.bulk_create(variant_rows, batch_size=batch_size)
    if progress:
        progress("variants", len(variant_rows))

    listings = 0
    for channel in channels:
        factor = CHANNEL_PRICE_FACTORS.get(channel.kind, Decimal("1.00"))
        currency = channel.currency or "EUR"
        batch = []
        for v in variant_rows:
            published = rng.random() < 0.92
            batch.append(
                ChannelListing(
                    variant_id=v.pk,
                    product_id=v.product_id,
                    channel_id=channel.pk,
                    is_published=published,
                    published_at=now if published else None,
                    price=(v.base_price * factor).quantize(Decimal("0.01")),
                    currency=currency,
                    updated_at=now,
                )
            )
            if len(batch) >= batch_size:
                ChannelListing.objects.bulk_create(batch)
                listings += len(batch)
                batch = []
        ChannelListing.objects.bulk_create(batch)
        listings += len(batch)
        if progress:
            progress(f"listings on {channel.code}", listings)
    return {"products": len(product_rows), "variants": len(variant_rows), "listings": listings}
