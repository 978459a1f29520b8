"""Per-channel feeds: a channel's listings in the format and with the fields it needs.

``FEED_FIELDS`` maps each field a feed may carry to the column it reads. Later apps register
more (inventory adds the quantity a channel may promise) with ``register_feed_field``.
"""

import csv
import json
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from catalog.models import ChannelFeed, ChannelListing, FeedFormat
from catalog.selectors import listings_available_now
from omni.exceptions import ValidationFailed


@dataclass(frozen=True)
class FeedField:
    name: str
    path: str | None = None  # a values() path on ChannelListing
    compute: object = None  # or a function (row, now) -> value
    help: str = ""


FEED_FIELDS: dict[str, FeedField] = {}


def register_feed_field(field: FeedField) -> None:
    FEED_FIELDS[field.name] = field


for _f in (
    FeedField("sku", "variant__sku", help="SKU, identical on every channel"),
    FeedField("gtin", "variant__gtin", help="Barcode"),
    FeedField("handle", "product__handle", help="Product reference"),
    FeedField(
        "title",
        compute=lambda r, now: r["title"] or r["product__title"],
        help="Channel title, else the product title",
    ),
    FeedField(
        "description",
        compute=lambda r, now: r["description"] or r["product__description"],
        help="Channel description, else the product description",
    ),
    FeedField("brand", "product__brand__name"),
    FeedField("category", "product__category__path"),
    FeedField("options", "variant__option_values", help="Option values (size, colour, ...)"),
    FeedField("price", "price"),
    FeedField("currency", "currency"),
    FeedField("published", "is_published"),
    FeedField(
        "available",
        compute=lambda r, now: bool(
            r["is_published"]
            and (r["available_from"] is None or r["available_from"] <= now)
            and (r["available_until"] is None or now < r["available_until"])
        ),
        help="Published and within its availability window now",
    ),
    FeedField("available_from", "available_from"),
    FeedField("available_until", "available_until"),
    FeedField("updated_at", "updated_at"),
):
    register_feed_field(_f)

DEFAULT_FIELDS = ["sku", "gtin", "title", "brand", "category", "price", "currency", "available"]
# Columns every computed field may read.
BASE_PATHS = (
    "title",
    "description",
    "product__title",
    "product__description",
    "is_published",
    "available_from",
    "available_until",
)


def feed_validate_fields(fields) -> None:
    """Refuse a field list that is not a list of known field names, each given once."""
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ValidationFailed(
            "Feed fields must be a list of field names.",
            extra={"fields": [f"Choose from: {', '.join(FEED_FIELDS)}."]},
        )
    unknown = [f for f in fields if f not in FEED_FIELDS]
    if unknown:
        raise ValidationFailed(
            f"Unknown feed fields: {', '.join(unknown)}.",
            extra={"fields": [f"Choose from: {', '.join(FEED_FIELDS)}."]},
        )
    repeated = [f for index, f in enumerate(fields) if f in fields[:index]]
    if repeated:
        raise ValidationFailed(
            f"Feed fields listed twice: {', '.join(repeated)}.",
            extra={"fields": ["A field is listed twice."]},
        )


def feed_fields_for(feed: ChannelFeed) -> list[str]:
    """The feed's fields in order (the default set when none are configured), validated."""
    fields = feed.fields or list(DEFAULT_FIELDS)
    feed_validate_fields(fields)
    return list(fields)


def feed_content_type(feed: ChannelFeed) -> str:
    return "text/csv; charset=utf-8" if feed.format == FeedFormat.CSV else "application/json"


def feed_rows(feed: ChannelFeed, *, chunk_size: int = 2000):
    """Yield one dict per listing of the feed's channel, with the feed's fields in order."""
    names = feed_fields_for(feed)
    fields = [FEED_FIELDS[n] for n in names]
    paths = sorted({f.path for f in fields if f.path} | set(BASE_PATHS))
    listings = ChannelListing.objects.filter(channel_id=feed.channel_id)
    if feed.published_only:
        listings = listings_available_now(listings)
    now = timezone.now()
    for row in listings.order_by("variant__sku").values(*paths).iterator(chunk_size=chunk_size):
        yield {f.name: (f.compute(row, now) if f.compute else row[f.path]) for f in fields}


def _csv_value(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class _Echo:
    def write(self, value):
        return value


def feed_chunks(feed: ChannelFeed):
    """The feed as text chunks, for streaming to a file or an HTTP response.

    The fields are checked here, before the first chunk: a bad configuration is refused with
    ``ValidationFailed`` instead of breaking off a response that has already started.
    """
    names = feed_fields_for(feed)
    return _chunks(feed, names)


def _chunks(feed: ChannelFeed, names: list[str]):
    if feed.format == FeedFormat.CSV:
        writer = csv.writer(_Echo())
        yield writer.writerow(names)
        for row in feed_rows(feed):
            yield writer.writerow([_csv_value(row[n]) for n in names])
        return
    encoder = DjangoJSONEncoder()
    channel, generated = json.dumps(feed.channel.code), encoder.encode(timezone.now())
    yield f'{{"channel": {channel}, "generated_at": {generated}, "items": ['

    first = True
    for row in feed_rows(feed):
        yield ("" if first else ",") + "\n" + encoder.encode(row)
        first = False
    yield "\n]}\n"
