"""Catalog reads that more than one caller needs."""

import json

from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from catalog.csvformat import COLUMNS, format_pairs
from catalog.models import ChannelListing, Product, Variant
from omni.db import PreparedQuery
from omni.formats import api_datetime, api_money

VARIANT_DETAIL_FIELDS = (
    "id",
    "sku",
    "gtin",
    "options_text",
    "weight_grams",
    "base_price",
    "is_active",
    "updated_at",
    "product__handle",
    "product__title",
    "product__brand__name",
    "product__category__path",
    "listings__channel__code",
    "listings__is_published",
    "listings__price",
    "listings__currency",
    "listings__title",
    "listings__available_from",
    "listings__available_until",
    "listings__updated_at",
)


_variant_detail_query = PreparedQuery(
    lambda sku: (
        Variant.objects.filter(sku=sku)
        # The options repeat on every listing row: fetched as text, decoded once.
        .annotate(options_text=Cast("option_values", TextField()))
        .order_by("listings__channel__code")
        .values_list(*VARIANT_DETAIL_FIELDS)
    )
)


def variant_detail_by_sku(sku: str) -> dict | None:
    """A variant with its product summary and every channel listing, in one query.

    This is the hottest read of integrators (POS and web shops look items up by SKU), so it
    joins instead of prefetching (one row per listing, folded here) and returns the API's
    wire format directly (money as strings, datetimes in ISO 8601): the view sends it without
    a serializer pass, which would cost more than the query.
    """
    rows = _variant_detail_query.rows(sku)
    if not rows:
        return None
    first = rows[0]
    title = first[9]
    zone = timezone.get_current_timezone()
    return {
        "sku": first[1],
        "gtin": first[2],
        "option_values": json.loads(first[3]),
        "weight_grams": first[4],
        "base_price": api_money(first[5]),
        "is_active": first[6],
        "updated_at": api_datetime(first[7], zone),
        "product": {"handle": first[8], "title": title, "brand": first[10], "category": first[11]},
        "listings": [
            {
                "channel": r[12],
                "is_published": r[13],
                "price": api_money(r[14]),
                "currency": r[15],
                "title": r[16] or title,
                "available_from": api_datetime(r[17], zone),
                "available_until": api_datetime(r[18], zone),
                "updated_at": api_datetime(r[19], zone),
            }
            for r in rows
            if r[12] is not None
        ],
    }


def variant_by_code(code: str) -> Variant | None:
    """A variant by SKU or by barcode (GTIN), as a scanner or a clerk would type it."""
    from catalog.validators import normalize_gtin, normalize_sku

    gtin = normalize_gtin(code)
    query = Q(sku=normalize_sku(code))
    if gtin and gtin.isdigit():
        query |= Q(gtin=gtin)
    return Variant.objects.select_related("product").filter(query).first()


def products_listed_on(channel_code: str, *, published: bool | None = None):
    listings = ChannelListing.objects.filter(channel__code=channel_code)
    if published is not None:
        listings = listings.filter(is_published=published)
    return Product.objects.filter(pk__in=listings.values("product_id"))


def listings_available_now(queryset=None):
    now = timezone.now()
    queryset = ChannelListing.objects.all() if queryset is None else queryset
    return queryset.filter(
        Q(available_from__isnull=True) | Q(available_from__lte=now),
        Q(available_until__isnull=True) | Q(available_until__gt=now),
        is_published=True,
    )


EXPORT_FIELDS = (
    "product__handle",
    "product__title",
    "product__brand__name",
    "product__category__path",
    "product__description",
    "product__attributes",
    "sku",
    "gtin",
    "option_values",
    "weight_grams",
    "base_price",
    "listings__channel__code",
    "listings__is_published",
    "listings__price",
    "listings__currency",
    "listings__title",
    "listings__description",
    "listings__available_from",
    "listings__available_until",
)


def catalog_export_rows(products=None, *, chunk_size: int = 2000):
    """Rows of the catalog CSV (see ``catalog.csvformat``), streamed in chunks."""
    variants = Variant.objects.all()
    if products is not None:
        variants = variants.filter(product__in=products)
    query = variants.order_by("product__handle", "sku", "listings__channel__code").values_list(
        *EXPORT_FIELDS
    )
    yield COLUMNS
    for r in query.iterator(chunk_size=chunk_size):
        has_listing = r[11] is not None
        yield [
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            format_pairs(r[5] or {}),
            r[6],
            r[7] or "",
            format_pairs(r[8] or {}),
            "" if r[9] is None else r[9],
            r[10],
            r[11] or "",
            ("yes" if r[12] else "no") if has_listing else "",
            r[13] if has_listing else "",
            r[14] or "",
            r[15] or "",
            r[16] or "",
            r[17].isoformat() if r[17] else "",
            r[18].isoformat() if r[18] else "",
        ]


def listing_to_dict(listing: ChannelListing, product_title: str) -> dict:
    """A listing as the API shows it (its channel must be loaded)."""
    return {
        "channel": listing.channel.code,
        "is_published": listing.is_published,
        "price": listing.price,
        "currency": listing.currency,
        "title": listing.title or product_title,
        "available_from": listing.available_from,
        "available_until": listing.available_until,
        "updated_at": listing.updated_at,
    }


def variant_to_detail(variant: Variant) -> dict:
    """The same shape as ``variant_detail_by_sku`` for a variant loaded by ``variant_list``."""
    product = variant.product
    return {
        "sku": variant.sku,
        "gtin": variant.gtin,
        "option_values": variant.option_values,
        "weight_grams": variant.weight_grams,
        "base_price": variant.base_price,
        "is_active": variant.is_active,
        "updated_at": variant.updated_at,
        "product": {
            "handle": product.handle,
            "title": product.title,
            "brand": product.brand.name,
            "category": product.category.path,
        },
        "listings": [
            listing_to_dict(listing, product.title)
            for listing in sorted(variant.listings.all(), key=lambda x: x.channel.code)
        ],
    }


def variant_list():
    """Variants with everything ``variant_to_detail`` reads: two queries per page."""
    from django.db.models import Prefetch

    return Variant.objects.select_related("product__brand", "product__category").prefetch_related(
        Prefetch("listings", queryset=ChannelListing.objects.select_related("channel"))
    )


def product_list():
    from django.db.models import Prefetch

    return Product.objects.select_related("brand", "category").prefetch_related(
        Prefetch(
            "variants",
            queryset=Variant.objects.order_by("sku").prefetch_related(
                Prefetch("listings", queryset=ChannelListing.objects.select_related("channel"))
            ),
        )
    )
