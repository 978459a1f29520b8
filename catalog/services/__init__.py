"""Catalog services: every write to the catalog goes through one of these functions."""

from .feeds import channel_feed_generate, channel_feed_generate_all
from .imports import CatalogImportResult, catalog_import_csv
from .listings import listing_price_change, listing_publish, listing_unpublish, listing_upsert
from .products import (
    brand_get_or_create,
    category_ensure_path,
    category_save,
    product_create,
    product_update,
    variant_create,
    variant_update,
)

__all__ = [
    "CatalogImportResult",
    "brand_get_or_create",
    "catalog_import_csv",
    "category_ensure_path",
    "category_save",
    "channel_feed_generate",
    "channel_feed_generate_all",
    "listing_price_change",
    "listing_publish",
    "listing_unpublish",
    "listing_upsert",
    "product_create",
    "product_update",
    "variant_create",
    "variant_update",
]
