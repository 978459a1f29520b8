"""Feed generation: write each sales channel's feed file."""

import logging
import os
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.feeds import feed_chunks, feed_validate_fields
from catalog.models import ChannelFeed
from omni.exceptions import OmniError, ValidationFailed
from omni.models import Channel
from omni.services import outbox_emit

logger = logging.getLogger(__name__)


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
    feed_validate_fields(fields)


def channel_feed_generate(*, channel: Channel) -> ChannelFeed:
    """Write the channel's feed to ``OMNI_FEEDS_DIR/<code>.<format>`` (atomically replaced)."""
    feed = channel_feed_get(channel=channel)
    chunks = feed_chunks(feed)  # refuses bad fields before any file is touched
    directory = Path(settings.OMNI_FEEDS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{channel.code}.{feed.format}"
    tmp = target.with_suffix(target.suffix + ".tmp")
    lines = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
                lines += 1
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # the previous feed file stays as it was
        raise
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
    """Write the feed of every active sales channel; return those written.

    A feed refused for its settings (unknown fields) is logged and skipped: one channel's bad
    setting must not leave every channel after it in the alphabet with a stale feed.
    """
    feeds = []
    for channel in Channel.objects.sales().active().order_by("code"):
        try:
            feeds.append(channel_feed_generate(channel=channel))
        except OmniError as exc:
            logger.error("The feed of channel %s was not generated: %s", channel.code, exc)
    return feeds
