"""The catalog admin: changelists and their query counts, search and filters, add and change
forms saved through the services, channel actions, CSV import and export, and channel feeds."""

import csv
import io
import json
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.csvformat import COLUMNS
from catalog.feeds import FEED_FIELDS
from catalog.models import Brand, Category, ChannelFeed, ChannelListing, Product, Variant
from omni.models import Channel, ChannelKind, OutboxEvent
from tests.factories import (
    BrandFactory,
    CategoryFactory,
    ChannelFactory,
    ListingFactory,
    ProductFactory,
    VariantFactory,
    make_gtin,
)

pytestmark = pytest.mark.django_db

BLANK_WINDOW = {
    "available_from_0": "",
    "available_from_1": "",
    "available_until_0": "",
    "available_until_1": "",
}


# --- Helpers ----------------------------------------------------------------------------------


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def clerk_client(client, django_user_model):
    """Log in a staff user (not a superuser) with only the given permission codenames."""

    def login(*codenames):
        user = django_user_model.objects.create_user(username="clerk", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        client.force_login(user)
        return client

    return login


def channel(code):
    return Channel.objects.get(code=code)


def url(model, view="changelist", *args):
    return reverse(f"admin:catalog_{model}_{view}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def result_pks(response):
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def run_action(client, model, action, ids, *, channel_code=None, query=""):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in ids], "index": "0"}
    if channel_code is not None:
        data["channel"] = channel_code
    return client.post(url(model) + query, data)


def formset_data(prefix, rows, initial=0):
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        data.update(
            {
                f"{key[:8]}{prefix}-{index}-{key[8:]}"
                if key.startswith("initial-")
                else f"{prefix}-{index}-{key}": value
                for key, value in row.items()
            }
        )
    return data


def product_data(product=None, *, variants=(), listings=(), **fields):
    """POST data of the product add (or change) form with its two inlines.

    Rows of an existing product's inlines come first and count as initial forms."""
    data = {
        "handle": "linen-shirt",
        "title": "Linen shirt",
        "description": "",
        "brand": "",
        "category": "",
        "attributes": '{"material": "Linen"}',
        # Fields with a callable default post their initial value too (show_hidden_initial).
        "initial-attributes": "{}",
        "is_active": "on",
        "_save": "Save",
    }
    initial_variants = initial_listings = 0
    if product is not None:
        data.update(
            handle=product.handle,
            title=product.title,
            description=product.description,
            brand=str(product.brand_id),
            category=str(product.category_id),
            attributes=json.dumps(product.attributes),
        )
        data["initial-attributes"] = json.dumps(product.attributes)
        existing_variants = [variant_row(v) for v in product.variants.order_by("sku")]
        existing_listings = [
            listing_row(li) for li in product.listings.order_by("variant__sku", "channel__code")
        ]
        initial_variants, initial_listings = len(existing_variants), len(existing_listings)
        variants = [*existing_variants, *variants]
        listings = [*existing_listings, *listings]
    data.update(fields)
    data.update(formset_data("variants", variants, initial_variants))
    data.update(formset_data("listings", listings, initial_listings))
    return data


def variant_row(variant):
    return {
        "id": str(variant.pk),
        "product": str(variant.product_id),
        "sku": variant.sku,
        "gtin": variant.gtin or "",
        "option_values": json.dumps(variant.option_values),
        "initial-option_values": json.dumps(variant.option_values),
        "weight_grams": "" if variant.weight_grams is None else str(variant.weight_grams),
        "base_price": str(variant.base_price),
        "is_active": "on" if variant.is_active else "",
    }


def listing_row(listing, **changes):
    row = {
        "id": str(listing.pk),
        "product": str(listing.product_id),
        "variant": str(listing.variant_id),
        "channel": str(listing.channel_id),
        "price": str(listing.price),
        "currency": listing.currency,
        "title": listing.title,
        "description": listing.description,
        **BLANK_WINDOW,
    }
    if listing.is_published:
        row["is_published"] = "on"
    row.update(changes)
    return row


def event_types():
    return list(OutboxEvent.objects.order_by("id").values_list("type", flat=True))


def wrong_check_digit(gtin):
    return gtin[:-1] + str((int(gtin[-1]) + 1) % 10)


def csv_rows(response):
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body)))


# --- Changelists: status and query counts -----------------------------------------------------


def _listing_row(index):
    ListingFactory()


def _brand_row(index):
    ProductFactory()


def _category_row(index):
    root = Category.objects.order_by("pk").first()
    name = f"Leaf {index}"
    CategoryFactory(name=name, path=f"{root.path} > {name}" if root else name, parent=root)


def _feed_row(index):
    ChannelFeed.objects.create(channel=ChannelFactory(kind=ChannelKind.WEB), fields=["sku"])


@pytest.mark.parametrize(
    ("model_name", "model", "make_row", "max_queries"),
    [
        ("product", Product, _listing_row, 9),
        ("variant", Variant, _listing_row, 9),
        ("channellisting", ChannelListing, _listing_row, 7),
        ("brand", Brand, _brand_row, 5),
        ("category", Category, _category_row, 5),
        ("channelfeed", ChannelFeed, _feed_row, 5),
    ],
)
def test_changelist_query_count_does_not_grow_with_rows(
    staff, django_assert_max_num_queries, model_name, model, make_row, max_queries
):
    counts = []
    made = 0
    for rows in (5, 30):
        while made < rows:
            make_row(made)
            made += 1
        with django_assert_max_num_queries(max_queries) as captured:
            response = staff.get(url(model_name))
        assert len(result_pks(response)) == model.objects.count() == rows
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]


def test_product_changelist_links_import_and_export(staff):
    response = staff.get(url("product"))

    assert response.status_code == 200
    assert f'href="{url("product", "import")}"' in response.text
    assert f'href="{url("product", "export")}"' in response.text


def test_product_change_page_query_count_does_not_grow_with_listings(staff):
    """Each listing row's variant and channel choices are evaluated once, not once per row."""

    def page_queries(product):
        with CaptureQueriesContext(connection) as captured:
            response = staff.get(url("product", "change", product.pk))
        assert response.status_code == 200
        assert len(response.context["inline_admin_formsets"][1].formset.forms) == (
            product.listings.count()
        )
        return len(captured.captured_queries)

    counts = []
    for variants in (1, 6):
        product = ProductFactory()
        for _ in range(variants):
            variant = VariantFactory(product=product)
            for code in ("web", "app", "store"):
                ListingFactory(variant=variant, channel=channel(code))
        page_queries(product)  # warm the per-process caches (content types)
        counts.append(page_queries(product))

    assert counts[0] == counts[1]


def test_variant_change_page_query_count_does_not_grow_with_listings(staff):
    counts = []
    for codes in (["web"], ["web", "app", "store", "marketplace", "social-shop"]):
        variant = VariantFactory()
        for code in codes:
            ListingFactory(variant=variant, channel=channel(code))
        staff.get(url("variant", "change", variant.pk))  # warm the per-process caches
        with CaptureQueriesContext(connection) as captured:
            response = staff.get(url("variant", "change", variant.pk))
        assert response.status_code == 200
        assert len(response.context["inline_admin_formsets"][0].formset.forms) == len(codes)
        counts.append(len(captured.captured_queries))

    assert counts[0] == counts[1]


# --- Search and filters -----------------------------------------------------------------------


@pytest.fixture
def shirt_and_coat():
    shirt = ProductFactory(title="Linen shirt")
    coat = ProductFactory(title="Wool coat")
    return {
        "shirt": shirt,
        "coat": coat,
        "shirt_s": VariantFactory(product=shirt, sku="SHIRT-LIN-S"),
        "shirt_m": VariantFactory(product=shirt, sku="SHIRT-LIN-M"),
        "coat_1": VariantFactory(product=coat, sku="COAT-SHIRT-1"),
    }


def test_product_search_by_title(staff, shirt_and_coat):
    assert result_pks(staff.get(url("product") + "?q=linen")) == [shirt_and_coat["shirt"].pk]


def test_product_search_by_sku_prefix_counts_variants_once(staff, shirt_and_coat):
    response = staff.get(url("product") + "?q=shirt-lin")

    assert result_pks(response) == [shirt_and_coat["shirt"].pk]
    assert response.context["cl"].result_list[0].variant_count == 2


def test_product_search_by_sku_matches_the_start_only(staff, shirt_and_coat):
    # "COAT-SHIRT-1" contains "shirt" but does not start with it.
    assert result_pks(staff.get(url("product") + "?q=shirt")) == [shirt_and_coat["shirt"].pk]
    assert result_pks(staff.get(url("product") + "?q=lin-m")) == []


def test_product_search_by_exact_gtin(staff, shirt_and_coat):
    gtin = shirt_and_coat["coat_1"].gtin

    assert result_pks(staff.get(url("product") + f"?q={gtin}")) == [shirt_and_coat["coat"].pk]
    assert result_pks(staff.get(url("product") + f"?q={gtin[:-1]}")) == []


def test_variant_search_by_sku_prefix(staff, shirt_and_coat):
    assert result_pks(staff.get(url("variant") + "?q=shirt-lin")) == [
        shirt_and_coat["shirt_m"].pk,
        shirt_and_coat["shirt_s"].pk,
    ]
    assert result_pks(staff.get(url("variant") + "?q=coat-")) == [shirt_and_coat["coat_1"].pk]
    assert result_pks(staff.get(url("variant") + "?q=lin-s")) == []


def test_variant_search_by_exact_gtin(staff, shirt_and_coat):
    gtin = shirt_and_coat["shirt_s"].gtin

    assert result_pks(staff.get(url("variant") + f"?q={gtin}")) == [shirt_and_coat["shirt_s"].pk]
    assert result_pks(staff.get(url("variant") + f"?q={gtin[:-1]}")) == []


def test_product_filters_by_category_and_brand(staff):
    tops, shoes = CategoryFactory(name="Tops"), CategoryFactory(name="Shoes")
    acme, zeta = BrandFactory(name="Acme"), BrandFactory(name="Zeta")
    a = ProductFactory(title="A", category=tops, brand=acme)
    b = ProductFactory(title="B", category=shoes, brand=acme)
    c = ProductFactory(title="C", category=tops, brand=zeta)

    assert result_pks(staff.get(url("product") + f"?category__id__exact={tops.pk}")) == [
        a.pk,
        c.pk,
    ]
    assert result_pks(staff.get(url("product") + f"?brand__id__exact={acme.pk}")) == [
        a.pk,
        b.pk,
    ]
    assert (
        result_pks(
            staff.get(
                url("product") + f"?brand__id__exact={zeta.pk}&category__id__exact={shoes.pk}"
            )
        )
        == []
    )


@pytest.fixture
def listed_products():
    """A is listed (unpublished) on web, B published on app, C listed nowhere."""
    a, b, c = (ProductFactory(title=t) for t in "ABC")
    va, vb, vc = (VariantFactory(product=p) for p in (a, b, c))
    ListingFactory(variant=va, channel=channel("web"), is_published=False)
    ListingFactory(variant=vb, channel=channel("app"), is_published=True)
    return {"products": (a, b, c), "variants": (va, vb, vc)}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("listed_on=web", [0]),
        ("listed_on=app", [1]),
        ("listed_on=store", []),
        ("published_on=web", []),
        ("published_on=app", [1]),
        ("published_on=__none__", [0, 2]),
        ("listed_on=web&published_on=__none__", [0]),
    ],
)
@pytest.mark.parametrize("model_name", ["product", "variant"])
def test_listing_filters(staff, listed_products, model_name, query, expected):
    rows = listed_products["products" if model_name == "product" else "variants"]

    assert result_pks(staff.get(url(model_name) + "?" + query)) == [rows[i].pk for i in expected]


def test_published_filter_offers_nowhere_and_every_sales_channel(staff):
    response = staff.get(url("product"))

    spec = next(
        s for s in response.context["cl"].filter_specs if s.parameter_name == "published_on"
    )
    assert [code for code, _ in spec.lookup_choices] == [
        "__none__",
        "app",
        "marketplace",
        "social-shop",
        "store",
        "web",
    ]


# --- Add pages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_name", "fields"),
    [
        (
            "product",
            ["handle", "title", "description", "brand", "category", "attributes", "is_active"],
        ),
        (
            "variant",
            ["product", "sku", "gtin", "option_values", "weight_grams", "base_price", "is_active"],
        ),
        (
            "channellisting",
            [
                "variant",
                "channel",
                "price",
                "currency",
                "is_published",
                "title",
                "description",
                "available_from",
                "available_until",
            ],
        ),
        ("channelfeed", ["channel", "format", "fields_text", "published_only"]),
    ],
)
def test_add_page_renders(staff, model_name, fields):
    response = staff.get(url(model_name, "add"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == fields


def test_product_add_page_has_both_inlines_without_forms(staff):
    response = staff.get(url("product", "add"))

    formsets = [inline.formset for inline in response.context["inline_admin_formsets"]]
    assert [(f.prefix, len(f.forms)) for f in formsets] == [("variants", 0), ("listings", 0)]


# --- Adding and changing products -------------------------------------------------------------


def test_add_product_with_two_variants_goes_through_the_services(staff):
    brand, category = BrandFactory(), CategoryFactory()
    gtin = make_gtin(1)
    data = product_data(
        brand=str(brand.pk),
        category=str(category.pk),
        variants=[
            {
                "sku": "tee-red-s",
                "gtin": gtin,
                "option_values": '{"size": "S"}',
                "initial-option_values": "{}",
                "weight_grams": "180",
                "base_price": "19.90",
                "is_active": "on",
            },
            {
                "sku": " tee red m ",
                "gtin": "",
                "option_values": '{"size": "M"}',
                "initial-option_values": "{}",
                "weight_grams": "",
                "base_price": "21.00",
                "is_active": "on",
            },
        ],
    )

    response = staff.post(url("product", "add"), data)

    assert response.status_code == 302
    assert response["Location"] == url("product")
    product = Product.objects.get()
    assert (product.handle, product.title, product.brand, product.category) == (
        "linen-shirt",
        "Linen shirt",
        brand,
        category,
    )
    assert product.attributes == {"material": "Linen"}
    assert list(
        product.variants.order_by("sku").values_list(
            "sku", "gtin", "option_values", "weight_grams", "base_price"
        )
    ) == [
        ("TEE-RED-M", None, {"size": "M"}, None, Decimal("21.00")),
        ("TEE-RED-S", gtin, {"size": "S"}, 180, Decimal("19.90")),
    ]
    assert list(OutboxEvent.objects.order_by("id").values_list("type", "subject_id")) == [
        ("catalog.product.created", str(product.pk)),
        ("catalog.variant.created", "TEE-RED-S"),
        ("catalog.variant.created", "TEE-RED-M"),
    ]
    assert ChannelListing.objects.count() == 0


def test_add_product_with_bad_gtin_check_digit_shows_error_and_creates_nothing(staff):
    good, bad = make_gtin(1), wrong_check_digit(make_gtin(2))
    data = product_data(
        brand=str(BrandFactory().pk),
        category=str(CategoryFactory().pk),
        variants=[
            {
                "sku": "TEE-S",
                "gtin": good,
                "option_values": "{}",
                "initial-option_values": "{}",
                "base_price": "10.00",
            },
            {
                "sku": "TEE-M",
                "gtin": bad,
                "option_values": "{}",
                "initial-option_values": "{}",
                "base_price": "10.00",
            },
        ],
    )

    response = staff.post(url("product", "add"), data)

    assert response.status_code == 200
    message = f"GTIN {bad} has a wrong check digit (expected {make_gtin(2)[-1]})."
    assert response.context["inline_admin_formsets"][0].formset.errors == [
        {},
        {"gtin": [message]},
    ]
    assert message in response.text
    assert (Product.objects.count(), Variant.objects.count(), OutboxEvent.objects.count()) == (
        0,
        0,
        0,
    )


def test_add_product_with_a_sku_taken_by_another_product_shows_error(staff):
    VariantFactory(sku="TEE-S")
    before = OutboxEvent.objects.count()
    data = product_data(
        brand=str(BrandFactory().pk),
        category=str(CategoryFactory().pk),
        variants=[
            {
                "sku": "tee-s",
                "gtin": "",
                "option_values": "{}",
                "initial-option_values": "{}",
                "base_price": "10.00",
            }
        ],
    )

    response = staff.post(url("product", "add"), data)

    assert response.status_code == 200
    assert response.context["inline_admin_formsets"][0].formset.errors == [
        {"sku": ["Variant with this SKU already exists."]}
    ]
    assert (Product.objects.count(), Variant.objects.count()) == (1, 1)
    assert OutboxEvent.objects.count() == before


def test_edit_listing_price_in_product_inline_emits_price_changed(staff):
    variant = VariantFactory(sku="TEE-RED-M")
    listing = ListingFactory(variant=variant, channel=channel("web"), price=Decimal("19.99"))
    product = variant.product
    data = product_data(product)
    data["listings-0-price"] = "24.50"

    response = staff.post(url("product", "change", product.pk), data)

    assert response.status_code == 302
    listing.refresh_from_db()
    assert (listing.price, listing.is_published) == (Decimal("24.50"), True)
    assert event_types() == [
        "catalog.product.updated",
        "catalog.listing.updated",
        "catalog.listing.price_changed",
    ]
    event = OutboxEvent.objects.get(type="catalog.listing.price_changed")
    assert (event.subject_type, event.subject_id) == ("variant", "TEE-RED-M")
    assert event.payload == {
        "sku": "TEE-RED-M",
        "channel": "web",
        "is_published": True,
        "price": "24.50",
        "currency": "EUR",
        "old_price": "19.99",
    }


def test_add_listing_in_product_inline_creates_it_through_the_service(staff):
    variant = VariantFactory(sku="TEE-RED-M", base_price=Decimal("19.99"))
    product = variant.product
    new_listing = {
        "product": str(product.pk),
        "variant": str(variant.pk),
        "channel": str(channel("app").pk),
        "price": "17.00",
        "currency": "eur",
        "title": "",
        "description": "",
        **BLANK_WINDOW,
    }

    response = staff.post(
        url("product", "change", product.pk), product_data(product, listings=[new_listing])
    )

    assert response.status_code == 302
    listing = ChannelListing.objects.get()
    assert (listing.variant, listing.product, listing.channel.code) == (variant, product, "app")
    assert (listing.price, listing.currency, listing.is_published) == (
        Decimal("17.00"),
        "EUR",
        False,
    )
    assert event_types() == ["catalog.product.updated", "catalog.listing.created"]


def test_emptied_attributes_are_saved_as_an_empty_dict(staff):
    variant = VariantFactory(option_values={"size": "M"})
    product = variant.product
    data = product_data(product, attributes="")
    data["variants-0-option_values"] = ""

    response = staff.post(url("product", "change", product.pk), data)

    assert response.status_code == 302
    product.refresh_from_db()
    variant.refresh_from_db()
    assert (product.attributes, variant.option_values) == ({}, {})


def test_refused_listing_in_product_inline_rolls_back_the_whole_save(staff):
    closed = ChannelFactory(code="closed-shop", kind=ChannelKind.WEB, is_active=False)
    variant = VariantFactory()
    product = variant.product
    new_listing = {
        "product": str(product.pk),
        "variant": str(variant.pk),
        "channel": str(closed.pk),
        "price": "17.00",
        "currency": "EUR",
        "title": "",
        "description": "",
        **BLANK_WINDOW,
    }
    change_url = url("product", "change", product.pk)

    response = staff.post(
        change_url, product_data(product, title="Renamed", listings=[new_listing])
    )

    assert response.status_code == 302
    assert response["Location"] == change_url
    assert messages_of(response) == [
        (
            "error",
            "Nothing was saved. Channel closed-shop is inactive. "
            "(channel: closed-shop is inactive.)",
        )
    ]
    product.refresh_from_db()
    assert product.title != "Renamed"
    assert (ChannelListing.objects.count(), OutboxEvent.objects.count()) == (0, 0)


# --- Variants and listings --------------------------------------------------------------------


def test_add_variant_goes_through_the_service(staff):
    product = ProductFactory()
    data = {
        "product": str(product.pk),
        "sku": "tee-blue-l",
        "gtin": "",
        "option_values": '{"size": "L"}',
        "initial-option_values": "{}",
        "weight_grams": "",
        "base_price": "12.00",
        "is_active": "on",
    }

    response = staff.post(url("variant", "add"), data)

    assert response.status_code == 302
    variant = Variant.objects.get()
    assert (variant.product, variant.sku, variant.base_price) == (
        product,
        "TEE-BLUE-L",
        Decimal("12.00"),
    )
    assert list(OutboxEvent.objects.values_list("type", "subject_id")) == [
        ("catalog.variant.created", "TEE-BLUE-L")
    ]


def test_variant_change_page_keeps_product_and_sku_fixed(staff):
    variant = VariantFactory()

    response = staff.get(url("variant", "change", variant.pk))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "product" not in form.fields
    assert form.fields["sku"].disabled is True


def test_add_listing_through_the_listing_form(staff):
    variant = VariantFactory(sku="TEE-RED-M")
    data = {
        "variant": str(variant.pk),
        "channel": str(channel("web").pk),
        "price": "18.00",
        "currency": "eur",
        "is_published": "on",
        "title": "Red tee",
        "description": "",
        **BLANK_WINDOW,
    }

    response = staff.post(url("channellisting", "add"), data)

    assert response.status_code == 302
    listing = ChannelListing.objects.get()
    assert (listing.product, listing.price, listing.currency, listing.is_published) == (
        variant.product,
        Decimal("18.00"),
        "EUR",
        True,
    )
    assert listing.published_at is not None
    assert event_types() == ["catalog.listing.created", "catalog.listing.published"]


def test_listing_on_an_inactive_channel_is_refused_and_changes_nothing(staff):
    closed = ChannelFactory(code="closed-shop", kind="web", is_active=False)
    variant = VariantFactory()
    data = {
        "variant": str(variant.pk),
        "channel": str(closed.pk),
        "price": "18.00",
        "currency": "EUR",
        "is_published": "on",
        "title": "",
        "description": "",
        **BLANK_WINDOW,
    }

    response = staff.post(url("channellisting", "add"), data)

    assert response.status_code == 302
    assert response["Location"] == url("channellisting", "add")
    assert messages_of(response) == [
        (
            "error",
            "Nothing was saved. Channel closed-shop is inactive. "
            "(channel: closed-shop is inactive.)",
        )
    ]
    assert (ChannelListing.objects.count(), OutboxEvent.objects.count()) == (0, 0)


def test_change_listing_price_through_the_listing_form(staff):
    listing = ListingFactory(variant=VariantFactory(sku="TEE-1"), price=Decimal("19.99"))
    data = {
        "price": "9.99",
        "currency": "EUR",
        "is_published": "on",
        "title": "",
        "description": "",
        **BLANK_WINDOW,
    }

    page = staff.get(url("channellisting", "change", listing.pk))
    response = staff.post(url("channellisting", "change", listing.pk), data)

    assert list(page.context["adminform"].form.fields) == [
        "price",
        "currency",
        "is_published",
        "title",
        "description",
        "available_from",
        "available_until",
    ]
    assert response.status_code == 302
    listing.refresh_from_db()
    assert (listing.price, listing.is_published) == (Decimal("9.99"), True)
    assert event_types() == ["catalog.listing.updated", "catalog.listing.price_changed"]


# --- Channel actions --------------------------------------------------------------------------


def listing_states():
    return {
        (sku, code): (published, price)
        for sku, code, published, price in ChannelListing.objects.values_list(
            "variant__sku", "channel__code", "is_published", "price"
        )
    }


@pytest.fixture
def catalog():
    """Product P1 (A1 listed unpublished on web, A2 not listed), P2 (B1 published on web), P3."""
    p1, p2, p3 = (ProductFactory(title=t, handle=t.lower()) for t in ("P1", "P2", "P3"))
    a1 = VariantFactory(product=p1, sku="A1")
    VariantFactory(product=p1, sku="A2", base_price=Decimal("30.00"))
    b1 = VariantFactory(product=p2, sku="B1")
    VariantFactory(product=p3, sku="C1")
    ListingFactory(variant=a1, channel=channel("web"), is_published=False, price=Decimal("15.00"))
    ListingFactory(variant=b1, channel=channel("web"), is_published=True, price=Decimal("20.00"))
    return {"products": (p1, p2, p3)}


def test_publish_products_on_the_chosen_channel(staff, catalog):
    p1, p2, _ = catalog["products"]

    response = run_action(
        staff, "product", "publish_on_channel", [p1.pk, p2.pk], channel_code="web"
    )

    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "success",
            "Published on Web shop: 1 listing(s) published, 1 created at the base price, "
            "1 already published.",
        )
    ]
    assert listing_states() == {
        ("A1", "web"): (True, Decimal("15.00")),
        ("A2", "web"): (True, Decimal("30.00")),
        ("B1", "web"): (True, Decimal("20.00")),
    }
    assert sorted(
        OutboxEvent.objects.filter(type="catalog.listing.published").values_list(
            "subject_id", flat=True
        )
    ) == ["A1", "A2"]


def test_publish_products_selected_in_a_sku_search(staff, catalog):
    p1 = catalog["products"][0]

    response = run_action(
        staff, "product", "publish_on_channel", [p1.pk], channel_code="app", query="?q=a"
    )

    assert messages_of(response) == [
        (
            "success",
            "Published on Mobile app: 0 listing(s) published, 2 created at the base price, "
            "0 already published.",
        )
    ]
    assert sorted(k for k in listing_states() if k[1] == "app") == [("A1", "app"), ("A2", "app")]


def test_unpublish_variants_on_the_chosen_channel(staff, catalog):
    a1, a2, b1 = (Variant.objects.get(sku=s) for s in ("A1", "A2", "B1"))

    response = run_action(
        staff, "variant", "unpublish_on_channel", [a1.pk, a2.pk, b1.pk], channel_code="web"
    )

    assert messages_of(response) == [("success", "Unpublished 1 listing(s) on Web shop.")]
    assert listing_states() == {
        ("A1", "web"): (False, Decimal("15.00")),
        ("B1", "web"): (False, Decimal("20.00")),
    }
    assert list(
        OutboxEvent.objects.filter(type="catalog.listing.unpublished").values_list(
            "subject_id", flat=True
        )
    ) == ["B1"]


def test_publish_listings_from_the_listing_changelist(staff, catalog):
    listing = ChannelListing.objects.get(variant__sku="A1")

    response = run_action(
        staff, "channellisting", "publish_on_channel", [listing.pk], channel_code="web"
    )

    assert messages_of(response) == [
        (
            "success",
            "Published on Web shop: 1 listing(s) published, 0 created at the base price, "
            "0 already published.",
        )
    ]
    assert listing_states()[("A1", "web")] == (True, Decimal("15.00"))


@pytest.mark.parametrize("action", ["publish_on_channel", "unpublish_on_channel"])
@pytest.mark.parametrize("channel_code", [None, ""])
def test_channel_action_without_a_channel_changes_nothing(staff, catalog, action, channel_code):
    before = listing_states()
    ids = [p.pk for p in catalog["products"]]

    response = run_action(staff, "product", action, ids, channel_code=channel_code)

    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "error",
            "Choose a channel in the action bar, then run the action again. Nothing changed.",
        )
    ]
    assert listing_states() == before
    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize("code", ["closed-shop", "email"])
def test_channel_action_offers_only_active_sales_channels(staff, catalog, code):
    ChannelFactory(code="closed-shop", kind=ChannelKind.WEB, is_active=False)
    before = listing_states()

    page = staff.get(url("product"))
    response = run_action(
        staff, "product", "publish_on_channel", [catalog["products"][2].pk], channel_code=code
    )

    offered = [str(v) for v, _ in page.context["action_form"].fields["channel"].choices if v]
    assert offered == ["app", "marketplace", "social-shop", "store", "web"]
    assert messages_of(response) == [("warning", "No action selected.")]
    assert listing_states() == before
    assert OutboxEvent.objects.count() == 0


def test_view_only_staff_cannot_run_channel_actions(clerk_client, catalog):
    client = clerk_client("view_product")
    before = listing_states()

    page = client.get(url("product"))
    response = run_action(
        client, "product", "publish_on_channel", [catalog["products"][2].pk], channel_code="web"
    )

    actions = [name for name, _ in page.context["action_form"].fields["action"].choices if name]
    assert actions == ["export_selected"]
    assert messages_of(response) == [("warning", "No action selected.")]
    assert listing_states() == before


# --- CSV export and import --------------------------------------------------------------------


def test_export_selected_products_as_csv(staff, catalog):
    p1 = catalog["products"][0]

    response = run_action(staff, "product", "export_selected", [p1.pk], query="?q=a")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="catalog-selection.csv"'
    rows = csv_rows(response)
    assert rows[0] == COLUMNS
    assert [(r[0], r[6], r[11], r[12], r[13]) for r in rows[1:]] == [
        (p1.handle, "A1", "web", "no", "15.00"),
        (p1.handle, "A2", "", "", ""),
    ]


def test_export_view_streams_the_whole_catalog(staff, catalog):
    response = staff.get(url("product", "export"))

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="catalog.csv"'
    rows = csv_rows(response)
    assert rows[0] == COLUMNS
    assert [(r[6], r[11], r[12]) for r in rows[1:]] == [
        ("A1", "web", "no"),
        ("A2", "", ""),
        ("B1", "web", "yes"),
        ("C1", "", ""),
    ]


def upload(text):
    return {"file": SimpleUploadedFile("catalog.csv", text.encode(), content_type="text/csv")}


def test_import_page_renders(staff):
    response = staff.get(url("product", "import"))

    assert response.status_code == 200
    assert ", ".join(COLUMNS) in response.text


def test_import_a_good_file(staff):
    text = (
        "handle,title,brand,category,sku,base_price,channel,published,price\n"
        "linen-shirt,Linen shirt,Acme,Apparel > Tops,tee-s,19.90,web,yes,21.00\n"
        "linen-shirt,Linen shirt,Acme,Apparel > Tops,tee-m,19.90,,,\n"
    )

    response = staff.post(url("product", "import"), upload(text))

    assert response.status_code == 302
    assert response["Location"] == url("product")
    assert messages_of(response) == [
        (
            "success",
            "Imported 2 rows: 1 products created, 0 updated; 2 variants created, 0 updated; "
            "1 listings created, 0 updated.",
        )
    ]
    product = Product.objects.get()
    assert (product.handle, product.brand.name, product.category.path) == (
        "linen-shirt",
        "Acme",
        "Apparel > Tops",
    )
    assert list(product.variants.order_by("sku").values_list("sku", flat=True)) == [
        "TEE-M",
        "TEE-S",
    ]
    assert listing_states() == {("TEE-S", "web"): (True, Decimal("21.00"))}


def test_import_a_bad_file_lists_every_error_and_writes_nothing(staff):
    VariantFactory(sku="KEEP-1")
    counts = (Product.objects.count(), Variant.objects.count(), Brand.objects.count())
    bad_gtin = wrong_check_digit(make_gtin(7))
    text = (
        "handle,title,brand,category,sku,gtin,base_price,channel\n"
        f"shirt,Shirt,Newco,Tops,S-1,{bad_gtin},10.00,web\n"
        "shirt,Shirt,Newco,Tops,S-2,,abc,nowhere\n"
        "shirt,Shirt,Newco,Tops,S-3,,5.00,web\n"
    )

    response = staff.post(url("product", "import"), upload(text))

    assert response.status_code == 200
    errors = [
        {
            "row": 2,
            "column": "gtin",
            "message": f"GTIN {bad_gtin} has a wrong check digit (expected {make_gtin(7)[-1]}).",
        },
        {"row": 3, "column": "base_price", "message": "'abc' is not a price >= 0."},
        {"row": 3, "column": "channel", "message": "Unknown channel 'nowhere'."},
    ]
    assert response.context["errors"] == errors
    assert messages_of(response) == [
        ("error", "The file was refused: 3 error(s); nothing was imported.")
    ]
    assert "3 errors — nothing was imported" in response.text
    for error in errors:
        assert f"<tr><td>{error['row']}</td><td>{error['column']}</td>" in response.text
    assert (Product.objects.count(), Variant.objects.count(), Brand.objects.count()) == counts
    assert (ChannelListing.objects.count(), OutboxEvent.objects.count()) == (0, 0)


def test_import_refuses_a_file_that_is_not_utf8(staff):
    response = staff.post(
        url("product", "import"),
        {"file": SimpleUploadedFile("catalog.csv", "handle\nchâle\n".encode("latin-1"))},
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {"file": ["The file is not UTF-8 text."]}
    assert Product.objects.count() == 0


def test_view_only_staff_cannot_import(clerk_client):
    client = clerk_client("view_product")

    response = client.get(url("product", "import"))

    assert response.status_code == 403


# --- Channel feeds ----------------------------------------------------------------------------


def feed_data(channel_code="web", fields_text="sku, price"):
    return {
        "channel": str(channel(channel_code).pk),
        "format": "csv",
        "fields_text": fields_text,
        "published_only": "on",
    }


def test_add_feed_with_chosen_fields(staff):
    response = staff.post(url("channelfeed", "add"), feed_data())

    assert response.status_code == 302
    feed = ChannelFeed.objects.get()
    assert (feed.channel.code, feed.format, feed.fields, feed.published_only) == (
        "web",
        "csv",
        ["sku", "price"],
        True,
    )


def test_change_feed_fields(staff):
    feed = ChannelFeed.objects.create(channel=channel("web"), fields=["sku"])

    page = staff.get(url("channelfeed", "change", feed.pk))
    response = staff.post(
        url("channelfeed", "change", feed.pk), feed_data(fields_text=" gtin,price ,currency")
    )

    assert page.context["adminform"].form["fields_text"].value() == "sku"
    assert response.status_code == 302
    feed.refresh_from_db()
    assert feed.fields == ["gtin", "price", "currency"]


@pytest.mark.parametrize(
    ("fields_text", "error"),
    [
        ("sku, colour", f"Unknown field(s): colour. Available: {', '.join(FEED_FIELDS)}."),
        ("sku, price, sku", "A field is listed twice."),
    ],
)
def test_feed_with_bad_fields_shows_a_form_error(staff, fields_text, error):
    response = staff.post(url("channelfeed", "add"), feed_data(fields_text=fields_text))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"fields_text": [error]}
    assert ChannelFeed.objects.count() == 0


@pytest.fixture
def web_feed():
    for sku, price in (("SKU-B", "12.50"), ("SKU-A", "10.00")):
        ListingFactory(variant=VariantFactory(sku=sku), price=Decimal(price))
    ListingFactory(variant=VariantFactory(sku="SKU-HIDDEN"), is_published=False)
    ListingFactory(variant=VariantFactory(sku="SKU-APP"), channel=channel("app"))
    return ChannelFeed.objects.create(channel=channel("web"), fields=["sku", "price"])


def test_generate_feed_action_writes_the_file(staff, settings, web_feed):
    response = run_action(staff, "channelfeed", "generate_now", [web_feed.pk])

    target = settings.OMNI_FEEDS_DIR / "web.csv"
    assert messages_of(response) == [("success", f"web: 2 rows written to {target}.")]
    assert target.read_bytes() == b"sku,price\r\nSKU-A,10.00\r\nSKU-B,12.50\r\n"
    web_feed.refresh_from_db()
    assert (web_feed.last_row_count, web_feed.last_file) == (2, str(target))
    assert event_types() == ["catalog.feed.generated"]


def test_download_feed(staff, web_feed):
    response = staff.get(url("channelfeed", "download", web_feed.pk))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="web.csv"'
    assert b"".join(response.streaming_content) == b"sku,price\r\nSKU-A,10.00\r\nSKU-B,12.50\r\n"


def test_feed_changelist_links_the_download(staff, web_feed):
    response = staff.get(url("channelfeed"))

    assert f'<a href="{url("channelfeed", "download", web_feed.pk)}">Download CSV</a>' in (
        response.text
    )


def test_staff_without_feed_permission_cannot_download(clerk_client, web_feed):
    client = clerk_client("view_product")

    assert client.get(url("channelfeed", "download", web_feed.pk)).status_code == 403


def test_download_of_a_missing_feed_is_404(staff):
    assert staff.get(url("channelfeed", "download", 999999)).status_code == 404


# --- Access -----------------------------------------------------------------------------------


ADMIN_PAGES = [
    ("product", "changelist"),
    ("product", "add"),
    ("product", "import"),
    ("product", "export"),
    ("variant", "changelist"),
    ("channellisting", "add"),
    ("channelfeed", "changelist"),
]


@pytest.mark.parametrize(("model_name", "view"), ADMIN_PAGES)
@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_non_staff_are_sent_to_the_login_page(client, django_user_model, model_name, view, who):
    if who == "customer":
        client.force_login(django_user_model.objects.create_user(username="shopper"))
    page = url(model_name, view)

    response = client.get(page)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={page}"


@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_non_staff_cannot_download_a_feed(client, django_user_model, web_feed, who):
    if who == "customer":
        client.force_login(django_user_model.objects.create_user(username="shopper"))
    page = url("channelfeed", "download", web_feed.pk)

    response = client.get(page)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={page}"


def test_non_staff_post_to_import_writes_nothing(client):
    text = "handle,title,brand,category,sku,base_price\nx,X,Acme,Tops,X-1,1.00\n"

    response = client.post(url("product", "import"), upload(text))

    assert response.status_code == 302
    assert Product.objects.count() == 0
