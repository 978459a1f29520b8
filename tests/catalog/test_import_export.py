"""The catalog CSV: import (all rows or none), export, the round trip and the commands."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from catalog.csvformat import COLUMNS, format_pairs, parse_pairs
from catalog.models import Brand, Category, ChannelListing, Product, Variant
from catalog.selectors import catalog_export_rows
from catalog.services import (
    catalog_import_csv,
    category_ensure_path,
    listing_upsert,
    product_create,
)
from catalog.services.imports import MAX_ERRORS
from omni.exceptions import ValidationFailed
from omni.models import Channel, OutboxEvent
from tests.factories import BrandFactory, ListingFactory, ProductFactory, VariantFactory

pytestmark = pytest.mark.django_db

GTIN_A = "4006381333931"
GTIN_B = "5901234123457"
GTIN_C = "96385074"

TEE = {
    "handle": "tee",
    "title": "Classic Tee",
    "brand": "Northwind",
    "category": "Apparel > Tops",
    "description": "Soft cotton.",
    "attributes": "material=Cotton",
}


def _csv(rows, columns=COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def _tee(**cells):
    return {**TEE, "base_price": "19.99", **cells}


HAPPY_ROWS = [
    _tee(
        sku="tee-s",
        gtin=GTIN_A,
        options="size=S",
        weight_grams="180",
        channel="web",
        published="yes",
    ),
    _tee(
        sku="TEE-S",
        gtin=GTIN_A,
        options="size=S",
        weight_grams="180",
        channel="marketplace",
        published="no",
        price="21.50",
        channel_title="Tee (marketplace)",
        available_from="2030-01-01T00:00:00+00:00",
    ),
    _tee(sku="TEE-M", options="size=M"),
    {
        "handle": "mug",
        "title": "Mug",
        "brand": "Kestrel",
        "category": "Home>Kitchen",
        "sku": "MUG-1",
        "gtin": GTIN_B,
        "weight_grams": "350",
        "base_price": "8",
        "channel": "app",
        "published": "y",
        "price": "7.5",
        "currency": "usd",
    },
]
HAPPY = _csv(HAPPY_ROWS)

EXPORT_OF_HAPPY = (
    ",".join(COLUMNS) + "\r\n"
    "mug,Mug,Kestrel,Home > Kitchen,,,MUG-1,5901234123457,,350,8.00,app,yes,7.50,USD,,,,\r\n"
    "tee,Classic Tee,Northwind,Apparel > Tops,Soft cotton.,material=Cotton,TEE-M,,size=M,,"
    "19.99,,,,,,,,\r\n"
    "tee,Classic Tee,Northwind,Apparel > Tops,Soft cotton.,material=Cotton,TEE-S,4006381333931,"
    "size=S,180,19.99,marketplace,no,21.50,EUR,Tee (marketplace),,2030-01-01T00:00:00+00:00,\r\n"
    "tee,Classic Tee,Northwind,Apparel > Tops,Soft cotton.,material=Cotton,TEE-S,4006381333931,"
    "size=S,180,19.99,web,yes,19.99,EUR,,,,\r\n"
)


def _counts():
    return {
        "brands": Brand.objects.count(),
        "categories": Category.objects.count(),
        "products": Product.objects.count(),
        "variants": Variant.objects.count(),
        "listings": ChannelListing.objects.count(),
        "events": OutboxEvent.objects.count(),
    }


def _snapshot(*, published_at=True):
    listing_fields = [
        "variant__sku",
        "channel__code",
        "product__handle",
        "is_published",
        "price",
        "currency",
        "title",
        "description",
        "available_from",
        "available_until",
    ]
    if published_at:
        listing_fields.append("published_at")
    return {
        "products": list(
            Product.objects.order_by("handle").values_list(
                "handle",
                "title",
                "description",
                "brand__name",
                "category__path",
                "attributes",
                "is_active",
            )
        ),
        "variants": list(
            Variant.objects.order_by("sku").values_list(
                "sku",
                "product__handle",
                "gtin",
                "option_values",
                "weight_grams",
                "base_price",
                "is_active",
            )
        ),
        "listings": list(
            ChannelListing.objects.order_by("variant__sku", "channel__code").values_list(
                *listing_fields
            )
        ),
    }


def _export() -> str:
    out = io.StringIO()
    csv.writer(out).writerows(catalog_export_rows())
    return out.getvalue()


def _refused(text) -> list[tuple]:
    with pytest.raises(ValidationFailed) as info:
        catalog_import_csv(stream=text)
    assert info.value.code == "import_invalid"
    errors = info.value.extra["errors"]
    assert info.value.message == (
        f"The file was refused: {len(errors)} error(s); nothing was imported."
    )
    return [(e["row"], e["column"], e["message"]) for e in errors]


# --- key=value pairs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("colour=Red; size=M", {"colour": "Red", "size": "M"}),
        (" colour = Red ;; size=M ;", {"colour": "Red", "size": "M"}),
        ("note=a=b", {"note": "a=b"}),
        ("empty=", {"empty": ""}),
        (r"care=wash cold\; dry flat", {"care": "wash cold; dry flat"}),
        (r"path=C:\temp", {"path": r"C:\temp"}),
        (r"a\=b=c", {"a=b": "c"}),
    ],
)
def test_parse_pairs(text, expected):
    assert parse_pairs(text) == expected


@pytest.mark.parametrize("text", ["colour", "=Red", "colour=Red; size", r"a\=b"])
def test_parse_pairs_refuses_a_malformed_pair(text):
    with pytest.raises(ValueError, match="is not key=value"):
        parse_pairs(text)


def test_format_pairs():
    assert format_pairs({"colour": "Red", "size": "M"}) == "colour=Red; size=M"
    assert format_pairs({}) == ""
    assert format_pairs({"care": "wash; dry", "a=b": "c"}) == r"care=wash\; dry; a\=b=c"


stripped = st.text().map(str.strip)


@given(st.dictionaries(stripped.filter(bool), stripped, max_size=5))
def test_format_then_parse_pairs_is_the_identity(data):
    assert parse_pairs(format_pairs(data)) == data


# --- Import: happy path -----------------------------------------------------------------------


def test_import_creates_products_variants_and_listings():
    result = catalog_import_csv(stream=HAPPY)

    assert (result.rows, result.products_created, result.products_updated) == (4, 2, 0)
    assert (result.variants_created, result.variants_updated) == (3, 0)
    assert (result.listings_created, result.listings_updated) == (3, 0)
    assert result.summary() == (
        "4 rows: 2 products created, 0 updated; 3 variants created, 0 updated; "
        "3 listings created, 0 updated."
    )
    snapshot = _snapshot(published_at=False)
    assert snapshot["products"] == [
        ("mug", "Mug", "", "Kestrel", "Home > Kitchen", {}, True),
        (
            "tee",
            "Classic Tee",
            "Soft cotton.",
            "Northwind",
            "Apparel > Tops",
            {"material": "Cotton"},
            True,
        ),
    ]
    assert snapshot["variants"] == [
        ("MUG-1", "mug", GTIN_B, {}, 350, Decimal("8.00"), True),
        ("TEE-M", "tee", None, {"size": "M"}, None, Decimal("19.99"), True),
        ("TEE-S", "tee", GTIN_A, {"size": "S"}, 180, Decimal("19.99"), True),
    ]
    assert snapshot["listings"] == [
        ("MUG-1", "app", "mug", True, Decimal("7.50"), "USD", "", "", None, None),
        (
            "TEE-S",
            "marketplace",
            "tee",
            False,
            Decimal("21.50"),
            "EUR",
            "Tee (marketplace)",
            "",
            datetime(2030, 1, 1, tzinfo=UTC),
            None,
        ),
        ("TEE-S", "web", "tee", True, Decimal("19.99"), "EUR", "", "", None, None),
    ]
    published = ChannelListing.objects.filter(published_at__isnull=False).order_by("variant__sku")
    assert list(published.values_list("variant__sku", "channel__code")) == [
        ("MUG-1", "app"),
        ("TEE-S", "web"),
    ]
    kitchen = Category.objects.get(path="Home > Kitchen")
    assert kitchen.parent == Category.objects.get(path="Home", parent=None)
    assert sorted(Brand.objects.values_list("name", flat=True)) == ["Kestrel", "Northwind"]
    events = list(OutboxEvent.objects.order_by("type", "subject_id").values_list("type", "payload"))
    assert [(t, p.get("sku"), p.get("channel")) for t, p in events] == [
        ("catalog.imported", None, None),
        ("catalog.listing.published", "MUG-1", "app"),
        ("catalog.listing.published", "TEE-S", "web"),
    ]
    assert events[0][1] == {"rows": 4, "products": 2, "variants": 3, "listings": 3}


def test_reimporting_the_same_file_is_idempotent():
    catalog_import_csv(stream=HAPPY)
    before = _snapshot()
    events = OutboxEvent.objects.count()

    result = catalog_import_csv(stream=HAPPY.encode("utf-8"))

    assert (result.products_created, result.variants_created, result.listings_created) == (0, 0, 0)
    assert (result.products_updated, result.variants_updated, result.listings_updated) == (2, 3, 3)
    assert _snapshot() == before
    assert OutboxEvent.objects.count() == events + 1
    assert OutboxEvent.objects.order_by("-id").values_list("type", flat=True)[0] == (
        "catalog.imported"
    )
    assert (Brand.objects.count(), Category.objects.count()) == (2, 4)


def test_import_updates_existing_rows_and_records_publication():
    catalog_import_csv(stream=HAPPY)
    rows = [dict(r) for r in HAPPY_ROWS]
    rows[0].update(published="no", price="18")  # TEE-S on web: unpublished, new price
    rows[1].update(published="yes")  # TEE-S on marketplace: published
    rows[2].update(title="Classic Tee", base_price="19.99", weight_grams="170")

    result = catalog_import_csv(stream=_csv(rows))

    assert (result.listings_created, result.listings_updated) == (0, 3)
    assert list(
        ChannelListing.objects.filter(variant__sku="TEE-S")
        .order_by("channel__code")
        .values_list("channel__code", "is_published", "price")
    ) == [("marketplace", True, Decimal("21.50")), ("web", False, Decimal("18.00"))]
    assert ChannelListing.objects.get(channel__code="marketplace").published_at is not None
    assert Variant.objects.get(sku="TEE-M").weight_grams == 170
    transitions = list(
        OutboxEvent.objects.filter(type__startswith="catalog.listing.")
        .order_by("id")
        .values_list("type", "subject_id", "payload__channel")
    )
    assert transitions[2:] == [
        ("catalog.listing.unpublished", "TEE-S", "web"),
        ("catalog.listing.published", "TEE-S", "marketplace"),
    ]


def test_import_keeps_the_first_publication_time_of_a_listing_still_published():
    catalog_import_csv(stream=HAPPY)
    first = ChannelListing.objects.get(channel__code="web").published_at
    catalog_import_csv(stream=HAPPY)
    assert ChannelListing.objects.get(channel__code="web").published_at == first


def test_import_leaves_other_listings_and_variants_alone():
    other = ListingFactory(variant__sku="OTHER-1", channel=Channel.objects.get(code="web"))
    catalog_import_csv(stream=HAPPY)
    other.refresh_from_db()
    assert (other.is_published, other.price) == (True, Decimal("19.99"))
    assert Variant.objects.count() == 4


def test_import_of_a_product_that_exists_adds_variants_to_it():
    product = ProductFactory(handle="tee", title="Old title")
    VariantFactory(product=product, sku="TEE-S", gtin=GTIN_A)
    result = catalog_import_csv(stream=HAPPY)
    assert (result.products_created, result.products_updated) == (1, 1)
    assert (result.variants_created, result.variants_updated) == (2, 1)
    product.refresh_from_db()
    assert product.title == "Classic Tee"
    assert product.variants.count() == 2


def test_import_reads_bytes_with_a_bom_and_strips_cells():
    text = HAPPY.replace("tee-s,", " tee-s ,")
    result = catalog_import_csv(stream=b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert result.variants_created == 3
    assert Variant.objects.filter(sku="TEE-S").exists()


def test_import_reads_text_with_a_bom():
    result = catalog_import_csv(stream="\ufeff" + HAPPY)
    assert result.products_created == 2


def test_import_with_a_subset_of_the_columns():
    columns = ["handle", "title", "brand", "category", "sku", "base_price"]
    text = _csv([{**{c: _tee()[c] for c in columns[:4]}, "sku": "T-1", "base_price": "5"}], columns)
    result = catalog_import_csv(stream=text)
    assert (result.products_created, result.variants_created, result.listings_created) == (1, 1, 0)


def test_import_with_the_default_price_of_a_channel_without_currency(settings):
    settings.OMNI_DEFAULT_CURRENCY = "SEK"
    Channel.objects.create(code="kiosk", name="Kiosk", kind="store_pos", currency="")
    catalog_import_csv(stream=_csv([_tee(sku="T-1", channel="kiosk", published="yes")]))
    listing = ChannelListing.objects.get()
    assert (listing.price, listing.currency) == (Decimal("19.99"), "SEK")


# --- Import: refused files --------------------------------------------------------------------


def test_a_file_with_bad_rows_is_refused_whole_with_every_error():
    mug = ProductFactory(handle="mug")
    VariantFactory(product=mug, sku="MUG-1", gtin=GTIN_B)
    good = {"gtin": GTIN_A, "options": "size=S"}
    rows = [
        _tee(sku="TEE-S", channel="web", published="yes", **good),  # 2: fine
        _tee(sku="TEE-M", gtin="4006381333932"),  # 3: check digit
        _tee(sku="TEE-L", channel="nowhere"),  # 4: unknown channel
        _tee(sku="TEE-S", channel="email", **good),  # 5: messaging channel
        _tee(sku="TEE-S", channel="app", price="12,50", **good),  # 6: bad price
        _tee(sku="TEE-XL", title=""),  # 7: a required cell is empty
        _tee(sku="TEE-S", channel="web", **good),  # 8: same SKU and channel as row 2
        _tee(sku="TEE-XS", brand="Kestrel"),  # 9: differs from row 2 for the product
        _tee(sku="mug-1"),  # 10: SKU of another product
        _tee(sku="TEE-XXL", gtin=GTIN_B),  # 11: GTIN of another SKU
        _tee(sku="TEE-3XL", base_price="-3"),  # 12: negative base price
        _tee(sku="TEE-4XL", options="size"),  # 13: malformed options
        _tee(sku="TEE-5XL", channel="web", published="maybe"),  # 14: not yes/no
        _tee(sku="TEE-S", options="size=M", **{"gtin": GTIN_A}),  # 15: differs for the SKU
        _tee(sku="TEE-6XL", gtin=GTIN_A),  # 16: GTIN also given to TEE-S
    ]
    before = _counts()

    errors = _refused(_csv(rows))

    assert errors == [
        (3, "gtin", "GTIN 4006381333932 has a wrong check digit (expected 1)."),
        (4, "channel", "Unknown channel 'nowhere'."),
        (5, "channel", "email is a messaging channel, not a sales channel."),
        (6, "price", "'12,50' is not a price >= 0."),
        (7, "title", "Required."),
        (8, "channel", "SKU TEE-S on web is listed twice (also row 2)."),
        (9, "brand", "Differs from row 2 for the same product 'tee'."),
        (10, "sku", "SKU MUG-1 belongs to product 'mug', not 'tee'."),
        (11, "gtin", "GTIN 5901234123457 already belongs to SKU MUG-1."),
        (12, "base_price", "'-3' is not a price >= 0."),
        (13, "options", "'size' is not key=value; write key=value pairs separated by ';'."),
        (14, "published", "'maybe' is not yes/no."),
        (15, "options", "Differs from row 2 for the same SKU TEE-S."),
        (16, "gtin", "GTIN 4006381333931 is also given to SKU TEE-S."),
    ]
    assert _counts() == before


def test_a_file_missing_a_required_column_is_refused():
    columns = [c for c in COLUMNS if c not in ("base_price", "brand")]
    text = _csv([{c: v for c, v in _tee(sku="T-1").items() if c in columns}], columns)
    assert _refused(text) == [(1, "brand, base_price", "Required column missing from the header.")]
    assert _counts()["products"] == 0


def test_a_file_with_an_unknown_or_repeated_column_is_refused():
    assert _refused("handle,title,brand,category,sku,base_price,colour\n") == [
        (1, "colour", f"Unknown column (expected some of: {', '.join(COLUMNS)}).")
    ]
    assert _refused("handle,title,brand,category,sku,base_price,sku\nh,T,B,C,S-1,1,S-2\n") == [
        (1, "sku", "Column given twice.")
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", (1, "-", "The file is empty: expected a header row.")),
        (",".join(COLUMNS) + "\n", (2, "-", "The file has a header but no rows.")),
        (b"handle,title\n\xff\xfe\n", (1, "-", "The file is not UTF-8 text.")),
        (
            "handle,title\n" + "x" * 200_000 + ",T\n",
            (2, "-", "The file is not a readable CSV: field larger than field limit (131072)."),
        ),
    ],
)
def test_an_empty_or_unreadable_file_is_refused(text, error):
    assert _refused(text) == [error]


@pytest.mark.parametrize(
    ("cells", "error"),
    [
        (
            {"sku": "tee/1"},
            (
                "sku",
                "SKU 'TEE/1' is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit.",
            ),
        ),
        ({"handle": "tee shirt"}, ("handle", "Use letters, digits, '-' and '_' only.")),
        ({"handle": "thé"}, ("handle", "Use letters, digits, '-' and '_' only.")),
        ({"handle": "h" * 121}, ("handle", "At most 120 characters.")),
        ({"title": "T" * 256}, ("title", "At most 255 characters.")),
        ({"title": "T\0"}, ("title", "Contains a NUL character.")),
        ({"brand": "B" * 121}, ("brand", "At most 120 characters.")),
        ({"category": "Home > " + "C" * 121}, ("category", "At most 120 characters per level.")),
        ({"category": " > "}, ("category", "Required.")),
        ({"weight_grams": "1.5"}, ("weight_grams", "'1.5' is not a whole number of grams.")),
        ({"weight_grams": "²"}, ("weight_grams", "'²' is not a whole number of grams.")),
        (
            {"weight_grams": "99999999999"},
            ("weight_grams", "'99999999999' is not a whole number of grams."),
        ),
        ({"base_price": "NaN"}, ("base_price", "'NaN' is not a price >= 0.")),
        ({"base_price": "1.999"}, ("base_price", "'1.999' has more than 2 decimal places.")),
        (
            {"base_price": "12345678901"},
            ("base_price", "'12345678901' is too large (at most 10 digits before the point)."),
        ),
        (
            {"price": "5", "currency": "EUR"},
            ("channel", "Listing columns are filled but no channel is given."),
        ),
        (
            {"channel": "web", "currency": "EURO"},
            ("currency", "Currency 'EURO' must be a three-letter ISO 4217 code."),
        ),
        ({"channel": "web", "price": "-1"}, ("price", "'-1' is not a price >= 0.")),
        (
            {"channel": "web", "channel_title": "T" * 256},
            ("channel_title", "At most 255 characters."),
        ),
        (
            {"channel": "web", "available_from": "tomorrow"},
            ("available_from", "'tomorrow' is not a date-time (ISO 8601)."),
        ),
        (
            {
                "channel": "web",
                "available_from": "2030-01-02T00:00:00Z",
                "available_until": "2030-01-01T00:00:00Z",
            },
            ("available_until", "Must be after available_from."),
        ),
    ],
)
def test_a_bad_cell_is_refused_with_its_row_and_column(cells, error):
    assert _refused(_csv([{**_tee(sku="T-1"), **cells}])) == [(2, *error)]
    assert _counts()["products"] == 0


def test_decimal_prices_with_trailing_zeros_are_accepted():
    catalog_import_csv(
        stream=_csv([_tee(sku="T-1", base_price="1.500", channel="web", price="2.0")])
    )
    assert ChannelListing.objects.values_list("variant__base_price", "price").get() == (
        Decimal("1.50"),
        Decimal("2.00"),
    )


def test_a_row_with_more_cells_than_the_header_is_refused():
    text = "handle,title,brand,category,sku,base_price\nh,T,B,C,S-1,1,extra\n"
    assert _refused(text) == [(2, "-", "Row has more cells than the header.")]


def test_a_sku_given_to_two_products_in_the_file_is_refused():
    rows = [_tee(sku="T-1"), {**_tee(sku="t-1"), "handle": "other", "title": "Other"}]
    assert _refused(_csv(rows)) == [(3, "handle", "Differs from row 2 for the same SKU T-1.")]


def test_errors_are_capped():
    rows = [_tee(sku=f"T-{n}", gtin="123") for n in range(MAX_ERRORS + 10)]
    assert len(_refused(_csv(rows))) == MAX_ERRORS


# --- Export and round trip --------------------------------------------------------------------


def test_export_of_a_small_catalog_is_exact():
    catalog_import_csv(stream=HAPPY)
    assert _export() == EXPORT_OF_HAPPY


def test_export_of_an_empty_catalog_is_the_header():
    assert list(catalog_export_rows()) == [COLUMNS]


def _service_catalog():
    web, app = Channel.objects.get(code="web"), Channel.objects.get(code="app")
    product = product_create(
        title="Rain Jacket",
        brand=BrandFactory(name="Marlow"),
        category=category_ensure_path(path="Apparel > Outerwear"),
        description="Line one.\nLine two, with a comma.",
        attributes={"material": "Nylon", "care": "wash cold; hang dry", "fit=": "regular"},
        variants=[
            {"sku": "RJ-M", "base_price": "120", "gtin": GTIN_C, "option_values": {"size": "M"}},
            {"sku": "RJ-L", "base_price": "125.5", "weight_grams": 900},
        ],
    )
    variants = {v.sku: v for v in product.variants.all()}
    listing_upsert(variant=variants["RJ-M"], channel=web, is_published=True, title="Jacket")
    listing_upsert(
        variant=variants["RJ-M"],
        channel=app,
        price="99.90",
        currency="USD",
        available_from=datetime(2030, 1, 1, 8, 30, tzinfo=UTC),
        available_until=datetime(2030, 2, 1, tzinfo=UTC),
        description='Say "hi"',
    )
    product_create(
        title="Plain",
        brand=BrandFactory(name="Marlow"),
        category=category_ensure_path(path="Home"),
        variants=[{"sku": "PLAIN-1", "base_price": "1"}],
    )


def test_export_then_import_changes_nothing():
    _service_catalog()
    exported = _export()
    before = _snapshot()

    result = catalog_import_csv(stream=exported)

    assert (result.products_created, result.variants_created, result.listings_created) == (0, 0, 0)
    assert (result.products_updated, result.variants_updated, result.listings_updated) == (2, 3, 2)
    assert _snapshot() == before
    assert _export() == exported


def test_export_imported_into_an_empty_database_rebuilds_the_catalog():
    _service_catalog()
    exported = _export()
    before = _snapshot(published_at=False)
    ChannelListing.objects.all().delete()
    Variant.objects.all().delete()
    Product.objects.all().delete()
    Brand.objects.all().delete()
    for category in Category.objects.order_by("-path"):
        category.delete()

    result = catalog_import_csv(stream=exported)

    assert (result.products_created, result.variants_created, result.listings_created) == (2, 3, 2)
    assert _snapshot(published_at=False) == before
    assert _export() == exported


# --- Management commands ----------------------------------------------------------------------


def test_catalog_import_command(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(HAPPY, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    call_command("catalog_import", str(path), stdout=out, stderr=err)
    assert out.getvalue() == (
        "Imported 4 rows: 2 products created, 0 updated; 3 variants created, 0 updated; "
        "3 listings created, 0 updated.\n"
    )
    assert (Product.objects.count(), Variant.objects.count(), ChannelListing.objects.count()) == (
        2,
        3,
        3,
    )


def test_catalog_import_command_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(HAPPY))
    out = io.StringIO()
    call_command("catalog_import", "-", stdout=out, stderr=io.StringIO())
    assert out.getvalue().startswith("Imported 4 rows: 2 products created")
    assert Variant.objects.count() == 3


def test_catalog_import_command_with_a_bad_file_writes_nothing(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(_csv([_tee(sku="T-1", channel="sms"), _tee(sku="T-2", base_price="x")]))
    before = _counts()
    err = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("catalog_import", str(path), stdout=io.StringIO(), stderr=err)
    assert str(info.value) == "The file was refused: 2 error(s); nothing was imported."
    assert err.getvalue().splitlines()[-2:] == [
        "row 2, column channel: sms is a messaging channel, not a sales channel.",
        "row 3, column base_price: 'x' is not a price >= 0.",
    ]
    assert _counts() == before


def test_catalog_import_command_with_a_missing_file(tmp_path):
    with pytest.raises(CommandError) as info:
        call_command("catalog_import", str(tmp_path / "nope.csv"), stderr=io.StringIO())
    assert str(info.value) == f"No such file: {tmp_path / 'nope.csv'}"


def test_catalog_import_command_with_a_file_not_in_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HAPPY.replace("Classic", "Clássic").encode("latin-1"))
    with pytest.raises(CommandError) as info:
        call_command("catalog_import", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert str(info.value) == "The file was refused: 1 error(s); nothing was imported."
    assert Product.objects.count() == 0


def test_catalog_export_command_to_a_file(tmp_path):
    catalog_import_csv(stream=HAPPY)
    path = tmp_path / "out.csv"
    err = io.StringIO()
    call_command("catalog_export", "--output", str(path), stderr=err)
    assert path.read_bytes().decode("utf-8") == EXPORT_OF_HAPPY
    assert err.getvalue() == "\rExported 4 rows.\n"


def test_catalog_export_command_to_stdout():
    catalog_import_csv(stream=HAPPY)
    out, err = io.StringIO(), io.StringIO()
    call_command("catalog_export", stdout=out, stderr=err)
    assert out.getvalue() == EXPORT_OF_HAPPY
    assert err.getvalue() == "\rExported 4 rows.\n"


def test_catalog_export_command_of_an_empty_catalog(tmp_path):
    path = tmp_path / "out.csv"
    err = io.StringIO()
    call_command("catalog_export", "-o", str(path), stderr=err)
    assert path.read_bytes().decode("utf-8") == ",".join(COLUMNS) + "\r\n"
    assert err.getvalue() == "\rExported 0 rows.\n"


def test_export_command_output_imports_back(tmp_path):
    _service_catalog()
    before = _snapshot()
    path = tmp_path / "out.csv"
    call_command("catalog_export", "-o", str(path), stderr=io.StringIO())
    call_command("catalog_import", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert _snapshot() == before
