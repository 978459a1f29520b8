"""The catalog API as a contract: products, variants by SKU, listings, the changes feed, feeds."""

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework.response import Response

from catalog.api import views
from catalog.models import (
    Brand,
    Category,
    ChannelFeed,
    ChannelListing,
    FeedFormat,
    Product,
    Variant,
)
from catalog.services import category_ensure_path
from omni.models import Channel, OutboxEvent
from tests.factories import (
    BrandFactory,
    ListingFactory,
    ProductFactory,
    VariantFactory,
    make_gtin,
)

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/v1/catalog/products/"
VARIANTS = "/api/v1/catalog/variants/"
CHANGES = "/api/v1/catalog/variants/changes/"
CHANNELS = "/api/v1/channels/"


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert body["message"]
    return body


def snapshot() -> dict:
    """Every catalog row (and the outbox), to prove that a refused call changed nothing."""
    return {
        "products": list(Product.objects.order_by("pk").values()),
        "variants": list(Variant.objects.order_by("pk").values()),
        "listings": list(ChannelListing.objects.order_by("pk").values()),
        "brands": list(Brand.objects.order_by("pk").values()),
        "categories": list(Category.objects.order_by("pk").values()),
        "feeds": list(ChannelFeed.objects.order_by("pk").values()),
        "events": OutboxEvent.objects.count(),
    }


def web() -> Channel:
    return Channel.objects.get(code="web")


@pytest.fixture
def tee(db):
    """A product with two variants, M listed (published) on web and app, L on nothing."""
    product = ProductFactory(
        handle="tee",
        title="Tee",
        description="Soft.",
        brand=BrandFactory(name="Acme"),
        category=category_ensure_path(path="Apparel > Tops"),
        attributes={"material": "Cotton"},
    )
    medium = VariantFactory(
        product=product,
        sku="TEE-M",
        gtin=make_gtin(1),
        option_values={"size": "M"},
        weight_grams=200,
        base_price=Decimal("19.99"),
    )
    VariantFactory(
        product=product,
        sku="TEE-L",
        gtin=None,
        option_values={"size": "L"},
        base_price=Decimal("21.00"),
    )
    ListingFactory(variant=medium, channel=web(), price=Decimal("18.50"), title="Web tee")
    ListingFactory(
        variant=medium,
        channel=Channel.objects.get(code="app"),
        price=Decimal("19.00"),
        is_published=False,
    )
    return product


def listing_json(listing: ChannelListing, product_title: str) -> dict:
    return {
        "channel": listing.channel.code,
        "is_published": listing.is_published,
        "price": str(listing.price),
        "currency": listing.currency,
        "title": listing.title or product_title,
        "available_from": iso(listing.available_from) if listing.available_from else None,
        "available_until": iso(listing.available_until) if listing.available_until else None,
        "updated_at": iso(listing.updated_at),
    }


def product_json(product: Product) -> dict:
    product.refresh_from_db()
    return {
        "handle": product.handle,
        "title": product.title,
        "description": product.description,
        "brand": product.brand.name,
        "category": product.category.path,
        "attributes": product.attributes,
        "is_active": product.is_active,
        "created_at": iso(product.created_at),
        "updated_at": iso(product.updated_at),
        "variants": [
            {
                "sku": v.sku,
                "gtin": v.gtin,
                "option_values": v.option_values,
                "weight_grams": v.weight_grams,
                "base_price": str(v.base_price),
                "is_active": v.is_active,
                "listings": [
                    listing_json(listing, product.title)
                    for listing in v.listings.order_by("channel__code")
                ],
            }
            for v in product.variants.order_by("sku")
        ],
    }


def variant_json(variant: Variant) -> dict:
    variant.refresh_from_db()
    product = variant.product
    return {
        "sku": variant.sku,
        "gtin": variant.gtin,
        "option_values": variant.option_values,
        "weight_grams": variant.weight_grams,
        "base_price": str(variant.base_price),
        "is_active": variant.is_active,
        "updated_at": iso(variant.updated_at),
        "product": {
            "handle": product.handle,
            "title": product.title,
            "brand": product.brand.name,
            "category": product.category.path,
        },
        "listings": [
            listing_json(listing, product.title)
            for listing in variant.listings.order_by("channel__code")
        ],
    }


def handles(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [p["handle"] for p in response.json()["results"]]


def skus(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [v["sku"] for v in response.json()["results"]]


# --- Products: read -------------------------------------------------------------------------


def test_product_list_shape(reader, tee):
    ProductFactory(handle="another")

    response = reader.get(PRODUCTS)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert body["next"] is None and body["previous"] is None
    assert [p["handle"] for p in body["results"]] == ["another", "tee"]
    assert body["results"][1] == product_json(tee)
    assert [v["sku"] for v in body["results"][1]["variants"]] == ["TEE-L", "TEE-M"]
    assert [entry["channel"] for entry in body["results"][1]["variants"][1]["listings"]] == [
        "app",
        "web",
    ]


def test_product_retrieve_by_handle(reader, tee):
    response = reader.get(f"{PRODUCTS}tee/")

    assert response.status_code == 200
    assert response.json() == product_json(tee)


@pytest.mark.parametrize(
    "url", [f"{PRODUCTS}tee", f"{VARIANTS}tee-m", CHANGES.rstrip("/"), "/api/v1/catalog/feeds/web"]
)
def test_paths_without_trailing_slash_are_served(reader, tee, url):
    response = reader.get(url)

    assert response.status_code == 200, response.content


def test_writes_without_trailing_slash_are_served(writer, tee):
    created = writer.post(PRODUCTS.rstrip("/"), {"title": "Cap", "brand": "B", "category": "C"})
    changed = writer.patch(f"{PRODUCTS}cap", {"title": "Blue cap"})
    listed = writer.put(f"{VARIANTS}TEE-L/listings/web", {"price": "9.00"})

    assert (created.status_code, changed.status_code, listed.status_code) == (201, 200, 200)
    assert Product.objects.get(handle="cap").title == "Blue cap"
    assert ChannelListing.objects.get(variant__sku="TEE-L").price == Decimal("9.00")


def test_product_retrieve_unknown_is_404(reader):
    assert_error(reader.get(f"{PRODUCTS}nope/"), 404, "not_found")


def _catalog(n_products: int):
    for i in range(n_products):
        product = ProductFactory(handle=f"p-{i:03d}")
        for size in ("S", "M"):
            variant = VariantFactory(product=product, sku=f"P{i:03d}-{size}")
            ListingFactory(variant=variant, channel=web())
            ListingFactory(variant=variant, channel=Channel.objects.get(code="app"))


@pytest.mark.parametrize("n_products", [2, 12])
def test_product_list_query_count_does_not_grow(reader, n_products, django_assert_num_queries):
    _catalog(n_products)
    reader.get(CHANNELS)  # the token's first use records last_used_at

    # token, count, products (brand, category joined), variants, listings (channel joined)
    with django_assert_num_queries(5):
        response = reader.get(PRODUCTS, {"limit": 500, "channel": "web", "published": "true"})

    assert len(handles(response)) == n_products
    assert all(len(p["variants"][0]["listings"]) == 2 for p in response.json()["results"])


@pytest.mark.parametrize("n_products", [2, 12])
def test_variant_list_query_count_does_not_grow(reader, n_products, django_assert_num_queries):
    _catalog(n_products)
    reader.get(CHANNELS)

    # token, count, variants (product, brand, category joined), listings (channel joined)
    with django_assert_num_queries(4):
        response = reader.get(VARIANTS, {"limit": 500, "channel": "app", "is_active": "true"})

    assert len(skus(response)) == 2 * n_products


@pytest.mark.parametrize("n_products", [2, 12])
def test_changes_query_count_does_not_grow(reader, n_products, django_assert_num_queries):
    _catalog(n_products)
    reader.get(CHANNELS)

    # token, variants (joined), listings; a cursor page has no count
    with django_assert_num_queries(3):
        response = reader.get(CHANGES, {"limit": 500})

    assert len(skus(response)) == 2 * n_products


# --- Products: filters ----------------------------------------------------------------------


@pytest.fixture
def filter_catalog(db):
    """Products spread over channels, publication, brands and categories."""
    apparel = category_ensure_path(path="Apparel")
    tops = category_ensure_path(path="Apparel > Tops")
    tees = category_ensure_path(path="Apparel > Tops > Tees")
    apparel_kids = category_ensure_path(path="Apparel Kids")
    home = category_ensure_path(path="Home")
    acme, zeta = BrandFactory(name="Acme"), BrandFactory(name="Zeta")
    spec = [
        # handle, title, category, brand, sku, listings {channel: published}
        ("coat", "Winter coat", apparel, acme, "COAT-1", {"web": True}),
        ("shirt", "Oxford shirt", tops, zeta, "SHIRT-1", {"web": False, "app": True}),
        ("tee", "Plain tee", tees, acme, "TEE-1", {"app": False}),
        ("kids-tee", "Kids tee", apparel_kids, zeta, "KTEE-1", {}),
        ("mug", "Mug", home, acme, "MUG-1", {"web": True}),
    ]
    for handle, title, category, brand, sku, listings in spec:
        product = ProductFactory(handle=handle, title=title, category=category, brand=brand)
        variant = VariantFactory(product=product, sku=sku)
        for code, published in listings.items():
            ListingFactory(
                variant=variant, channel=Channel.objects.get(code=code), is_published=published
            )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["coat", "kids-tee", "mug", "shirt", "tee"]),
        ({"channel": "web"}, ["coat", "mug", "shirt"]),
        ({"channel": "app"}, ["shirt", "tee"]),
        ({"channel": "store"}, []),
        ({"channel": "web", "published": "true"}, ["coat", "mug"]),
        ({"channel": "web", "published": "false"}, ["shirt"]),
        ({"channel": "app", "published": "true"}, ["shirt"]),
        ({"published": "true"}, ["coat", "mug", "shirt"]),
        ({"published": "false"}, ["kids-tee", "tee"]),
        ({"category": "Apparel"}, ["coat", "shirt", "tee"]),
        ({"category": "Apparel > Tops"}, ["shirt", "tee"]),
        ({"category": "Apparel>Tops>Tees"}, ["tee"]),
        ({"category": "Apparel Kids"}, ["kids-tee"]),
        ({"category": "Appar"}, []),
        ({"brand": "Acme"}, ["coat", "mug", "tee"]),
        ({"brand": "Acme", "category": "Apparel"}, ["coat", "tee"]),
        ({"q": "tee"}, ["kids-tee", "tee"]),
        ({"q": "OXFORD"}, ["shirt"]),
        ({"q": "coat-1"}, ["coat"]),
        ({"q": "oat-1"}, []),
        ({"is_active": "false"}, []),
    ],
)
def test_product_filters(reader, filter_catalog, params, expected):
    assert handles(reader.get(PRODUCTS, params)) == expected


def test_product_filter_changed_since(reader, filter_catalog):
    cutoff = timezone.now() - timedelta(hours=1)
    Product.objects.exclude(handle__in=["mug", "tee"]).update(updated_at=cutoff - timedelta(1))

    response = reader.get(PRODUCTS, {"changed_since": iso(cutoff)})

    assert handles(response) == ["mug", "tee"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"changed_since": "yesterday"}, "changed_since"),
        ({"published": "perhaps"}, "published"),
        ({"is_active": "sometimes"}, "is_active"),
        ({"published": "yes"}, "published"),
    ],
)
def test_product_filter_bad_value_is_400(reader, filter_catalog, params, field):
    body = assert_error(reader.get(PRODUCTS, params), 400, "validation_error")
    assert list(body["details"]) == [field]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"product": "tee"}, ["TEE-1"]),
        ({"channel": "web", "published": "true"}, ["COAT-1", "MUG-1"]),
        ({"published": "false"}, ["KTEE-1", "TEE-1"]),
        ({"category": "Apparel > Tops"}, ["SHIRT-1", "TEE-1"]),
        ({"brand": "Zeta"}, ["KTEE-1", "SHIRT-1"]),
        ({"gtin": "nope"}, []),
    ],
)
def test_variant_filters(reader, filter_catalog, params, expected):
    assert skus(reader.get(VARIANTS, params)) == expected


def test_variant_filter_gtin(reader, tee):
    assert skus(reader.get(VARIANTS, {"gtin": make_gtin(1)})) == ["TEE-M"]


# --- Products: write ------------------------------------------------------------------------

NEW_PRODUCT = {
    "handle": "hoodie",
    "title": "Hoodie",
    "description": "Warm.",
    "brand": "Northwind",
    "category": "Apparel > Outerwear > Hoodies",
    "attributes": {"material": "Fleece"},
    "variants": [
        {
            "sku": "hood-s",
            "gtin": make_gtin(7),
            "option_values": {"size": "S"},
            "weight_grams": 450,
            "base_price": "49.90",
        },
        {"sku": "HOOD-M", "option_values": {"size": "M"}, "base_price": "49.90"},
    ],
}


def test_product_create_with_variants(writer):
    response = writer.post(PRODUCTS, NEW_PRODUCT)

    assert response.status_code == 201, response.content
    product = Product.objects.get(handle="hoodie")
    assert response.json() == product_json(product)
    assert product.brand.name == "Northwind"
    assert product.category.path == "Apparel > Outerwear > Hoodies"
    assert product.category.parent.path == "Apparel > Outerwear"
    assert list(product.variants.order_by("sku").values_list("sku", "gtin", "base_price")) == [
        ("HOOD-M", None, Decimal("49.90")),
        ("HOOD-S", make_gtin(7), Decimal("49.90")),
    ]
    assert sorted(OutboxEvent.objects.values_list("type", "subject_id")) == [
        ("catalog.product.created", str(product.pk)),
        ("catalog.variant.created", "HOOD-M"),
        ("catalog.variant.created", "HOOD-S"),
    ]


def test_product_create_without_handle_slugifies_title(writer):
    response = writer.post(PRODUCTS, {"title": "Rain Jacket", "brand": "B", "category": "C"})

    assert response.status_code == 201, response.content
    assert response.json()["handle"] == "rain-jacket"
    assert response.json()["variants"] == []


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        (
            {**NEW_PRODUCT, "handle": "tee"},
            {"handle": ["Product with this Handle already exists."]},
        ),
        (
            {**NEW_PRODUCT, "variants": [{"sku": "TEE-M", "base_price": "1.00"}]},
            {"sku": ["Variant with this SKU already exists."]},
        ),
        (
            {
                **NEW_PRODUCT,
                "variants": [
                    {"sku": "hood-x", "base_price": "1.00"},
                    {"sku": "HOOD-X", "base_price": "1.00"},
                ],
            },
            {"variants[1].sku": ["Duplicate SKU in the request."]},
        ),
        (
            {**NEW_PRODUCT, "variants": [{"sku": "HOOD-X", "gtin": "4000", "base_price": "1"}]},
            {"gtin": ["GTIN '4000' must be 8, 12, 13 or 14 digits."]},
        ),
        (
            {**NEW_PRODUCT, "variants": [{"sku": "HOOD X!", "base_price": "1.00"}]},
            {
                "sku": [
                    "SKU 'HOOD-X!' is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
                    "starting with a letter or digit."
                ]
            },
        ),
        (
            {**NEW_PRODUCT, "variants": [{"sku": "HOOD-X", "base_price": "-1"}]},
            {
                "variants": {
                    "0": {"base_price": ["Ensure this value is greater than or equal to 0."]}
                }
            },
        ),
        ({**NEW_PRODUCT, "handle": "Not a slug!"}, None),
        ({**NEW_PRODUCT, "category": " > "}, {"category": ["Required."]}),
        ({**NEW_PRODUCT, "brand": ""}, {"brand": ["This field may not be blank."]}),
    ],
)
def test_product_create_bad_input_is_400_and_changes_nothing(writer, tee, payload, details):
    before = snapshot()

    response = writer.post(PRODUCTS, payload)

    body = assert_error(response, 400, "validation_error")
    if details is not None:
        assert body["details"] == details
    assert snapshot() == before


def test_product_patch(writer, tee):
    response = writer.patch(
        f"{PRODUCTS}tee/",
        {"title": "Better tee", "brand": "Globex", "category": "Apparel > Tees"},
    )

    assert response.status_code == 200, response.content
    tee.refresh_from_db()
    assert (tee.title, tee.brand.name, tee.category.path) == (
        "Better tee",
        "Globex",
        "Apparel > Tees",
    )
    assert tee.description == "Soft."
    assert response.json() == product_json(tee)
    event = OutboxEvent.objects.get(type="catalog.product.updated")
    assert event.payload["changed"] == ["brand", "category", "title"]


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        ({"title": ""}, {"title": ["This field may not be blank."]}),
        ({"title": "   "}, {"title": ["This field may not be blank."]}),
        ({"title": "Ok", "category": ">"}, {"category": ["Required."]}),
        ({"title": "Ok", "is_active": "maybe"}, {"is_active": ["Must be a valid boolean."]}),
    ],
)
def test_product_patch_bad_input_is_400_and_changes_nothing(writer, tee, payload, details):
    before = snapshot()

    response = writer.patch(f"{PRODUCTS}tee/", payload)

    body = assert_error(response, 400, "validation_error")
    assert body["details"] == details
    assert snapshot() == before


def test_product_patch_unknown_is_404(writer):
    assert_error(writer.patch(f"{PRODUCTS}nope/", {"title": "X"}), 404, "not_found")


# --- Variants -------------------------------------------------------------------------------


def test_variant_list(reader, tee):
    response = reader.get(VARIANTS)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert body["results"] == [
        variant_json(Variant.objects.get(sku="TEE-L")),
        variant_json(Variant.objects.get(sku="TEE-M")),
    ]


@pytest.mark.parametrize("sku", ["TEE-M", "tee-m", "Tee-M"])
def test_variant_retrieve_by_sku_normalises_input(reader, tee, sku):
    response = reader.get(f"{VARIANTS}{sku}/")

    assert response.status_code == 200, response.content
    assert response.json() == variant_json(Variant.objects.get(sku="TEE-M"))
    assert [entry["channel"] for entry in response.json()["listings"]] == ["app", "web"]
    assert response.json()["listings"][1]["title"] == "Web tee"
    assert response.json()["listings"][0]["title"] == "Tee"


def test_variant_retrieve_without_listings(reader, tee):
    response = reader.get(f"{VARIANTS}TEE-L/")

    assert response.status_code == 200
    assert response.json()["listings"] == []
    assert response.json()["gtin"] is None


def test_variant_retrieve_with_token_is_two_queries(reader, tee, django_assert_max_num_queries):
    reader.get(CHANNELS)  # the token's first use records last_used_at, once per 5 minutes

    with django_assert_max_num_queries(2):
        response = reader.get(f"{VARIANTS}tee-m/")

    assert response.status_code == 200
    assert response.json()["sku"] == "TEE-M"


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "application/json; indent=4", "application/*"]
)
def test_variant_retrieve_sends_what_a_drf_response_would(reader, tee, monkeypatch, accept):
    # The lookup renders its JSON at once instead of through Response: same bytes, same headers.
    Product.objects.filter(handle="tee").update(title='Tee "Classic" \\ é\u2028\u2029\t\x01')
    Variant.objects.filter(sku="TEE-M").update(option_values={"size": "M", "note": 'é\u2028"'})
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    fast = reader.get(f"{VARIANTS}tee-m/", **headers)
    monkeypatch.setattr(views, "rendered_now", lambda view, request, data: Response(data))

    slow = reader.get(f"{VARIANTS}tee-m/", **headers)

    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    assert dict(fast.headers) == dict(slow.headers)
    assert fast.json()["option_values"] == {"size": "M", "note": 'é\u2028"'}


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_variant_retrieve_hot_path_answers_as_drf_does(reader, tee, monkeypatch, accept):
    # The common request (a token, plain JSON, no options) is answered before DRF: same bytes,
    # same headers as DRF's path (taken here by a query parameter the lookup ignores).
    Product.objects.filter(handle="tee").update(title='Tee "Classic" \\ é\u2028\t\x01')
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    drf = reader.get(f"{VARIANTS}tee-m/?via=drf", **headers)

    def no_drf(*args, **kwargs):
        raise AssertionError("the hot path went through DRF")

    monkeypatch.setattr(views.VariantViewSet, "initial", no_drf)
    hot = reader.get(f"{VARIANTS}tee-m/", **headers)

    assert hot.status_code == drf.status_code == 200
    assert hot.content == drf.content
    assert dict(hot.headers) == dict(drf.headers)


def test_variant_retrieve_hot_path_leaves_the_rest_to_drf(reader, tee, api, monkeypatch):
    from omni.models import ApiClient

    # A miss, no token, a revoked token: DRF's path, with its errors.
    assert_error(reader.get(f"{VARIANTS}NOPE-1/"), 404, "not_found")
    assert_error(api.get(f"{VARIANTS}tee-m/"), 401, "not_authenticated")
    ApiClient.objects.filter(pk=reader.api_client.pk).update(is_active=False)
    assert_error(reader.get(f"{VARIANTS}tee-m/"), 401, "authentication_failed")


def test_variant_retrieve_in_another_time_zone(reader, tee):
    updated = Variant.objects.get(sku="TEE-M").updated_at

    with timezone.override("Europe/Paris"):
        response = reader.get(f"{VARIANTS}tee-m/")

    local = updated.astimezone(ZoneInfo("Europe/Paris")).isoformat()
    assert response.json()["updated_at"] == local
    assert local.endswith(("+01:00", "+02:00"))


def test_variant_retrieve_refuses_what_it_cannot_render(reader, tee):
    assert_error(reader.get(f"{VARIANTS}tee-m/", HTTP_ACCEPT="text/csv"), 406, "not_acceptable")


def test_variant_retrieve_unknown_is_404(reader, tee):
    body = assert_error(reader.get(f"{VARIANTS}NOPE-1/"), 404, "not_found")
    assert body["message"] == "No variant with SKU NOPE-1."


def test_variant_create(writer, tee):
    response = writer.post(
        VARIANTS,
        {
            "product": "tee",
            "sku": " tee xl ",
            "gtin": make_gtin(9),
            "option_values": {"size": "XL"},
            "base_price": "22.50",
        },
    )

    assert response.status_code == 201, response.content
    variant = Variant.objects.get(sku="TEE-XL")
    assert variant.product == tee
    assert variant.base_price == Decimal("22.50")
    assert response.json() == variant_json(variant)
    assert (
        OutboxEvent.objects.filter(type="catalog.variant.created", subject_id="TEE-XL").count() == 1
    )


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        (
            {"product": "nope", "sku": "NOPE-1", "base_price": "1.00"},
            {"product": ["No product with handle 'nope'."]},
        ),
        (
            {"product": "tee", "sku": "tee-m", "base_price": "1.00"},
            {"sku": ["Variant with this SKU already exists."]},
        ),
        (
            {"product": "tee", "sku": "TEE-XL", "gtin": make_gtin(1), "base_price": "1.00"},
            None,
        ),
        ({"product": "tee", "sku": "TEE-XL"}, {"base_price": ["This field is required."]}),
        (
            {"product": "tee", "sku": "TEE-XL", "base_price": "1.00", "weight_grams": -5},
            {"weight_grams": ["Ensure this value is greater than or equal to 0."]},
        ),
        ({"sku": "TEE-XL", "base_price": "1.00"}, {"product": ["This field is required."]}),
    ],
)
def test_variant_create_bad_input_is_400_and_changes_nothing(writer, tee, payload, details):
    before = snapshot()

    response = writer.post(VARIANTS, payload)

    body = assert_error(response, 400, "validation_error")
    if details is not None:
        assert body["details"] == details
    assert snapshot() == before


def test_variant_patch(writer, tee):
    response = writer.patch(
        f"{VARIANTS}tee-m/", {"base_price": "17.00", "weight_grams": 210, "gtin": ""}
    )

    assert response.status_code == 200, response.content
    variant = Variant.objects.get(sku="TEE-M")
    assert (variant.base_price, variant.weight_grams, variant.gtin) == (Decimal("17.00"), 210, None)
    assert response.json() == variant_json(variant)


def test_variant_patch_same_sku_is_accepted(writer, tee):
    response = writer.patch(f"{VARIANTS}TEE-M/", {"sku": "tee-m", "base_price": "18.00"})

    assert response.status_code == 200, response.content
    assert Variant.objects.get(sku="TEE-M").base_price == Decimal("18.00")


def test_variant_patch_sku_change_is_refused(writer, tee):
    before = snapshot()

    response = writer.patch(f"{VARIANTS}TEE-M/", {"sku": "TEE-MEDIUM", "base_price": "1.00"})

    body = assert_error(response, 400, "validation_error")
    assert body["details"] == {"sku": ["Read only."]}
    assert snapshot() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"base_price": "-1"}, "base_price"),
        ({"gtin": "4000000000000"}, "gtin"),
        ({"weight_grams": "heavy"}, "weight_grams"),
    ],
)
def test_variant_patch_bad_input_is_400_and_changes_nothing(writer, tee, payload, field):
    before = snapshot()

    body = assert_error(writer.patch(f"{VARIANTS}TEE-M/", payload), 400, "validation_error")

    assert list(body["details"]) == [field]
    assert snapshot() == before


def test_variant_patch_unknown_is_404(writer):
    assert_error(writer.patch(f"{VARIANTS}NOPE/", {"base_price": "1"}), 404, "not_found")


# --- Listings -------------------------------------------------------------------------------


def test_listing_put_creates_at_base_price_in_channel_currency(writer, tee):
    store = Channel.objects.get(code="store")

    response = writer.put(f"{VARIANTS}tee-l/listings/store/", {"is_published": True})

    assert response.status_code == 200, response.content
    listing = ChannelListing.objects.get(variant__sku="TEE-L", channel=store)
    assert (listing.price, listing.currency, listing.is_published) == (
        Decimal("21.00"),
        "EUR",
        True,
    )
    assert listing.product_id == tee.pk
    assert listing.published_at is not None
    assert response.json() == listing_json(listing, "Tee")
    assert list(
        OutboxEvent.objects.filter(subject_id="TEE-L").order_by("id").values_list("type", flat=True)
    ) == ["catalog.listing.created", "catalog.listing.published"]


def test_listing_put_updates_only_given_fields(writer, tee):
    response = writer.put(f"{VARIANTS}TEE-M/listings/web/", {"price": "15.00", "currency": "usd"})

    assert response.status_code == 200, response.content
    listing = ChannelListing.objects.get(variant__sku="TEE-M", channel__code="web")
    assert (listing.price, listing.currency, listing.title, listing.is_published) == (
        Decimal("15.00"),
        "USD",
        "Web tee",
        True,
    )
    assert ChannelListing.objects.filter(variant__sku="TEE-M").count() == 2
    assert response.json() == listing_json(listing, "Tee")
    event = OutboxEvent.objects.get(type="catalog.listing.price_changed")
    assert event.payload["old_price"] == "18.50"


def test_listing_put_on_messaging_channel_is_refused(writer, tee):
    before = snapshot()

    response = writer.put(f"{VARIANTS}TEE-M/listings/email/", {"price": "1.00"})

    body = assert_error(response, 400, "not_a_sales_channel")
    assert body["details"] == {"channel": ["email is not a sales channel."]}
    assert snapshot() == before


def test_listing_put_on_inactive_channel_is_refused(writer, tee):
    Channel.objects.filter(code="store").update(is_active=False)
    before = snapshot()

    response = writer.put(f"{VARIANTS}TEE-M/listings/store/", {"price": "1.00"})

    assert_error(response, 400, "channel_inactive")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"{VARIANTS}TEE-M/listings/nowhere/", "No Channel matches the given query."),
        (f"{VARIANTS}NOPE/listings/web/", "No Variant matches the given query."),
    ],
)
def test_listing_put_unknown_is_404(writer, tee, url, message):
    before = snapshot()

    body = assert_error(writer.put(url, {"price": "1.00"}), 404, "not_found")

    assert body["message"] == message
    assert snapshot() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"price": "-1.00"}, "price"),
        ({"price": "cheap"}, "price"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "E1"}, "currency"),
        ({"available_from": "soon"}, "available_from"),
        (
            {"available_from": "2030-01-02T00:00:00Z", "available_until": "2030-01-01T00:00:00Z"},
            "available_until",
        ),
    ],
)
def test_listing_put_bad_input_is_400_and_changes_nothing(writer, tee, payload, field):
    before = snapshot()

    body = assert_error(
        writer.put(f"{VARIANTS}TEE-M/listings/web/", payload), 400, "validation_error"
    )

    assert list(body["details"]) == [field]
    assert snapshot() == before


# --- Changes feed (cursor pagination) -------------------------------------------------------


def _follow(api, url: str, params: dict) -> list[list[dict]]:
    pages = []
    response = api.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"next", "previous", "results"}
        pages.append(body["results"])
        if body["next"] is None:
            return pages
        response = api.get(body["next"])


def test_changes_feed_returns_every_change_once_in_order(reader):
    product = ProductFactory()
    variants = [VariantFactory(product=product, sku=f"CHG-{i:02d}") for i in range(11)]
    base = timezone.now() - timedelta(hours=2)
    # Ties on updated_at (set-based writes stamp many rows alike) are broken by id.
    stamps = [base + timedelta(seconds=i // 3) for i in range(11)]
    for variant, stamp in zip(reversed(variants), stamps, strict=True):
        Variant.objects.filter(pk=variant.pk).update(updated_at=stamp)
    VariantFactory(sku="OLD-1")
    Variant.objects.filter(sku="OLD-1").update(updated_at=base - timedelta(seconds=1))

    pages = _follow(reader, CHANGES, {"since": iso(base), "limit": 3})

    assert [len(page) for page in pages] == [3, 3, 3, 2]
    seen = [v["sku"] for page in pages for v in page]
    expected = list(
        Variant.objects.filter(updated_at__gte=base)
        .order_by("updated_at", "id")
        .values_list("sku", flat=True)
    )
    assert seen == expected
    assert sorted(seen) == [f"CHG-{i:02d}" for i in range(11)]
    assert [v["updated_at"] for page in pages for v in page] == [iso(s) for s in stamps]


def test_changes_feed_sees_listing_changes(reader, writer, tee):
    since = timezone.now()

    assert writer.put(f"{VARIANTS}TEE-L/listings/web/", {"price": "9.00"}).status_code == 200

    pages = _follow(reader, CHANGES, {"since": iso(since)})
    assert [v["sku"] for page in pages for v in page] == ["TEE-L"]
    assert pages[0][0]["listings"][0]["price"] == "9.00"


def test_changes_feed_without_since_lists_everything(reader, tee):
    pages = _follow(reader, CHANGES, {})

    assert sorted(v["sku"] for page in pages for v in page) == ["TEE-L", "TEE-M"]


def test_changes_feed_naive_since_is_read_in_the_default_time_zone(reader, tee):
    Variant.objects.filter(sku="TEE-L").update(updated_at=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).replace(tzinfo=None).isoformat()

    pages = _follow(reader, CHANGES, {"since": since})

    assert [v["sku"] for page in pages for v in page] == ["TEE-M"]


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01T00:00:00Z", "2024-02-30", "0"])
def test_changes_feed_bad_since_is_400(reader, since):
    body = assert_error(reader.get(CHANGES, {"since": since}), 400, "validation_error")

    assert body["details"] == {"since": ["Enter an ISO 8601 date-time."]}


def test_changes_feed_page_size_is_capped(reader):
    product = ProductFactory()
    Variant.objects.bulk_create(
        Variant(product=product, sku=f"BULK-{i:04d}", base_price=Decimal("1.00"))
        for i in range(502)
    )

    pages = _follow(reader, CHANGES, {"limit": 1000})

    assert [len(page) for page in pages] == [500, 2]


# --- Feeds ----------------------------------------------------------------------------------


def test_feed_csv_default_fields(reader, tee):
    response = reader.get("/api/v1/catalog/feeds/web/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'inline; filename="web.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [
        ["sku", "gtin", "title", "brand", "category", "price", "currency", "available"],
        ["TEE-M", make_gtin(1), "Web tee", "Acme", "Apparel > Tops", "18.50", "EUR", "yes"],
    ]


@pytest.mark.parametrize("accept", [None, "text/csv", "application/json"])
def test_feed_json_per_channel_config(reader, tee, accept):
    ChannelFeed.objects.create(
        channel=Channel.objects.get(code="app"),
        format=FeedFormat.JSON,
        fields=["sku", "price", "published", "options"],
        published_only=False,
    )
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = reader.get("/api/v1/catalog/feeds/app/", **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'inline; filename="app.json"'
    body = json.loads(b"".join(response.streaming_content))
    assert body["channel"] == "app"
    assert body["items"] == [
        {"sku": "TEE-M", "price": "19.00", "published": False, "options": {"size": "M"}}
    ]


def test_feed_csv_with_accept_csv(reader, tee):
    response = reader.get("/api/v1/catalog/feeds/web/", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"


def test_feed_of_messaging_channel_is_400(reader):
    before = snapshot()

    response = reader.get("/api/v1/catalog/feeds/email/", HTTP_ACCEPT="text/csv")

    assert_error(response, 400, "not_a_sales_channel")
    assert snapshot() == before


def test_feed_unknown_channel_is_404(reader):
    assert_error(reader.get("/api/v1/catalog/feeds/nowhere/"), 404, "not_found")


def test_feed_needs_credentials(api, tee):
    assert_error(api.get("/api/v1/catalog/feeds/web/"), 401, "not_authenticated")


# --- Channels -------------------------------------------------------------------------------


def test_channel_list(reader):
    response = reader.get(CHANNELS)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 10
    web_channel = web()
    assert body["results"][-1] == {
        "code": "web",
        "name": "Web shop",
        "kind": "web",
        "currency": "EUR",
        "is_active": True,
        "updated_at": iso(web_channel.updated_at),
    }
    assert [c["code"] for c in body["results"]] == sorted(c["code"] for c in body["results"])


def test_channel_list_filters(reader):
    Channel.objects.filter(code="sms").update(is_active=False)

    kinds = reader.get(CHANNELS, {"kind": "email"}).json()["results"]
    inactive = reader.get(CHANNELS, {"is_active": "false"}).json()["results"]

    assert [c["code"] for c in kinds] == ["email"]
    assert [c["code"] for c in inactive] == ["sms"]


@pytest.mark.parametrize(
    ("params", "field"), [({"kind": "fax"}, "kind"), ({"is_active": "y"}, "is_active")]
)
def test_channel_list_bad_filter_is_400(reader, params, field):
    body = assert_error(reader.get(CHANNELS, params), 400, "validation_error")

    assert list(body["details"]) == [field]


def test_channel_retrieve_by_code(reader):
    response = reader.get(f"{CHANNELS}store/")

    assert response.status_code == 200
    assert response.json()["kind"] == "store_pos"
    assert_error(reader.get(f"{CHANNELS}nowhere/"), 404, "not_found")


def test_channel_list_query_count(reader, django_assert_num_queries):
    reader.get(CHANNELS)

    with django_assert_num_queries(3):
        assert reader.get(CHANNELS, {"limit": 500}).status_code == 200
