"""Catalog services: products, variants, brands, categories and channel listings."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from catalog.demo import generate_catalog
from catalog.models import Brand, Category, ChannelListing, Product, Variant
from catalog.selectors import (
    listings_available_now,
    products_listed_on,
    variant_by_code,
    variant_detail_by_sku,
)
from catalog.services import (
    brand_get_or_create,
    category_ensure_path,
    listing_price_change,
    listing_publish,
    listing_unpublish,
    listing_upsert,
    product_create,
    product_update,
    variant_create,
    variant_update,
)
from catalog.services.listings import PublishResult
from omni.exceptions import ValidationFailed
from omni.models import Channel, ChannelKind, OutboxEvent
from tests.factories import (
    BrandFactory,
    ChannelFactory,
    ListingFactory,
    ProductFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

GTIN_A = "4006381333931"
GTIN_B = "5901234123457"


def _events():
    return list(
        OutboxEvent.objects.order_by("id").values_list("type", "subject_type", "subject_id")
    )


def _counts():
    return {
        "products": Product.objects.count(),
        "variants": Variant.objects.count(),
        "listings": ChannelListing.objects.count(),
        "events": OutboxEvent.objects.count(),
    }


def _listing_rows():
    return list(
        ChannelListing.objects.order_by("variant__sku", "channel__code").values_list(
            "variant__sku", "channel__code", "is_published", "price", "currency"
        )
    )


@pytest.fixture
def web():
    return Channel.objects.get(code="web")


@pytest.fixture
def brand():
    return BrandFactory(name="Northwind")


@pytest.fixture
def category():
    return category_ensure_path(path="Apparel > Tops")


# --- Brands and categories --------------------------------------------------------------------


def test_brand_get_or_create_trims_and_reuses():
    first = brand_get_or_create(name="  Kestrel ")
    again = brand_get_or_create(name="Kestrel")
    assert first.pk == again.pk
    assert list(Brand.objects.values_list("name", flat=True)) == ["Kestrel"]


@pytest.mark.parametrize("name", ["", "   ", None])
def test_brand_without_a_name_is_refused(name):
    with pytest.raises(ValidationFailed) as info:
        brand_get_or_create(name=name)
    assert info.value.extra == {"brand": ["Required."]}
    assert Brand.objects.count() == 0


def test_category_ensure_path_creates_the_missing_nodes_once():
    leaf = category_ensure_path(path="Apparel>  Tops ")
    assert leaf.path == "Apparel > Tops"
    assert leaf.name == "Tops"
    assert leaf.parent == Category.objects.get(path="Apparel", parent=None)
    deeper = category_ensure_path(path="Apparel > Tops > Shirts")
    assert deeper.parent_id == leaf.pk
    assert category_ensure_path(path="Apparel > Tops").pk == leaf.pk
    assert list(Category.objects.values_list("path", flat=True)) == [
        "Apparel",
        "Apparel > Tops",
        "Apparel > Tops > Shirts",
    ]


@pytest.mark.parametrize("path", ["", " > ", None])
def test_empty_category_path_is_refused(path):
    with pytest.raises(ValidationFailed) as info:
        category_ensure_path(path=path)
    assert info.value.extra == {"category": ["Required."]}
    assert Category.objects.count() == 0


# --- product_create ---------------------------------------------------------------------------


def test_product_create_with_variants_writes_rows_and_events(brand, category):
    product = product_create(
        title="  Linen Shirt ",
        brand=brand,
        category=category,
        description="Breathable.",
        attributes={"material": "Linen"},
        variants=[
            {
                "sku": "ls-001-m",
                "base_price": "49.90",
                "gtin": GTIN_A,
                "option_values": {"size": "M"},
            },
            {"sku": "LS 001 L", "base_price": Decimal("52"), "weight_grams": 240},
        ],
    )

    product = Product.objects.get(pk=product.pk)
    assert (product.handle, product.title, product.description) == (
        "linen-shirt",
        "Linen Shirt",
        "Breathable.",
    )
    assert (product.brand_id, product.category_id) == (brand.pk, category.pk)
    assert product.attributes == {"material": "Linen"}
    assert product.is_active is True
    assert list(
        Variant.objects.filter(product=product).values_list(
            "sku", "gtin", "base_price", "option_values", "weight_grams", "is_active"
        )
    ) == [
        ("LS-001-L", None, Decimal("52.00"), {}, 240, True),
        ("LS-001-M", GTIN_A, Decimal("49.90"), {"size": "M"}, None, True),
    ]
    assert _events() == [
        ("catalog.product.created", "product", str(product.pk)),
        ("catalog.variant.created", "variant", "LS-001-M"),
        ("catalog.variant.created", "variant", "LS-001-L"),
    ]
    created = OutboxEvent.objects.get(type="catalog.product.created")
    assert created.payload == {
        "handle": "linen-shirt",
        "title": "Linen Shirt",
        "brand": "Northwind",
        "category": "Apparel > Tops",
        "is_active": True,
    }
    variant_event = OutboxEvent.objects.get(subject_id="LS-001-M")
    assert variant_event.payload == {
        "sku": "LS-001-M",
        "product": "linen-shirt",
        "gtin": GTIN_A,
        "base_price": "49.90",
        "is_active": True,
    }


def test_product_create_with_an_explicit_handle_and_no_variants(brand, category):
    product = product_create(title="Mug", handle="mug-classic", brand=brand, category=category)
    assert Product.objects.get(pk=product.pk).handle == "mug-classic"
    assert Variant.objects.count() == 0
    assert _events() == [("catalog.product.created", "product", str(product.pk))]


def test_product_create_with_a_taken_handle_is_refused(brand, category):
    ProductFactory(handle="mug")
    before = _counts()
    with pytest.raises(ValidationFailed) as info:
        product_create(title="Mug", brand=brand, category=category)
    assert list(info.value.extra) == ["handle"]
    assert _counts() == before


def test_product_create_without_a_title_is_refused(brand, category):
    with pytest.raises(ValidationFailed) as info:
        product_create(title="   ", handle="x", brand=brand, category=category)
    assert info.value.code == "validation_error"
    assert list(info.value.extra) == ["title"]
    assert _counts() == {"products": 0, "variants": 0, "listings": 0, "events": 0}


def test_product_create_same_sku_twice_in_the_request_writes_nothing(brand, category):
    with pytest.raises(ValidationFailed) as info:
        product_create(
            title="Tee",
            brand=brand,
            category=category,
            variants=[{"sku": "TEE-1", "base_price": 10}, {"sku": " tee-1", "base_price": 11}],
        )
    assert info.value.extra == {"variants[1].sku": ["Duplicate SKU in the request."]}
    assert info.value.message == "SKU TEE-1 appears twice in this product."
    assert _counts() == {"products": 0, "variants": 0, "listings": 0, "events": 0}


def test_product_create_with_a_sku_of_another_product_writes_nothing(brand, category):
    VariantFactory(sku="TAKEN-1")
    before = _counts()
    with pytest.raises(ValidationFailed) as info:
        product_create(
            title="Tee",
            brand=brand,
            category=category,
            variants=[{"sku": "FREE-1", "base_price": 10}, {"sku": "taken-1", "base_price": 10}],
        )
    assert info.value.extra == {"sku": ["Variant with this SKU already exists."]}
    assert _counts() == before
    assert not Product.objects.filter(handle="tee").exists()
    assert not Variant.objects.filter(sku="FREE-1").exists()


def test_product_create_with_a_gtin_of_another_variant_writes_nothing(brand, category):
    VariantFactory(sku="OTHER", gtin=GTIN_A)
    before = _counts()
    with pytest.raises(ValidationFailed) as info:
        product_create(
            title="Tee",
            brand=brand,
            category=category,
            variants=[{"sku": "TEE-1", "base_price": 10, "gtin": GTIN_A}],
        )
    message = "GTIN 4006381333931 already belongs to SKU OTHER."
    assert (info.value.message, info.value.extra) == (message, {"gtin": [message]})
    assert _counts() == before


def test_product_create_with_unknown_variant_fields_writes_nothing(brand, category):
    with pytest.raises(ValidationFailed) as info:
        product_create(
            title="Tee",
            brand=brand,
            category=category,
            variants=[
                {"sku": "TEE-1", "base_price": 10},
                {"sku": "TEE-2", "base_price": 10, "colour": "red", "product": 1},
            ],
        )
    assert info.value.extra == {
        "variants[1].colour": ["Unknown field."],
        "variants[1].product": ["Unknown field."],
    }
    assert _counts() == {"products": 0, "variants": 0, "listings": 0, "events": 0}


@pytest.mark.parametrize("sku", ["-TEE", "TEE/1", "TÉE", "T" * 65, ""])
def test_product_create_with_an_invalid_sku_is_refused(brand, category, sku):
    with pytest.raises(ValidationFailed) as info:
        product_create(
            title="Tee", brand=brand, category=category, variants=[{"sku": sku, "base_price": 10}]
        )
    assert info.value.code == "validation_error"
    assert list(info.value.extra) == ["sku"]
    assert _counts() == {"products": 0, "variants": 0, "listings": 0, "events": 0}


@pytest.mark.parametrize(
    ("gtin", "message"),
    [
        ("4006381333932", "GTIN 4006381333932 has a wrong check digit (expected 1)."),
        ("400638133393", "GTIN 400638133393 has a wrong check digit (expected 0)."),
        ("12345", "GTIN '12345' must be 8, 12, 13 or 14 digits."),
        ("40063813339AB", "GTIN '40063813339AB' must be 8, 12, 13 or 14 digits."),
    ],
)
def test_product_create_with_an_invalid_gtin_is_refused_with_details(
    brand, category, gtin, message
):
    with pytest.raises(ValidationFailed) as info:
        product_create(
            title="Tee",
            brand=brand,
            category=category,
            variants=[{"sku": "TEE-1", "base_price": 10, "gtin": gtin}],
        )
    assert info.value.extra == {"gtin": [message]}
    assert info.value.message == f"Variant TEE-1 is not valid: gtin: {message}"
    assert _counts() == {"products": 0, "variants": 0, "listings": 0, "events": 0}


@pytest.mark.parametrize("price", ["abc", "", None, "-1", "1.234", "NaN", "Infinity", [1]])
def test_product_create_with_an_invalid_base_price_is_refused(brand, category, price):
    with pytest.raises(ValidationFailed) as info:
        product_create(
            title="Tee",
            brand=brand,
            category=category,
            variants=[{"sku": "TEE-1", "base_price": price}],
        )
    assert list(info.value.extra) == ["base_price"]
    assert _counts() == {"products": 0, "variants": 0, "listings": 0, "events": 0}


def test_variant_create_normalises_sku_and_gtin_and_touches_the_product():
    product = ProductFactory()
    old = timezone.now() - timedelta(days=3)
    Product.objects.filter(pk=product.pk).update(updated_at=old)
    variant = variant_create(
        product=product, sku=" ab  c1 ", base_price="9.5", gtin="400 638-1333931"
    )
    variant.refresh_from_db()
    assert (variant.sku, variant.gtin, variant.base_price) == ("AB-C1", GTIN_A, Decimal("9.50"))
    assert Product.objects.get(pk=product.pk).updated_at > old
    assert _events() == [("catalog.variant.created", "variant", "AB-C1")]


# --- product_update / variant_update ----------------------------------------------------------


def test_product_update_changes_fields_and_emits_an_event():
    product = ProductFactory(title="Old")
    brand = BrandFactory(name="Kestrel")
    product_update(product=product, title=" New title ", brand=brand, is_active=False)
    product.refresh_from_db()
    assert (product.title, product.brand_id, product.is_active) == ("New title", brand.pk, False)
    event = OutboxEvent.objects.get()
    assert (event.type, event.subject_id) == ("catalog.product.updated", str(product.pk))
    assert event.payload["changed"] == ["brand", "is_active", "title"]
    assert event.payload["title"] == "New title"


def test_product_update_with_unknown_fields_is_refused():
    product = ProductFactory(title="Old")
    with pytest.raises(ValidationFailed) as info:
        product_update(product=product, title="New", handle="other", colour="red")
    assert info.value.extra == {"colour": ["Unknown field."], "handle": ["Unknown field."]}
    assert info.value.message == "Unknown product fields: colour, handle."
    product.refresh_from_db()
    assert (product.title, product.handle) == ("Old", product.handle)
    assert OutboxEvent.objects.count() == 0


def test_product_update_to_an_empty_title_is_refused():
    product = ProductFactory(title="Old")
    with pytest.raises(ValidationFailed) as info:
        product_update(product=product, title="  ")
    assert list(info.value.extra) == ["title"]
    assert Product.objects.get(pk=product.pk).title == "Old"
    assert OutboxEvent.objects.count() == 0


def test_sku_cannot_change_on_update():
    variant = VariantFactory(sku="TEE-1", base_price=Decimal("10.00"))
    with pytest.raises(ValidationFailed) as info:
        variant_update(variant=variant, sku="TEE-2", base_price="12")
    assert info.value.extra == {"sku": ["Read only."]}
    assert Variant.objects.get(pk=variant.pk).sku == "TEE-1"
    assert Variant.objects.get(pk=variant.pk).base_price == Decimal("10.00")
    assert OutboxEvent.objects.count() == 0


def test_variant_update_accepts_its_own_sku_in_another_spelling():
    variant = VariantFactory(sku="TEE-1", gtin=None)
    variant_update(variant=variant, sku=" tee-1 ", base_price="12.5", gtin="4006381-333931")
    variant.refresh_from_db()
    assert (variant.sku, variant.base_price, variant.gtin) == ("TEE-1", Decimal("12.50"), GTIN_A)
    event = OutboxEvent.objects.get()
    assert (event.type, event.subject_id) == ("catalog.variant.updated", "TEE-1")
    assert event.payload["changed"] == ["base_price", "gtin"]
    assert event.payload["base_price"] == "12.50"


def test_variant_update_with_unknown_fields_is_refused():
    variant = VariantFactory()
    with pytest.raises(ValidationFailed) as info:
        variant_update(variant=variant, product=ProductFactory(), colour="red")
    assert info.value.extra == {"colour": ["Unknown field."], "product": ["Unknown field."]}
    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize("price", ["abc", "-1", "NaN"])
def test_variant_update_with_an_invalid_price_is_refused(price):
    variant = VariantFactory(base_price=Decimal("10.00"))
    with pytest.raises(ValidationFailed) as info:
        variant_update(variant=variant, base_price=price)
    assert list(info.value.extra) == ["base_price"]
    assert Variant.objects.get(pk=variant.pk).base_price == Decimal("10.00")
    assert OutboxEvent.objects.count() == 0


def test_variant_update_to_a_gtin_of_another_variant_is_refused():
    VariantFactory(sku="FIRST", gtin=GTIN_A)
    variant = VariantFactory(gtin=GTIN_B)
    with pytest.raises(ValidationFailed) as info:
        variant_update(variant=variant, gtin=GTIN_A)
    assert info.value.extra == {"gtin": ["GTIN 4006381333931 already belongs to SKU FIRST."]}
    assert Variant.objects.get(pk=variant.pk).gtin == GTIN_B
    assert OutboxEvent.objects.count() == 0


# --- listing_publish --------------------------------------------------------------------------


def test_listing_publish_creates_publishes_and_counts_unchanged():
    uk = ChannelFactory(code="uk-shop", kind=ChannelKind.WEB, currency="GBP")
    new = VariantFactory(sku="NEW-1", base_price=Decimal("19.99"))
    hidden = VariantFactory(sku="HIDDEN-1")
    ListingFactory(variant=hidden, channel=uk, is_published=False, price="25.00", currency="GBP")
    shown = VariantFactory(sku="SHOWN-1")
    ListingFactory(variant=shown, channel=uk, is_published=True, price="30.00", currency="GBP")
    ListingFactory(variant=new, is_published=False)  # on web: left alone

    result = listing_publish(variants=[new, hidden, shown.pk, new], channel=uk)

    assert result == PublishResult(created=1, published=1, unchanged=1)
    assert result.changed == 2
    assert _listing_rows() == [
        ("HIDDEN-1", "uk-shop", True, Decimal("25.00"), "GBP"),
        ("NEW-1", "uk-shop", True, Decimal("19.99"), "GBP"),
        ("NEW-1", "web", False, Decimal("19.99"), "EUR"),
        ("SHOWN-1", "uk-shop", True, Decimal("30.00"), "GBP"),
    ]
    created = ChannelListing.objects.get(variant=new, channel=uk)
    assert created.product_id == new.product_id
    assert created.published_at is not None
    assert ChannelListing.objects.get(variant=hidden, channel=uk).published_at is not None
    assert sorted(_events()) == [
        ("catalog.listing.published", "variant", "HIDDEN-1"),
        ("catalog.listing.published", "variant", "NEW-1"),
    ]
    assert OutboxEvent.objects.get(subject_id="NEW-1").payload == {
        "sku": "NEW-1",
        "channel": "uk-shop",
    }


def test_listing_publish_again_changes_nothing(web):
    variants = VariantFactory.create_batch(3)
    listing_publish(variants=variants, channel=web)
    events = OutboxEvent.objects.count()
    assert listing_publish(variants=variants, channel=web) == PublishResult(unchanged=3)
    assert OutboxEvent.objects.count() == events == 3
    assert ChannelListing.objects.filter(channel=web, is_published=True).count() == 3


def test_listing_publish_with_price_and_currency_applies_to_new_listings_only(web):
    new = VariantFactory(sku="NEW-1")
    old = VariantFactory(sku="OLD-1")
    ListingFactory(variant=old, channel=web, is_published=False, price="5.00")
    result = listing_publish(variants=[new, old], channel=web, price="7.499", currency=" usd ")
    assert result == PublishResult(created=1, published=1)
    assert _listing_rows() == [
        ("NEW-1", "web", True, Decimal("7.50"), "USD"),
        ("OLD-1", "web", True, Decimal("5.00"), "EUR"),
    ]


def test_listing_publish_on_a_channel_without_currency_uses_the_default(settings):
    settings.OMNI_DEFAULT_CURRENCY = "CHF"
    channel = ChannelFactory(code="popup", kind=ChannelKind.STORE_POS, currency="")
    variant = VariantFactory()
    listing_publish(variants=[variant], channel=channel)
    assert ChannelListing.objects.get(variant=variant, channel=channel).currency == "CHF"


@pytest.mark.parametrize("code", ["email", "sms", "push", "social-dm", "ads-audience"])
def test_listing_publish_on_a_messaging_channel_is_refused(code):
    variant = VariantFactory()
    with pytest.raises(ValidationFailed) as info:
        listing_publish(variants=[variant], channel=Channel.objects.get(code=code))
    assert info.value.code == "not_a_sales_channel"
    assert info.value.extra == {"channel": [f"{code} is not a sales channel."]}
    assert _counts() == {"products": 1, "variants": 1, "listings": 0, "events": 0}


def test_listing_publish_on_an_inactive_channel_changes_nothing(web):
    Channel.objects.filter(pk=web.pk).update(is_active=False)
    web.refresh_from_db()
    hidden = ListingFactory(is_published=False, channel=web)
    fresh = VariantFactory()
    with pytest.raises(ValidationFailed) as info:
        listing_publish(variants=[hidden.variant, fresh], channel=web)
    assert info.value.code == "channel_inactive"
    assert info.value.extra == {"channel": ["web is inactive."]}
    assert ChannelListing.objects.get().is_published is False
    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"price": "-1"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "Infinity"}, "price"),
        ({"price": "1e30"}, "price"),
        ({"currency": "EURO"}, "currency"),
    ],
)
def test_listing_publish_with_a_bad_price_or_currency_changes_nothing(web, kwargs, field):
    hidden = ListingFactory(is_published=False, channel=web)
    fresh = VariantFactory()
    with pytest.raises(ValidationFailed) as info:
        listing_publish(variants=[hidden.variant, fresh], channel=web, **kwargs)
    assert list(info.value.extra) == [field]
    assert ChannelListing.objects.get().is_published is False
    assert OutboxEvent.objects.count() == 0


# --- listing_unpublish ------------------------------------------------------------------------


def test_listing_unpublish_returns_the_number_changed_and_emits_events(web):
    shown = ListingFactory(variant__sku="SHOWN-1", channel=web, is_published=True)
    hidden = ListingFactory(variant__sku="HIDDEN-1", channel=web, is_published=False)
    other = ListingFactory(variant=shown.variant, channel=Channel.objects.get(code="app"))
    unlisted = VariantFactory()

    changed = listing_unpublish(variants=[shown.variant, hidden.variant, unlisted], channel=web)

    assert changed == 1
    assert ChannelListing.objects.get(pk=shown.pk).is_published is False
    assert ChannelListing.objects.get(pk=other.pk).is_published is True
    assert ChannelListing.objects.get(pk=hidden.pk).is_published is False
    assert _events() == [("catalog.listing.unpublished", "variant", "SHOWN-1")]
    assert listing_unpublish(variants=[shown.variant], channel=web) == 0
    assert OutboxEvent.objects.count() == 1


def test_listing_unpublish_on_a_messaging_channel_is_refused():
    listing = ListingFactory()
    with pytest.raises(ValidationFailed) as info:
        listing_unpublish(variants=[listing.variant], channel=Channel.objects.get(code="email"))
    assert info.value.code == "not_a_sales_channel"
    assert OutboxEvent.objects.count() == 0


def test_listing_unpublish_works_on_an_inactive_channel(web):
    listing = ListingFactory(channel=web)
    Channel.objects.filter(pk=web.pk).update(is_active=False)
    web.refresh_from_db()
    assert listing_unpublish(variants=[listing.variant], channel=web) == 1
    assert ChannelListing.objects.get().is_published is False


# --- listing_upsert / listing_price_change ----------------------------------------------------


def test_listing_upsert_creates_an_unpublished_listing_at_the_base_price(web):
    variant = VariantFactory(sku="TEE-1", base_price=Decimal("12.00"))
    listing = listing_upsert(variant=variant, channel=web)
    listing = ChannelListing.objects.get(pk=listing.pk)
    assert (listing.price, listing.currency, listing.is_published) == (
        Decimal("12.00"),
        "EUR",
        False,
    )
    assert listing.product_id == variant.product_id
    assert listing.published_at is None
    assert _events() == [("catalog.listing.created", "variant", "TEE-1")]
    assert OutboxEvent.objects.get().payload == {
        "sku": "TEE-1",
        "channel": "web",
        "is_published": False,
        "price": "12.00",
        "currency": "EUR",
    }


def test_listing_upsert_creates_a_published_listing(web):
    variant = VariantFactory(sku="TEE-1")
    listing = listing_upsert(
        variant=variant,
        channel=web,
        price="9.999",
        currency="gbp",
        is_published=True,
        title="Web title",
    )
    listing = ChannelListing.objects.get(pk=listing.pk)
    assert (listing.price, listing.currency, listing.title) == (
        Decimal("10.00"),
        "GBP",
        "Web title",
    )
    assert listing.published_at is not None
    assert _events() == [
        ("catalog.listing.created", "variant", "TEE-1"),
        ("catalog.listing.published", "variant", "TEE-1"),
    ]


def test_listing_upsert_price_change_emits_updated_and_price_changed(web):
    listing = ListingFactory(variant__sku="TEE-1", channel=web, price="10.00", title="Kept")
    listing_upsert(variant=listing.variant, channel=web, price="11.50")
    listing.refresh_from_db()
    assert (listing.price, listing.title, listing.is_published) == (Decimal("11.50"), "Kept", True)
    assert _events() == [
        ("catalog.listing.updated", "variant", "TEE-1"),
        ("catalog.listing.price_changed", "variant", "TEE-1"),
    ]
    changed = OutboxEvent.objects.get(type="catalog.listing.price_changed")
    assert (changed.payload["old_price"], changed.payload["price"]) == ("10.00", "11.50")


def test_listing_upsert_same_price_emits_updated_only(web):
    listing = ListingFactory(variant__sku="TEE-1", channel=web, price="10.00")
    listing_upsert(variant=listing.variant, channel=web, price="10", description="New")
    assert ChannelListing.objects.get().description == "New"
    assert _events() == [("catalog.listing.updated", "variant", "TEE-1")]


def test_listing_upsert_unpublish_and_republish(web):
    listing = ListingFactory(variant__sku="TEE-1", channel=web, is_published=True)
    listing_upsert(variant=listing.variant, channel=web, is_published=False)
    assert ChannelListing.objects.get().is_published is False
    listing_upsert(variant=listing.variant, channel=web, is_published=True)
    listing.refresh_from_db()
    assert listing.is_published is True
    assert listing.published_at is not None
    assert _events() == [
        ("catalog.listing.updated", "variant", "TEE-1"),
        ("catalog.listing.unpublished", "variant", "TEE-1"),
        ("catalog.listing.updated", "variant", "TEE-1"),
        ("catalog.listing.published", "variant", "TEE-1"),
    ]


def test_listing_upsert_with_an_availability_window(web):
    variant = VariantFactory()
    start = timezone.now()
    listing = listing_upsert(
        variant=variant,
        channel=web,
        available_from=start,
        available_until=start + timedelta(days=7),
    )
    listing = ChannelListing.objects.get(pk=listing.pk)
    assert (listing.available_from, listing.available_until) == (start, start + timedelta(days=7))


@pytest.mark.parametrize("length", [timedelta(days=-1), timedelta(0)])
def test_listing_upsert_with_until_not_after_from_is_refused(web, length):
    listing = ListingFactory(channel=web, price="10.00")
    start = timezone.now()
    with pytest.raises(ValidationFailed) as info:
        listing_upsert(
            variant=listing.variant,
            channel=web,
            price="12.00",
            available_from=start,
            available_until=start + length,
        )
    assert info.value.extra == {"available_until": ["Must be after available_from."]}
    listing.refresh_from_db()
    assert (listing.price, listing.available_from, listing.available_until) == (
        Decimal("10.00"),
        None,
        None,
    )
    assert OutboxEvent.objects.count() == 0


def test_listing_upsert_moving_until_before_an_existing_from_is_refused(web):
    start = timezone.now()
    listing = ListingFactory(channel=web, available_from=start)
    with pytest.raises(ValidationFailed) as info:
        listing_upsert(
            variant=listing.variant, channel=web, available_until=start - timedelta(hours=1)
        )
    assert info.value.extra == {"available_until": ["Must be after available_from."]}
    assert ChannelListing.objects.get().available_until is None


@pytest.mark.parametrize(("code", "error"), [("email", "not_a_sales_channel"), ("app", None)])
def test_listing_upsert_refused_on_messaging_or_inactive_channel(code, error):
    channel = Channel.objects.get(code=code)
    if error is None:
        Channel.objects.filter(pk=channel.pk).update(is_active=False)
        channel.refresh_from_db()
        error = "channel_inactive"
    variant = VariantFactory()
    with pytest.raises(ValidationFailed) as info:
        listing_upsert(variant=variant, channel=channel, is_published=True)
    assert info.value.code == error
    assert ChannelListing.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize("price", ["-0.01", "abc", "NaN", "-Infinity", None])
def test_listing_upsert_with_a_bad_price_is_refused(web, price):
    listing = ListingFactory(channel=web, price="10.00")
    with pytest.raises(ValidationFailed) as info:
        listing_upsert(variant=listing.variant, channel=web, price=price)
    assert list(info.value.extra) == ["price"]
    assert ChannelListing.objects.get().price == Decimal("10.00")


def test_listing_upsert_with_a_price_too_large_is_refused(web):
    listing = ListingFactory(channel=web, price="10.00")
    with pytest.raises(ValidationFailed) as info:
        listing_upsert(variant=listing.variant, channel=web, price="10000000000")
    assert list(info.value.extra) == ["price"]
    assert ChannelListing.objects.get().price == Decimal("10.00")


def test_listing_price_change_keeps_the_currency(web):
    listing = ListingFactory(variant__sku="TEE-1", channel=web, price="10.00", currency="GBP")
    listing_price_change(listing=listing, price="8.00")
    listing.refresh_from_db()
    assert (listing.price, listing.currency) == (Decimal("8.00"), "GBP")
    assert _events() == [
        ("catalog.listing.updated", "variant", "TEE-1"),
        ("catalog.listing.price_changed", "variant", "TEE-1"),
    ]


def test_listing_price_change_with_a_currency(web):
    listing = ListingFactory(channel=web, price="10.00", currency="EUR")
    listing_price_change(listing=listing, price="9.00", currency="USD")
    listing.refresh_from_db()
    assert (listing.price, listing.currency) == (Decimal("9.00"), "USD")


def test_listing_price_change_to_a_negative_price_is_refused(web):
    listing = ListingFactory(channel=web, price="10.00")
    with pytest.raises(ValidationFailed):
        listing_price_change(listing=listing, price="-5")
    assert ChannelListing.objects.get().price == Decimal("10.00")
    assert OutboxEvent.objects.count() == 0


# --- Selectors --------------------------------------------------------------------------------


def test_variant_detail_by_sku_folds_the_listings(web):
    variant = VariantFactory(
        sku="TEE-1",
        gtin=GTIN_A,
        product__title="Tee",
        product__handle="tee",
        product__brand=BrandFactory(name="Northwind"),
        product__category=category_ensure_path(path="Apparel > Tops"),
    )
    ListingFactory(variant=variant, channel=web, price="10.00")
    ListingFactory(
        variant=variant,
        channel=Channel.objects.get(code="app"),
        price="9.00",
        title="App title",
        is_published=False,
    )
    detail = variant_detail_by_sku("TEE-1")
    assert detail["sku"] == "TEE-1"
    assert detail["gtin"] == GTIN_A
    assert detail["product"] == {
        "handle": "tee",
        "title": "Tee",
        "brand": "Northwind",
        "category": "Apparel > Tops",
    }
    assert [
        (x["channel"], x["is_published"], x["price"], x["title"]) for x in detail["listings"]
    ] == [("app", False, "9.00", "App title"), ("web", True, "10.00", "Tee")]
    # The selector returns the API's wire format: money as strings, datetimes in ISO 8601.
    assert detail["base_price"] == "19.99"
    assert detail["updated_at"] == variant.updated_at.isoformat().replace("+00:00", "Z")


def test_variant_detail_by_sku_without_listings_or_unknown():
    VariantFactory(sku="LONELY")
    assert variant_detail_by_sku("LONELY")["listings"] == []
    assert variant_detail_by_sku("NOPE") is None


def test_variant_by_code_finds_a_sku_or_a_barcode():
    variant = VariantFactory(sku="TEE-1", gtin=GTIN_A)
    assert variant_by_code(" tee-1 ") == variant
    assert variant_by_code("400-6381 333931") == variant
    assert variant_by_code("TEE-2") is None
    assert variant_by_code("") is None


def test_products_listed_on_and_listings_available_now(web):
    now = timezone.now()
    shown = ListingFactory(channel=web, is_published=True)
    hidden = ListingFactory(channel=web, is_published=False)
    later = ListingFactory(channel=web, available_from=now + timedelta(hours=1))
    ListingFactory(channel=Channel.objects.get(code="app"))
    assert set(products_listed_on("web")) == {shown.product, hidden.product, later.product}
    assert set(products_listed_on("web", published=True)) == {shown.product, later.product}
    assert set(products_listed_on("web", published=False)) == {hidden.product}
    assert list(listings_available_now(ChannelListing.objects.filter(channel=web))) == [shown]


# --- demo catalog -----------------------------------------------------------------------------


def test_generate_catalog_with_fixed_variants_per_product():
    channels = list(Channel.objects.filter(code__in=["web", "app"]).order_by("code"))
    counts = generate_catalog(products=4, variants_per_product=3, channels=channels)
    assert counts == {"products": 4, "variants": 12, "listings": 24}
    assert (Product.objects.count(), Variant.objects.count()) == (4, 12)
    assert ChannelListing.objects.count() == 24
    for channel in channels:
        assert ChannelListing.objects.filter(channel=channel).count() == 12
    for variant in Variant.objects.all():
        variant.full_clean()  # the generated data passes the model's own rules


def test_generate_catalog_on_every_active_sales_channel_is_consistent():
    Channel.objects.filter(code="social-shop").update(is_active=False)
    counts = generate_catalog(products=6, seed=3)
    channels = Channel.objects.sales().active().count()
    assert channels == 4
    assert counts["products"] == Product.objects.count() == 6
    assert counts["variants"] == Variant.objects.count()
    assert counts["listings"] == ChannelListing.objects.count()
    assert counts["variants"] == counts["listings"] / channels
    assert 6 <= counts["variants"] <= 48
    assert not ChannelListing.objects.filter(channel__code="social-shop").exists()
    assert Variant.objects.filter(gtin__isnull=True).count() == 0
    assert Variant.objects.values("gtin").distinct().count() == counts["variants"]


class _Rollback(Exception):
    pass


def _generated(seed):
    try:
        with transaction.atomic():
            generate_catalog(products=3, seed=seed)
            snapshot = list(
                Variant.objects.order_by("sku").values_list(
                    "sku", "gtin", "product__title", "base_price", "option_values"
                )
            )
            raise _Rollback
    except _Rollback:
        return snapshot


def test_generate_catalog_is_deterministic_for_a_seed():
    assert _generated(7) == _generated(7)
    assert _generated(7) != _generated(8)
    assert Product.objects.count() == 0


def test_generate_catalog_with_a_start_continues_without_clashes():
    web = [Channel.objects.get(code="web")]
    generate_catalog(products=2, variants_per_product=2, channels=web)
    counts = generate_catalog(products=2, variants_per_product=2, channels=web, start=2)
    assert counts == {"products": 2, "variants": 4, "listings": 4}
    assert Variant.objects.count() == ChannelListing.objects.count() == 8


# --- Concurrency (real transactions in threads) -----------------------------------------------


def _race(target, count=4):
    """Run ``target`` in ``count`` threads at once; return its results and the errors raised."""
    barrier = threading.Barrier(count)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=10)
            results.append(target())
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_publish_of_the_same_variants_creates_each_listing_once():
    channel = ChannelFactory(code="web", kind=ChannelKind.WEB)
    variants = VariantFactory.create_batch(20)
    results, errors = _race(lambda: listing_publish(variants=variants, channel=channel))
    assert errors == []
    assert sorted(r.created for r in results) == [0, 0, 0, 20]
    assert sum(r.unchanged for r in results) == 60
    assert ChannelListing.objects.count() == 20
    assert OutboxEvent.objects.filter(type="catalog.listing.published").count() == 20


@pytest.mark.django_db(transaction=True)
def test_concurrent_unpublish_emits_one_event_per_listing():
    channel = ChannelFactory(code="web", kind=ChannelKind.WEB)
    listings = ListingFactory.create_batch(10, channel=channel, is_published=True)
    variants = [listing.variant for listing in listings]
    results, errors = _race(lambda: listing_unpublish(variants=variants, channel=channel))
    assert errors == []
    assert sorted(results) == [0, 0, 0, 10]
    assert OutboxEvent.objects.filter(type="catalog.listing.unpublished").count() == 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_a_new_listing_create_it_once():
    channel = ChannelFactory(code="web", kind=ChannelKind.WEB)
    variant = VariantFactory()
    _, errors = _race(lambda: listing_upsert(variant=variant, channel=channel, price="5"))
    assert errors == []
    assert ChannelListing.objects.get(variant=variant).price == Decimal("5.00")
    assert OutboxEvent.objects.filter(type="catalog.listing.created").count() == 1
    assert OutboxEvent.objects.filter(type="catalog.listing.updated").count() == 3
