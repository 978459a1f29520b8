"""The rollups behind the dashboards, refreshed by the hourly task.

``ChannelDailyStat`` (day x channel) and ``CampaignDailyStat`` (day x campaign) are
recomputed for the last days (30 on the first run, then 2) from the source rows, one
``GROUP BY`` query per source and time column (messages are grouped by campaign and channel
at once, so each of their time columns is read once), and upserted on their unique (day,
channel) and (day, campaign) keys: every channel and campaign gets a row for every day of
the range, zeros included, so a re-run writes the same rows and a figure that went back to
zero (an order cancelled) is corrected. Days are calendar days in the site's time zone
(``TIME_ZONE``).

Each figure is counted on the day its event happened: messages on the day they were sent,
delivered or clicked, orders and attributed revenue on the day they were placed, conversions
on the day of the converting order, enrolments on the day of enrolment.

``AudienceSnapshot`` records, at most once per hour (a re-run in the same hour replaces it),
how many customers there are, how many used two or more *sales* channels (from
``customers.CustomerChannelStat``; messaging channels are left out, an opt-in by email is not
shopping), the histogram of sales channels used and the preferred messaging channels.

Only portable SQL: ``COUNT(DISTINCT)``, ``SUM``, date truncation and correlated subqueries,
which Django compiles for PostgreSQL and for SQLite (``make run``) alike.
"""

from collections import defaultdict
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from campaigns.models import (
    Attribution,
    AudienceSnapshot,
    Campaign,
    CampaignDailyStat,
    ChannelDailyStat,
    Enrolment,
    Message,
    MessageStatus,
    SuppressionReason,
)
from customers.models import Customer, CustomerChannelStat, Touchpoint
from omni.models import SALES_KINDS, Channel
from orders.models import Order, OrderStatus

FIRST_RUN_DAYS = 30
DEFAULT_DAYS = 2
BATCH_SIZE = 2000

CHANNEL_FIGURES = (
    "active_customers",
    "orders",
    "revenue",
    "buyers",
    "messages_sent",
    "messages_delivered",
    "clicks",
    "attributed_orders",
    "attributed_revenue",
)
CAMPAIGN_FIGURES = (
    "enrolled",
    "held_out",
    "sent",
    "delivered",
    "clicked",
    "suppressed",
    "converted",
    "holdout_converted",
    "revenue",
)
MONEY = ("revenue", "attributed_revenue")


def _grouped(queryset, time_field: str, keys: tuple[str, ...], start, end, tz, **figures):
    """Rows of ``queryset`` whose ``time_field`` falls in ``[start, end)``, grouped by the day
    in ``tz`` and by ``keys``, with ``figures``: one query. Yields ``(day, *keys, values)``."""
    rows = (
        queryset.filter(**{f"{time_field}__gte": start, f"{time_field}__lt": end})
        .annotate(day=TruncDate(time_field, tzinfo=tz))
        .order_by()
        .values("day", *keys)
        .annotate(**figures)
    )
    for row in rows:
        yield (row["day"], *(row[k] for k in keys), {name: row[name] for name in figures})


def _add(stats: dict, key, values: dict, rename: dict | None = None) -> None:
    """Add ``values`` to the figures of ``stats[key]`` (under their ``rename``d names)."""
    target = stats[key]
    for name, value in values.items():
        name = (rename or {}).get(name, name)
        target[name] = target.get(name, 0) + (value or 0)


def _range(days: int, now: datetime, tz):
    """The first day, the days, and the start and end instants of the last ``days`` days."""
    today = timezone.localtime(now, tz).date()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, time.min), tz)
    end = timezone.make_aware(datetime.combine(today + timedelta(days=1), time.min), tz)
    return [first + timedelta(days=n) for n in range(days)], start, end


def stats_compute(*, start, end, tz) -> tuple[dict, dict]:
    """``({(day, channel_id): figures}, {(day, campaign_id): figures})`` over
    ``[start, end)``. Message and attribution figures are grouped by channel and campaign at
    once (one scan each), then summed both ways."""
    channels: dict = defaultdict(dict)
    campaigns: dict = defaultdict(dict)
    sales = Channel.objects.filter(kind__in=SALES_KINDS).values("pk")
    for day, channel_id, values in _grouped(
        Touchpoint.objects.filter(channel_id__in=sales),
        "occurred_at",
        ("channel_id",),
        start,
        end,
        tz,
        active_customers=Count("customer_id", distinct=True),
    ):
        _add(channels, (day, channel_id), values)
    for day, channel_id, values in _grouped(
        Order.objects.exclude(status=OrderStatus.CANCELLED),
        "placed_at",
        ("channel_id",),
        start,
        end,
        tz,
        orders=Count("pk"),
        revenue=Sum("total"),
        buyers=Count("customer_id", distinct=True),
    ):
        _add(channels, (day, channel_id), values)
    for time_field, channel_name, campaign_name in (
        ("sent_at", "messages_sent", "sent"),
        ("delivered_at", "messages_delivered", "delivered"),
        ("clicked_at", "clicks", "clicked"),
    ):
        for day, campaign_id, channel_id, values in _grouped(
            Message.objects.all(),
            time_field,
            ("campaign_id", "channel_id"),
            start,
            end,
            tz,
            n=Count("pk"),
        ):
            _add(campaigns, (day, campaign_id), values, {"n": campaign_name})
            if channel_id is not None:
                _add(channels, (day, channel_id), values, {"n": channel_name})
    for day, campaign_id, channel_id, values in _grouped(
        Attribution.objects.all(),
        "placed_at",
        ("campaign_id", "channel_id"),
        start,
        end,
        tz,
        n=Count("pk"),
        amount=Sum("revenue"),
    ):
        _add(campaigns, (day, campaign_id), {"revenue": values["amount"]})
        _add(
            channels,
            (day, channel_id),
            values,
            {"n": "attributed_orders", "amount": "attributed_revenue"},
        )
    for day, campaign_id, values in _grouped(
        Enrolment.objects.all(),
        "enrolled_at",
        ("campaign_id",),
        start,
        end,
        tz,
        enrolled=Count("pk"),
        held_out=Count("pk", filter=Q(holdout=True)),
    ):
        _add(campaigns, (day, campaign_id), values)
    for day, campaign_id, values in _grouped(
        Enrolment.objects.all(),
        "converted_at",
        ("campaign_id",),
        start,
        end,
        tz,
        converted=Count("pk", filter=Q(holdout=False)),
        holdout_converted=Count("pk", filter=Q(holdout=True)),
    ):
        _add(campaigns, (day, campaign_id), values)
    # Held-out customers are counted by ``held_out``, not as suppressed messages.
    for day, campaign_id, values in _grouped(
        Message.objects.filter(status=MessageStatus.SUPPRESSED).exclude(
            reason=SuppressionReason.HOLDOUT
        ),
        "created_at",
        ("campaign_id",),
        start,
        end,
        tz,
        suppressed=Count("pk"),
    ):
        _add(campaigns, (day, campaign_id), values)
    return channels, campaigns


def _upsert(model, key_field: str, keys, days, stats: dict, figures, now) -> int:
    """One row per day and key, zeros where nothing happened, inserted or updated on the
    model's unique (day, key). Returns how many rows were written."""
    rows = [
        model(
            day=day,
            refreshed_at=now,
            **{f"{key_field}_id": key},
            **{
                name: stats.get((day, key), {}).get(name)
                or (Decimal("0.00") if name in MONEY else 0)
                for name in figures
            },
        )
        for day in days
        for key in keys
    ]
    model.objects.bulk_create(
        rows,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["day", key_field],
        update_fields=[*figures, "refreshed_at"],
    )
    return len(rows)


def audience_snapshot_take(*, now: datetime | None = None) -> AudienceSnapshot:
    """How customers use channels now: customers, those on two or more sales channels, the
    histogram of sales channels used, the preferred messaging channels. One snapshot per
    hour: a second run in the same hour replaces the first."""
    now = now or timezone.now()
    customers = Customer.objects.filter(erased_at__isnull=True)
    used = (
        CustomerChannelStat.objects.filter(
            customer_id=OuterRef("pk"), channel__kind__in=SALES_KINDS
        )
        .order_by()
        .values("customer_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    histogram = {
        str(row["used"]): row["customers"]
        for row in customers.annotate(used=Coalesce(Subquery(used), Value(0)))
        .order_by()
        .values("used")
        .annotate(customers=Count("pk"))
    }
    preferred = {
        (row["preferred_channel__code"] or "none"): row["customers"]
        for row in customers.order_by()
        .values("preferred_channel__code")
        .annotate(customers=Count("pk"))
    }
    total = sum(histogram.values())
    multichannel = sum(n for used_count, n in histogram.items() if int(used_count) >= 2)
    hour = now.replace(minute=0, second=0, microsecond=0)
    AudienceSnapshot.objects.filter(
        taken_at__gte=hour, taken_at__lt=hour + timedelta(hours=1)
    ).delete()
    return AudienceSnapshot.objects.create(
        taken_at=now,
        customers=total,
        multichannel_customers=multichannel,
        channels_used=dict(sorted(histogram.items(), key=lambda item: int(item[0]))),
        preferred_channels=dict(sorted(preferred.items())),
    )


@transaction.atomic
def rollups_refresh(*, days: int | None = None, now: datetime | None = None) -> dict:
    """Recompute the daily channel and campaign rollups of the last ``days`` days (30 on the
    first run, else 2) and take an audience snapshot. Idempotent. Returns what it did (plain
    JSON data: the task's result)."""
    now = now or timezone.now()
    if days is None:
        days = DEFAULT_DAYS if ChannelDailyStat.objects.exists() else FIRST_RUN_DAYS
    if days < 1:
        raise ValueError("days must be at least 1")
    tz = timezone.get_current_timezone()
    day_list, start, end = _range(days, now, tz)

    channel_stats, campaign_stats = stats_compute(start=start, end=end, tz=tz)
    channel_rows = _upsert(
        ChannelDailyStat,
        "channel",
        list(Channel.objects.order_by("pk").values_list("pk", flat=True)),
        day_list,
        channel_stats,
        CHANNEL_FIGURES,
        now,
    )
    campaign_rows = _upsert(
        CampaignDailyStat,
        "campaign",
        list(Campaign.objects.order_by("pk").values_list("pk", flat=True)),
        day_list,
        campaign_stats,
        CAMPAIGN_FIGURES,
        now,
    )
    snapshot = audience_snapshot_take(now=now)
    return {
        "days": days,
        "first_day": day_list[0].isoformat(),
        "last_day": day_list[-1].isoformat(),
        "channel_rows": channel_rows,
        "campaign_rows": campaign_rows,
        "customers": snapshot.customers,
        "multichannel_customers": snapshot.multichannel_customers,
    }


def rollups_last_refreshed_at() -> datetime | None:
    """When the rollups were last refreshed (None: never)."""
    return (
        ChannelDailyStat.objects.order_by("-refreshed_at")
        .values_list("refreshed_at", flat=True)
        .first()
    )
