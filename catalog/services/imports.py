"""CSV import of products, variants and listings: all rows or none.

Every row is validated first, with the model's own validators and the set-wide rules (a SKU
belongs to one product, a GTIN to one SKU, a channel exists and sells); a file with any bad
row is refused whole with every error listed by row and column. Only then are brands,
categories, products, variants and listings upserted, set-based, in one transaction.
"""

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalog.csvformat import COLUMNS, FALSE_VALUES, REQUIRED_COLUMNS, TRUE_VALUES, parse_pairs
from catalog.models import Brand, Category, ChannelListing, Product, Variant
from catalog.validators import (
    normalize_currency,
    normalize_gtin,
    normalize_sku,
    validate_currency,
    validate_gtin,
    validate_sku,
)
from omni.exceptions import ValidationFailed
from omni.models import Channel
from omni.services import outbox_emit_many

from .listings import channel_currency
from .products import CATEGORY_SEPARATOR, category_split_path

MAX_ERRORS = 500
HANDLE_RE = re.compile(r"[-a-zA-Z0-9_]+")  # a SlugField's rule: ASCII only
CENT = Decimal("0.01")
# Largest values the columns hold: bulk_create does not run the model's validators, so a value
# past these would fail in the database (DataError) instead of being reported on its row.
PRICE_FIELD = Variant._meta.get_field("base_price")
MAX_PRICE = Decimal(10) ** (PRICE_FIELD.max_digits - PRICE_FIELD.decimal_places)
MAX_WEIGHT = 2147483647
MAX_LENGTHS = {
    "handle": Product._meta.get_field("handle").max_length,
    "title": Product._meta.get_field("title").max_length,
    "brand": Brand._meta.get_field("name").max_length,
    "channel_title": ChannelListing._meta.get_field("title").max_length,
}
CATEGORY_NAME_MAX = Category._meta.get_field("name").max_length
CATEGORY_PATH_MAX = Category._meta.get_field("path").max_length


@dataclass
class CatalogImportResult:
    rows: int = 0
    products_created: int = 0
    products_updated: int = 0
    variants_created: int = 0
    variants_updated: int = 0
    listings_created: int = 0
    listings_updated: int = 0
    errors: list = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.rows} rows: {self.products_created} products created, "
            f"{self.products_updated} updated; {self.variants_created} variants created, "
            f"{self.variants_updated} updated; {self.listings_created} listings created, "
            f"{self.listings_updated} updated."
        )


class _Errors:
    def __init__(self):
        self.items = []

    def add(self, row: int, column: str, message: str):
        if len(self.items) < MAX_ERRORS:
            self.items.append({"row": row, "column": column, "message": message})

    def from_validation(self, row: int, column: str, exc: ValidationError):
        for message in exc.messages:
            self.add(row, column, message)

    def cells(self) -> set:
        """The (row, column) cells with an error, so that rules across rows skip them."""
        return {(e["row"], e["column"]) for e in self.items}

    def sorted(self) -> list:
        return sorted(self.items, key=lambda e: e["row"])


def _refused(errors: list) -> ValidationFailed:
    return ValidationFailed(
        f"The file was refused: {len(errors)} error(s); nothing was imported.",
        code="import_invalid",
        extra={"errors": errors},
    )


def _decimal(value: str):
    try:
        result = Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _price_error(text: str, value) -> str | None:
    """Why ``value`` (parsed from ``text``) cannot be a price, or None."""
    if value is None or value < 0:
        return f"{text!r} is not a price >= 0."
    if value >= MAX_PRICE:
        digits = PRICE_FIELD.max_digits - PRICE_FIELD.decimal_places
        return f"{text!r} is too large (at most {digits} digits before the point)."
    if value != value.quantize(CENT):
        return f"{text!r} has more than 2 decimal places."
    return None


def _datetime(value: str):
    value = (value or "").strip()
    if not value:
        return None, True
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        return None, False
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed, True


def _read(stream) -> tuple[list[str], list[dict]]:
    """The header and the rows; ``ValidationFailed`` if the file is not UTF-8 or not a CSV."""
    header, rows = None, []
    try:
        if isinstance(stream, bytes):
            stream = stream.decode("utf-8-sig")
        if isinstance(stream, str):
            stream = io.StringIO(stream.removeprefix("\ufeff"))
        reader = csv.DictReader(stream)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        for raw in reader:
            rows.append(raw)
    except (UnicodeDecodeError, csv.Error) as exc:
        if isinstance(exc, UnicodeDecodeError):
            message = "The file is not UTF-8 text."
        else:
            message = f"The file is not a readable CSV: {exc}."
        row = 1 if header is None else len(rows) + 2
        raise _refused([{"row": row, "column": "-", "message": message}]) from exc
    return header, rows


def _parse_rows(header, raw_rows, errors: _Errors, progress=None):
    """Validate each row on its own; return the rows as clean dicts keyed by row number."""
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1}, key=header.index)
    if missing:
        errors.add(1, ", ".join(missing), "Required column missing from the header.")
    for c in unknown:
        errors.add(1, c, f"Unknown column (expected some of: {', '.join(COLUMNS)}).")
    for c in repeated:
        errors.add(1, c, "Column given twice.")
    if missing or unknown or repeated:
        return []
    channels = {c.code: c for c in Channel.objects.all()}
    parsed = []
    for index, raw in enumerate(raw_rows, start=2):
        if progress and index % 1000 == 0:
            progress(index - 1, len(raw_rows))
        if None in raw:
            errors.add(index, "-", "Row has more cells than the header.")
            continue
        r = {k: (v or "").strip() for k, v in raw.items()}
        row = {"row": index}
        for column, value in r.items():
            if "\x00" in value:  # PostgreSQL text cannot hold it
                errors.add(index, column, "Contains a NUL character.")
        row["category"] = f" {CATEGORY_SEPARATOR} ".join(category_split_path(r.get("category")))
        for column in REQUIRED_COLUMNS:
            if not (row["category"] if column == "category" else r.get(column)):
                errors.add(index, column, "Required.")
        for column, limit in MAX_LENGTHS.items():
            if len(r.get(column, "")) > limit:
                errors.add(index, column, f"At most {limit} characters.")
        if any(len(part) > CATEGORY_NAME_MAX for part in category_split_path(row["category"])):
            errors.add(index, "category", f"At most {CATEGORY_NAME_MAX} characters per level.")
        elif len(row["category"]) > CATEGORY_PATH_MAX:
            errors.add(index, "category", f"At most {CATEGORY_PATH_MAX} characters.")
        row["handle"] = r.get("handle", "")
        if row["handle"] and not HANDLE_RE.fullmatch(row["handle"]):
            errors.add(index, "handle", "Use letters, digits, '-' and '_' only.")
        row["title"] = r.get("title", "")
        row["brand"] = r.get("brand", "")
        row["description"] = r.get("description", "")
        for column, key in (("attributes", "attributes"), ("options", "option_values")):
            row[key] = {}
            try:
                row[key] = parse_pairs(r.get(column, ""))
            except ValueError as exc:
                errors.add(index, column, f"{exc}; write key=value pairs separated by ';'.")
        row["sku"] = normalize_sku(r.get("sku", ""))
        if row["sku"]:
            try:
                validate_sku(row["sku"])
            except ValidationError as exc:
                errors.from_validation(index, "sku", exc)
        row["gtin"] = normalize_gtin(r.get("gtin"))
        if row["gtin"]:
            try:
                validate_gtin(row["gtin"])
            except ValidationError as exc:
                errors.from_validation(index, "gtin", exc)
        weight = r.get("weight_grams", "")
        row["weight_grams"] = None
        if weight:
            # isascii(): "²".isdigit() is True but int("²") fails
            if weight.isascii() and weight.isdigit() and int(weight) <= MAX_WEIGHT:
                row["weight_grams"] = int(weight)
            else:
                errors.add(index, "weight_grams", f"{weight!r} is not a whole number of grams.")
        base_price = _decimal(r.get("base_price", "")) if r.get("base_price") else None
        problem = _price_error(r["base_price"], base_price) if r.get("base_price") else None
        if problem:
            errors.add(index, "base_price", problem)
        row["base_price"] = base_price
        row["channel"] = None
        code = r.get("channel", "")
        if code:
            channel = channels.get(code)
            if channel is None:
                errors.add(index, "channel", f"Unknown channel {code!r}.")
            elif not channel.is_sales:
                errors.add(index, "channel", f"{code} is a messaging channel, not a sales channel.")
            else:
                row["channel"] = channel
            published = r.get("published", "").lower()
            if published not in TRUE_VALUES | FALSE_VALUES:
                errors.add(index, "published", f"{r['published']!r} is not yes/no.")
            row["published"] = published in TRUE_VALUES
            price_text = r.get("price", "")
            price = _decimal(price_text) if price_text else base_price
            problem = _price_error(price_text, price) if price_text else None
            if problem:
                errors.add(index, "price", problem)
            row["price"] = price
            currency = normalize_currency(r.get("currency"))
            if not currency and row["channel"] is not None:
                currency = channel_currency(row["channel"])
            if currency:
                try:
                    validate_currency(currency)
                except ValidationError as exc:
                    errors.from_validation(index, "currency", exc)
            row["currency"] = currency
            row["channel_title"] = r.get("channel_title", "")
            row["channel_description"] = r.get("channel_description", "")
            for column in ("available_from", "available_until"):
                value, ok = _datetime(r.get(column, ""))
                if not ok:
                    errors.add(index, column, f"{r[column]!r} is not a date-time (ISO 8601).")
                row[column] = value
            if (
                isinstance(row["available_from"], datetime)
                and isinstance(row["available_until"], datetime)
                and row["available_until"] <= row["available_from"]
            ):
                errors.add(index, "available_until", "Must be after available_from.")
        elif any(r.get(c) for c in ("published", "price", "currency", "channel_title")):
            errors.add(index, "channel", "Listing columns are filled but no channel is given.")
        parsed.append(row)
    return parsed


def _check_consistency(rows, errors: _Errors):
    """Rules across rows and against the database.

    Runs even when some rows have errors of their own, so that a refused file lists every
    error at once; cells that already have an error are left out of the comparisons.
    """
    first_product, first_variant, listing_rows = {}, {}, {}
    product_keys = ("title", "brand", "category", "description", "attributes")
    variant_keys = ("handle", "gtin", "option_values", "weight_grams", "base_price")
    gtin_owner = {}
    bad = errors.cells()

    def column_of(key):
        return "options" if key == "option_values" else key

    def differs(row, ref, key):
        column = column_of(key)
        if (row["row"], column) in bad or (ref["row"], column) in bad:
            return False
        return row[key] != ref[key]

    for row in rows:
        handle, sku = row["handle"], row["sku"]
        handle_ok = bool(handle) and (row["row"], "handle") not in bad
        sku_ok = bool(sku) and (row["row"], "sku") not in bad
        if handle_ok and handle in first_product:
            ref = first_product[handle]
            for key in product_keys:
                if differs(row, ref, key):
                    errors.add(
                        row["row"],
                        column_of(key),
                        f"Differs from row {ref['row']} for the same product {handle!r}.",
                    )
        elif handle_ok:
            first_product[handle] = row
        if not sku_ok:
            continue
        if sku in first_variant:
            ref = first_variant[sku]
            for key in variant_keys:
                if differs(row, ref, key):
                    errors.add(
                        row["row"],
                        column_of(key),
                        f"Differs from row {ref['row']} for the same SKU {sku}.",
                    )
        else:
            first_variant[sku] = row
        if row["gtin"] and (row["row"], "gtin") not in bad:
            other = gtin_owner.setdefault(row["gtin"], sku)
            if other != sku:
                errors.add(row["row"], "gtin", f"GTIN {row['gtin']} is also given to SKU {other}.")
        if row["channel"] is not None:
            key = (sku, row["channel"].code)
            if key in listing_rows:
                errors.add(
                    row["row"],
                    "channel",
                    f"SKU {sku} on {row['channel'].code} is listed twice "
                    f"(also row {listing_rows[key]}).",
                )
            else:
                listing_rows[key] = row["row"]

    skus = list(first_variant)
    existing = {}
    for start in range(0, len(skus), 5000):
        existing.update(
            {
                sku: (handle, gtin)
                for sku, handle, gtin in Variant.objects.filter(
                    sku__in=skus[start : start + 5000]
                ).values_list("sku", "product__handle", "gtin")
            }
        )
    for sku, row in first_variant.items():
        if (row["row"], "handle") in bad or not row["handle"]:
            continue
        if sku in existing and existing[sku][0] != row["handle"]:
            errors.add(
                row["row"],
                "sku",
                f"SKU {sku} belongs to product {existing[sku][0]!r}, not {row['handle']!r}.",
            )
    gtins = list(gtin_owner)
    for start in range(0, len(gtins), 5000):
        for gtin, sku in Variant.objects.filter(gtin__in=gtins[start : start + 5000]).values_list(
            "gtin", "sku"
        ):
            if gtin_owner[gtin] != sku:
                row = first_variant[gtin_owner[gtin]]
                errors.add(row["row"], "gtin", f"GTIN {gtin} already belongs to SKU {sku}.")
    return first_product, first_variant


def catalog_import_csv(*, stream, progress=None) -> CatalogImportResult:
    """Import a catalog CSV. Raises ``ValidationFailed`` (with ``extra["errors"]``) and writes
    nothing if any row is bad."""
    header, raw_rows = _read(stream)
    errors = _Errors()
    if not header:
        errors.add(1, "-", "The file is empty: expected a header row.")
    rows = _parse_rows(header, raw_rows, errors, progress) if header else []
    products, variants = _check_consistency(rows, errors)
    if not errors.items and not rows:
        errors.add(2, "-", "The file has a header but no rows.")
    if errors.items:
        raise _refused(errors.sorted())
    return _write(rows, products, variants)


@transaction.atomic
def _write(rows, products: dict, variants: dict) -> CatalogImportResult:
    now = timezone.now()
    result = CatalogImportResult(rows=len(rows))

    brand_names = sorted({p["brand"] for p in products.values()})
    Brand.objects.bulk_create([Brand(name=n) for n in brand_names], ignore_conflicts=True)
    brands = dict(Brand.objects.filter(name__in=brand_names).values_list("name", "pk"))

    categories = dict(Category.objects.values_list("path", "pk"))
    for path in sorted({p["category"] for p in products.values()}):
        parts = category_split_path(path)
        for depth in range(len(parts)):
            full = f" {CATEGORY_SEPARATOR} ".join(parts[: depth + 1])
            if full not in categories:
                parent = categories.get(f" {CATEGORY_SEPARATOR} ".join(parts[:depth]))
                categories[full] = Category.objects.create(
                    path=full, name=parts[depth], parent_id=parent
                ).pk

    handles = list(products)
    existing_products = set(
        Product.objects.filter(handle__in=handles).values_list("handle", flat=True)
    )
    Product.objects.bulk_create(
        [
            Product(
                handle=h,
                title=p["title"],
                description=p["description"],
                brand_id=brands[p["brand"]],
                category_id=categories[p["category"]],
                attributes=p["attributes"],
                updated_at=now,
            )
            for h, p in products.items()
        ],
        update_conflicts=True,
        unique_fields=["handle"],
        update_fields=["title", "description", "brand", "category", "attributes", "updated_at"],
        batch_size=2000,
    )
    product_ids = dict(Product.objects.filter(handle__in=handles).values_list("handle", "pk"))
    result.products_updated = len(existing_products)
    result.products_created = len(handles) - len(existing_products)

    skus = list(variants)
    existing_variants = set(Variant.objects.filter(sku__in=skus).values_list("sku", flat=True))
    Variant.objects.bulk_create(
        [
            Variant(
                product_id=product_ids[v["handle"]],
                sku=sku,
                gtin=v["gtin"],
                option_values=v["option_values"],
                weight_grams=v["weight_grams"],
                base_price=v["base_price"],
                updated_at=now,
            )
            for sku, v in variants.items()
        ],
        update_conflicts=True,
        unique_fields=["sku"],
        update_fields=["gtin", "option_values", "weight_grams", "base_price", "updated_at"],
        batch_size=2000,
    )
    variant_ids = dict(Variant.objects.filter(sku__in=skus).values_list("sku", "pk"))
    result.variants_updated = len(existing_variants)
    result.variants_created = len(skus) - len(existing_variants)

    listing_rows = [r for r in rows if r["channel"] is not None]
    existing_listings = {
        (vid, cid): (published, published_at)
        for vid, cid, published, published_at in ChannelListing.objects.filter(
            variant_id__in=variant_ids.values()
        ).values_list("variant_id", "channel_id", "is_published", "published_at")
    }
    listings = []
    events = []
    for r in listing_rows:
        vid, channel = variant_ids[r["sku"]], r["channel"]
        was_published, published_at = existing_listings.get((vid, channel.pk), (False, None))
        if r["published"] and not was_published:
            published_at = now  # as listing_publish does; kept while it stays published
        listings.append(
            ChannelListing(
                variant_id=vid,
                product_id=product_ids[r["handle"]],
                channel=channel,
                is_published=r["published"],
                published_at=published_at,
                price=r["price"],
                currency=r["currency"],
                title=r["channel_title"],
                description=r["channel_description"],
                available_from=r["available_from"],
                available_until=r["available_until"],
                updated_at=now,
            )
        )
        if r["published"] != was_published:
            events.append(
                {
                    "type": "catalog.listing.published"
                    if r["published"]
                    else "catalog.listing.unpublished",
                    "subject_type": "variant",
                    "subject_id": r["sku"],
                    "payload": {"sku": r["sku"], "channel": channel.code, "source": "import"},
                }
            )
        if (vid, channel.pk) in existing_listings:
            result.listings_updated += 1
        else:
            result.listings_created += 1
    ChannelListing.objects.bulk_create(
        listings,
        update_conflicts=True,
        unique_fields=["variant", "channel"],
        update_fields=[
            "is_published",
            "published_at",
            "price",
            "currency",
            "title",
            "description",
            "available_from",
            "available_until",
            "updated_at",
        ],
        batch_size=2000,
    )
    events.append(
        {
            "type": "catalog.imported",
            "subject_type": "import",
            "subject_id": now.isoformat(),
            "payload": {
                "rows": result.rows,
                "products": len(handles),
                "variants": len(skus),
                "listings": len(listings),
            },
        }
    )
    outbox_emit_many(events)
    return result
