"""Feed generation: write each sales channel's feed file."""

import os
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.feeds import FEED_FIELDS, feed_chunks
from catalog.models import ChannelFeed
from omni.exceptions import ValidationFailed
from omni.models import Channel
from omni.services import outbox_emit


def channel_feed_get(*, channel: Channel) -> ChannelFeed:
    if not channel.is_sales:
        raise ValidationFailed(
            f"{channel.code} is not a sales channel and has no feed.",
            code="not_a_sales_channel",
            extra={"channel": [f"{channel.code} is not a sales channel."]},
        )
    feed, _ = ChannelFeed.objects.select_related("channel").get_or_create(channel=channel)
    return feed


def channel_feed_validate_fields(fields: list) -> None:
    unknown = [f for f in fields if f not in FEED_FIELDS]
    if not isinstance(fields, list) or unknown:
        raise ValidationFailed(
            f"Unknown feed fields: {', '.join(map(str, unknown))}.",
            extra={"fields": [f"Choose from: {', '.join(FEED_FIELDS)}."]},
        )


def channel_feed_generate(*, channel: Channel) -> ChannelFeed:
    """Write the channel's feed to ``OMNI_FEEDS_DIR/<code>.<format>`` (atomically replaced)."""
    feed = channel_feed_get(channel=channel)
    channel_feed_validate_fields(list(feed.fields))
    directory = Path(settings.OMNI_FEEDS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{channel.code}.{feed.format}"
    tmp = target.with_suffix(target.suffix + ".tmp")
    lines = 0
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        for chunk in feed_chunks(feed):
            handle.write(chunk)
            lines += 1
    os.replace(tmp, target)
    rows = max(lines - (1 if feed.format == "csv" else 2), 0)
    with transaction.atomic():
        ChannelFeed.objects.filter(pk=feed.pk).update(
            last_generated_at=timezone.now(), last_row_count=rows, last_file=str(target)
        )
        outbox_emit(
            type="catalog.feed.generated",
            subject_type="channel",
            subject_id=channel.code,
            payload={"file": str(target), "rows": rows, "format": feed.format},
        )
    feed.refresh_from_db()
    return feed


def channel_feed_generate_all() -> list[ChannelFeed]:
    return [
        channel_feed_generate(channel=channel)
        for channel in Channel.objects.sales().active().order_by("code")
    ]
