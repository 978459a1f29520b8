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

Every read is a range of an index, never a scan of a whole table (messages and enrolments run
to millions of rows): touchpoints by ``occurred_at``, orders by ``(channel, placed_at)`` and
attributions by ``(campaign, placed_at)`` (every channel, every campaign: they are few),
enrolments by ``(campaign, enrolled_at)``. A conversion follows its enrolment by at most the
campaign's attribution window (``enrolment_conversions_mark``), so conversions are read from
the enrolments of the range widened by that window. Messages are read by ``created_at``: a
message's times all follow its creation, each within a bound (``message_event_bounds``):

- sent: within its retries (``OMNI_SEND_MAX_ATTEMPTS`` attempts, 1, 4, 16 ... minutes apart:
  85 minutes with the default 5) plus a day for a queue held up by a stopped worker;
- delivered: within the send bound plus 7 days for a late delivery report;
- clicked (the first click): within 30 days of creation. A message first clicked later than
  that is not counted in the daily figures (its click still counts on the message and its
  attribution, which reads each order's own customer);

so each message figure of the range is read from the messages created from the start of the
range less its bound to the end of the range.

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

from django.conf import settings
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
from campaigns.services.sending import _backoff
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

# How long after its creation a message is still counted as sent (besides its retries),
# delivered (besides the send) and first clicked: see the module's docstring.
SEND_SLACK = timedelta(days=1)
DELIVERY_REPORTS_WITHIN = timedelta(days=7)
CLICKS_WITHIN = timedelta(days=30)
MESSAGE_EVENTS = (
    ("sent_at", "messages_sent", "sent"),
    ("delivered_at", "messages_delivered", "delivered"),
    ("clicked_at", "clicks", "clicked"),
)


def _grouped_query(queryset, time_field: str, keys: tuple[str, ...], start, end, tz, **figures):
    """Rows of ``queryset`` whose ``time_field`` falls in ``[start, end)``, grouped by the day
    in ``tz`` and by ``keys``, with ``figures``: one query."""
    return (
        queryset.filter(**{f"{time_field}__gte": start, f"{time_field}__lt": end})
        .annotate(day=TruncDate(time_field, tzinfo=tz))
        .order_by()
        .values("day", *keys)
        .annotate(**figures)
    )


def _grouped(queryset, time_field: str, keys: tuple[str, ...], start, end, tz, **figures):
    """``_grouped_query`` as ``(day, *keys, values)``."""
    for row in _grouped_query(queryset, time_field, keys, start, end, tz, **figures):
        yield (row["day"], *(row[k] for k in keys), {name: row[name] for name in figures})


def message_event_bounds() -> dict[str, timedelta]:
    """How long after its creation a message is still sent, delivered or first clicked, by
    time column (see the module's docstring)."""
    attempts = settings.OMNI_SEND_MAX_ATTEMPTS
    send = sum((_backoff(n) for n in range(1, attempts)), timedelta()) + SEND_SLACK
    return {
        "sent_at": send,
        "delivered_at": send + DELIVERY_REPORTS_WITHIN,
        "clicked_at": CLICKS_WITHIN,
    }


def message_figures_query(time_field: str, start, end, tz):
    """Messages sent, delivered or first clicked (``time_field``) in ``[start, end)``, per day,
    campaign and channel (``n``): one query over the ``created_at`` index."""
    created_from = start - message_event_bounds()[time_field]
    return _grouped_query(
        Message.objects.filter(created_at__gte=created_from, created_at__lt=end),
        time_field,
        ("campaign_id", "channel_id"),
        start,
        end,
        tz,
        n=Count("pk"),
    )


def enrolment_figures_queries(start, end, tz) -> tuple:
    """``(enrolled, converted)``: enrolments per day of enrolment and per day of conversion
    in ``[start, end)``, per campaign; both over the ``(campaign, enrolled_at)`` index."""
    windows: dict[int, list[int]] = defaultdict(list)
    for campaign_id, hours in Campaign.objects.values_list("pk", "attribution_window_hours"):
        windows[hours].append(campaign_id)
    enrolled = _grouped_query(
        Enrolment.objects.filter(campaign_id__in=[c for ids in windows.values() for c in ids]),
        "enrolled_at",
        ("campaign_id",),
        start,
        end,
        tz,
        enrolled=Count("pk"),
        held_out=Count("pk", filter=Q(holdout=True)),
    )
    # Converted in the range: enrolled before its end and at most the window before its start.
    reach = Q(pk__in=[])  # no campaign: nothing (an empty branch of an OR is dropped)
    for hours, campaign_ids in sorted(windows.items()):
        reach |= Q(campaign_id__in=campaign_ids, enrolled_at__gte=start - timedelta(hours=hours))
    converted = _grouped_query(
        Enrolment.objects.filter(reach, enrolled_at__lt=end),
        "converted_at",
        ("campaign_id",),
        start,
        end,
        tz,
        converted=Count("pk", filter=Q(holdout=False)),
        holdout_converted=Count("pk", filter=Q(holdout=True)),
    )
    return enrolled, converted


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
    once (one index range each), then summed both ways."""
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
        # Every channel: the (channel, placed_at) index serves the range.
        Order.objects.filter(
            channel_id__in=list(Channel.objects.values_list("pk", flat=True))
        ).exclude(status=OrderStatus.CANCELLED),
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
    for time_field, channel_name, campaign_name in MESSAGE_EVENTS:
        for row in message_figures_query(time_field, start, end, tz):
            day, channel_id, values = row["day"], row["channel_id"], {"n": row["n"]}
            _add(campaigns, (day, row["campaign_id"]), values, {"n": campaign_name})
            if channel_id is not None:
                _add(channels, (day, channel_id), values, {"n": channel_name})
    for day, campaign_id, channel_id, values in _grouped(
        # Every campaign: the (campaign, placed_at) index serves the range.
        Attribution.objects.filter(
            campaign_id__in=list(Campaign.objects.values_list("pk", flat=True))
        ),
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
    for query in enrolment_figures_queries(start, end, tz):
        for row in query:
            values = {k: v for k, v in row.items() if k not in ("day", "campaign_id")}
            _add(campaigns, (row["day"], row["campaign_id"]), values)
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


def campaign_figures_refresh() -> dict:
    """What the hourly task, the command line and the dashboards' "Refresh now" do: attribute
    the orders placed since the last run to campaign messages, then refresh the rollups.
    Returns ``rollups_refresh``'s figures with ``attributed``, the orders attributed."""
    from campaigns.services.attribution import attributions_compute

    attributed = attributions_compute()
    return {"attributed": attributed, **rollups_refresh()}
