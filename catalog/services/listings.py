"""Per-channel listings: publish, unpublish, upsert and price changes."""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import ChannelListing, Product, Variant
from catalog.validators import normalize_currency
from omni.exceptions import ValidationFailed
from omni.models import Channel
from omni.services import outbox_emit, outbox_emit_many

from .common import clean_instance, to_decimal
from .products import variant_lock

UNSET = object()


def _require_sales_channel(channel: Channel) -> None:
    if not channel.is_sales:
        raise ValidationFailed(
            f"{channel.code} is a messaging channel; products are listed on sales channels only.",
            code="not_a_sales_channel",
            extra={"channel": [f"{channel.code} is not a sales channel."]},
        )
    if not channel.is_active:
        raise ValidationFailed(
            f"Channel {channel.code} is inactive.",
            code="channel_inactive",
            extra={"channel": [f"{channel.code} is inactive."]},
        )


def channel_currency(channel: Channel) -> str:
    return channel.currency or settings.OMNI_DEFAULT_CURRENCY


def _price(value, field="price") -> Decimal:
    price = to_decimal(value, field=field)
    if price < 0:
        raise ValidationFailed("A price cannot be negative.", extra={field: ["Must be >= 0."]})
    try:
        return price.quantize(Decimal("0.01"))
    except InvalidOperation:  # more digits than the context holds: far above max_digits
        raise ValidationFailed(
            f"{value!r} is too large for a price.", extra={field: ["Too large."]}
        ) from None


def _listing_payload(listing: ChannelListing, sku: str) -> dict:
    return {
        "sku": sku,
        "channel": listing.channel.code,
        "is_published": listing.is_published,
        "price": str(listing.price),
        "currency": listing.currency,
    }


@dataclass
class PublishResult:
    created: int = 0
    published: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.published


def _variant_ids(variants) -> list[int]:
    ids = [v.pk if isinstance(v, Variant) else int(v) for v in variants]
    return sorted(set(ids))


def _mark_listings_changed(variant_ids: list[int], channel: Channel, event: str, now) -> None:
    """After a set-based listing change: the variants and products count as changed (for the
    changes feeds) and each variant gets its outbox event."""
    Variant.objects.filter(pk__in=variant_ids).update(updated_at=now)
    Product.objects.filter(variants__pk__in=variant_ids).update(updated_at=now)
    skus = dict(Variant.objects.filter(pk__in=variant_ids).values_list("pk", "sku"))
    outbox_emit_many(
        [
            {
                "type": event,
                "subject_type": "variant",
                "subject_id": skus[pk],
                "payload": {"sku": skus[pk], "channel": channel.code},
            }
            for pk in variant_ids
        ]
    )


@transaction.atomic
def listing_publish(*, variants, channel: Channel, price=None, currency=None) -> PublishResult:
    """Publish ``variants`` on ``channel``, creating listings that are missing.

    New listings take ``price`` or else the variant's base price, in ``currency`` or else the
    channel's currency. Existing listings keep their price. Set-based.
    """
    _require_sales_channel(channel)
    ids = _variant_ids(variants)
    variant_lock(ids)
    now = timezone.now()
    currency = normalize_currency(currency) or channel_currency(channel)
    if price is not None:
        price = _price(price)
    existing = ChannelListing.objects.filter(channel=channel, variant_id__in=ids)
    existing_ids = set(existing.values_list("variant_id", flat=True))
    to_publish = list(existing.filter(is_published=False).values_list("variant_id", flat=True))
    existing.filter(variant_id__in=to_publish).update(
        is_published=True, published_at=now, updated_at=now
    )
    new_variants = list(
        Variant.objects.filter(pk__in=set(ids) - existing_ids).values_list(
            "pk", "product_id", "base_price"
        )
    )
    if new_variants:
        probe = ChannelListing(
            variant_id=new_variants[0][0],
            product_id=new_variants[0][1],
            channel=channel,
            price=price if price is not None else new_variants[0][2],
            currency=currency,
        )
        clean_instance(probe, what="Listing", exclude=["variant", "product"], unique=False)
    ChannelListing.objects.bulk_create(
        [
            ChannelListing(
                variant_id=pk,
                product_id=product_id,
                channel=channel,
                is_published=True,
                published_at=now,
                price=price if price is not None else base_price,
                currency=currency,
            )
            for pk, product_id, base_price in new_variants
        ],
        batch_size=2000,
    )
    changed = to_publish + [pk for pk, _, _ in new_variants]
    _mark_listings_changed(changed, channel, "catalog.listing.published", now)
    return PublishResult(
        created=len(new_variants),
        published=len(to_publish),
        unchanged=len(ids) - len(changed),
    )


@transaction.atomic
def listing_unpublish(*, variants, channel: Channel) -> int:
    """Unpublish ``variants`` on ``channel``; returns how many listings changed."""
    if not channel.is_sales:  # an inactive sales channel may still be cleared
        _require_sales_channel(channel)
    ids = _variant_ids(variants)
    variant_lock(ids)
    now = timezone.now()
    listings = ChannelListing.objects.filter(channel=channel, variant_id__in=ids, is_published=True)
    changed = list(listings.values_list("variant_id", flat=True))
    ChannelListing.objects.filter(channel=channel, variant_id__in=changed).update(
        is_published=False, updated_at=now
    )
    _mark_listings_changed(changed, channel, "catalog.listing.unpublished", now)
    return len(changed)


@transaction.atomic
def listing_upsert(
    *,
    variant: Variant,
    channel: Channel,
    price=UNSET,
    currency=UNSET,
    is_published=UNSET,
    title=UNSET,
    description=UNSET,
    available_from=UNSET,
    available_until=UNSET,
) -> ChannelListing:
    """Create or change the listing of ``variant`` on ``channel``.

    Omitted fields keep their value."""
    _require_sales_channel(channel)
    variant_lock([variant.pk])
    listing = (
        ChannelListing.objects.select_for_update().filter(variant=variant, channel=channel).first()
    )
    created = listing is None
    if created:
        listing = ChannelListing(
            variant=variant,
            product_id=variant.product_id,
            channel=channel,
            price=variant.base_price,
            currency=channel_currency(channel),
        )
    old_price, old_published = listing.price, listing.is_published
    if price is not UNSET:
        listing.price = _price(price)
    if currency is not UNSET:
        listing.currency = normalize_currency(currency) or channel_currency(channel)
    if title is not UNSET:
        listing.title = title or ""
    if description is not UNSET:
        listing.description = description or ""
    if available_from is not UNSET:
        listing.available_from = available_from
    if available_until is not UNSET:
        listing.available_until = available_until
    if is_published is not UNSET:
        listing.is_published = bool(is_published)
    if listing.is_published and (created or not old_published):
        listing.published_at = timezone.now()
    # A database check constraint; clean_instance(unique=False) does not run constraints.
    if (
        listing.available_from is not None
        and listing.available_until is not None
        and listing.available_until <= listing.available_from
    ):
        raise ValidationFailed(
            "A listing's availability must end after it starts.",
            extra={"available_until": ["Must be after available_from."]},
        )
    clean_instance(listing, what=f"Listing of {variant.sku} on {channel.code}", unique=False)
    listing.save()
    Variant.objects.filter(pk=variant.pk).update(updated_at=listing.updated_at)
    Product.objects.filter(pk=variant.product_id).update(updated_at=listing.updated_at)
    payload = _listing_payload(listing, variant.sku)
    events = ["catalog.listing.created" if created else "catalog.listing.updated"]
    if listing.is_published != (old_published if not created else False):
        events.append(
            "catalog.listing.published" if listing.is_published else "catalog.listing.unpublished"
        )
    if not created and listing.price != old_price:
        events.append("catalog.listing.price_changed")
        payload["old_price"] = str(old_price)
    for event in events:
        outbox_emit(type=event, subject_type="variant", subject_id=variant.sku, payload=payload)
    return listing


@transaction.atomic
def listing_price_change(*, listing: ChannelListing, price, currency=None) -> ChannelListing:
    return listing_upsert(
        variant=listing.variant,
        channel=listing.channel,
        price=price,
        currency=currency if currency is not None else listing.currency,
    )
