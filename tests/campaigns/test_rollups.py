"""The hourly rollups: exact daily figures per channel and per campaign on a small data set,
an audience snapshot, days in the site's time zone, and idempotent re-runs."""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import (
    AudienceSnapshot,
    CampaignDailyStat,
    ChannelDailyStat,
    Enrolment,
    EnrolmentStatus,
    Message,
    MessageStatus,
)
from campaigns.services.attribution import attributions_compute
from campaigns.services.rollups import (
    CLICKS_WITHIN,
    enrolment_figures_queries,
    message_event_bounds,
    message_figures_query,
    rollups_last_refreshed_at,
    rollups_refresh,
)
from customers.models import Customer, CustomerChannelStat, Touchpoint
from omni.models import Channel
from orders.models import Order, OrderStatus
from tests.campaigns.test_attribution import NOW, enrol, make_order, send

pytestmark = pytest.mark.django_db

TODAY = date(2025, 3, 10)
YESTERDAY = date(2025, 3, 9)
_events = count(1)

CHANNEL_FIELDS = (
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
CAMPAIGN_FIELDS = (
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


def at(day, hour, minute=0):
    return NOW.replace(day=day.day, hour=hour, minute=minute)


def touch(customer, channel, occurred_at, kind="product_view"):
    Touchpoint.objects.create(
        customer=customer,
        channel=channel,
        kind=kind,
        occurred_at=occurred_at,
        source="test",
        event_id=f"e{next(_events)}",
        received_at=occurred_at,
    )


def used(customer, *channels):
    for channel in channels:
        CustomerChannelStat.objects.update_or_create(
            customer=customer,
            channel=channel,
            defaults={
                "touchpoints": 1,
                "first_seen_at": NOW - timedelta(days=40),
                "last_seen_at": NOW - timedelta(days=1),
            },
        )


def channel_stat(day, channel):
    row = ChannelDailyStat.objects.get(day=day, channel=channel)
    return {name: getattr(row, name) for name in CHANNEL_FIELDS}


def campaign_stat(day, campaign):
    row = CampaignDailyStat.objects.get(day=day, campaign=campaign)
    return {name: getattr(row, name) for name in CAMPAIGN_FIELDS}


def figures(**values):
    base = dict.fromkeys(CHANNEL_FIELDS, 0)
    base.update(revenue=Decimal("0.00"), attributed_revenue=Decimal("0.00"))
    base.update(values)
    return base


def campaign_figures(**values):
    base = dict.fromkeys(CAMPAIGN_FIELDS, 0)
    base.update(revenue=Decimal("0.00"))
    base.update(values)
    return base


@pytest.fixture
def data(channels, make_campaign, make_customer):
    """Three customers of one campaign over yesterday and today (NOW is today 12:00 UTC):

    - Ann, treated, emailed yesterday (delivered), clicks today, buys on the web today (80);
    - Ben, held out, buys in a store today (20);
    - Cleo, treated today, her SMS capped; her web order today is cancelled;
    - an anonymous store sale yesterday (15).
    """

    class D:
        pass

    d = D()
    d.channels = channels
    d.campaign = make_campaign(attribution_window_hours=48, steps=((0, "email"),))
    d.ann, d.ben, d.cleo = make_customer(), make_customer(), make_customer()
    Customer.objects.filter(pk=d.ann.pk).update(preferred_channel=channels.email)
    Customer.objects.filter(pk=d.ben.pk).update(preferred_channel=channels.sms)
    Customer.objects.filter(pk=d.cleo.pk).update(preferred_channel=None)
    used(d.ann, channels.web, channels.pos)
    # Every customer opted in by email (a touchpoint on the email channel): messaging channels
    # are not counted as channels used.
    used(d.ben, channels.pos, channels.email)
    ann_in = enrol(d.campaign, d.ann, at(YESTERDAY, 10))
    ben_in = enrol(d.campaign, d.ben, at(YESTERDAY, 11), holdout=True)
    cleo_in = enrol(d.campaign, d.cleo, at(TODAY, 8))
    send(
        ann_in,
        channels.email,
        at(YESTERDAY, 10, 5),
        delivered_at=at(YESTERDAY, 10, 6),
        clicked_at=at(TODAY, 9),
    )
    step = d.campaign.steps.get()
    Message.objects.create(
        enrolment=ben_in,
        campaign=d.campaign,
        step=step,
        customer=d.ben,
        status=MessageStatus.SUPPRESSED,
        reason="holdout",
        created_at=at(YESTERDAY, 11),
    )
    Message.objects.create(
        enrolment=cleo_in,
        campaign=d.campaign,
        step=step,
        customer=d.cleo,
        channel=channels.sms,
        status=MessageStatus.SUPPRESSED,
        reason="capped",
        created_at=at(TODAY, 8),
    )
    touch(d.ann, channels.web, at(TODAY, 9, 30))
    touch(d.ann, channels.web, at(TODAY, 9, 45), kind="add_to_cart")
    touch(d.cleo, channels.web, at(TODAY, 7))
    touch(d.ben, channels.pos, at(TODAY, 11), kind="purchase")
    touch(d.ann, channels.email, at(TODAY, 9), kind="link_clicked")  # messaging: not counted
    touch(d.ann, channels.web, at(TODAY, 13))  # after NOW, still today
    d.ann_order = make_order(d.ann, channels.web, at(TODAY, 10), "80.00")
    make_order(d.ben, channels.pos, at(TODAY, 11), "20.00")
    make_order(d.cleo, channels.web, at(TODAY, 9), "30.00", status=OrderStatus.CANCELLED)
    make_order(None, channels.pos, at(YESTERDAY, 16), "15.00")
    make_order(d.ben, channels.pos, NOW - timedelta(days=31), "99.00")  # before the 30 days
    attributions_compute(now=NOW)
    return d


def test_channel_figures_are_exact(data):
    result = rollups_refresh(now=NOW)

    channels = Channel.objects.count()
    assert result == {
        "days": 30,
        "first_day": "2025-02-09",
        "last_day": "2025-03-10",
        "channel_rows": 30 * channels,
        "campaign_rows": 30,
        "customers": 3,
        "multichannel_customers": 1,
    }
    assert ChannelDailyStat.objects.count() == 30 * channels
    c = data.channels
    assert channel_stat(TODAY, c.web) == figures(
        active_customers=2, orders=1, revenue=Decimal("80.00"), buyers=1
    )
    assert channel_stat(TODAY, c.pos) == figures(
        active_customers=1, orders=1, revenue=Decimal("20.00"), buyers=1
    )
    assert channel_stat(YESTERDAY, c.pos) == figures(orders=1, revenue=Decimal("15.00"))
    assert channel_stat(YESTERDAY, c.email) == figures(messages_sent=1, messages_delivered=1)
    assert channel_stat(TODAY, c.email) == figures(
        clicks=1, attributed_orders=1, attributed_revenue=Decimal("80.00")
    )
    assert channel_stat(TODAY, c.sms) == figures()
    assert channel_stat(date(2025, 2, 9), c.pos) == figures()
    assert not ChannelDailyStat.objects.filter(day__lt=date(2025, 2, 9)).exists()
    assert set(ChannelDailyStat.objects.values_list("refreshed_at", flat=True)) == {NOW}
    assert rollups_last_refreshed_at() == NOW


def test_campaign_figures_are_exact(data):
    rollups_refresh(now=NOW)

    assert CampaignDailyStat.objects.count() == 30
    assert campaign_stat(YESTERDAY, data.campaign) == campaign_figures(
        enrolled=2, held_out=1, sent=1, delivered=1
    )
    assert campaign_stat(TODAY, data.campaign) == campaign_figures(
        enrolled=1,
        clicked=1,
        suppressed=1,
        converted=1,
        holdout_converted=1,
        revenue=Decimal("80.00"),
    )
    assert campaign_stat(TODAY - timedelta(days=2), data.campaign) == campaign_figures()


def test_audience_snapshot(data):
    rollups_refresh(now=NOW)

    snapshot = AudienceSnapshot.objects.get()
    assert (snapshot.taken_at, snapshot.customers, snapshot.multichannel_customers) == (NOW, 3, 1)
    assert snapshot.channels_used == {"0": 1, "1": 1, "2": 1}
    assert snapshot.preferred_channels == {"email": 1, "none": 1, "sms": 1}


def test_refresh_is_idempotent_and_then_covers_two_days(data):
    rollups_refresh(now=NOW)
    before_channels = sorted(
        ChannelDailyStat.objects.values_list("day", "channel_id", *CHANNEL_FIELDS)
    )
    before_campaigns = sorted(
        CampaignDailyStat.objects.values_list("day", "campaign_id", *CAMPAIGN_FIELDS)
    )

    result = rollups_refresh(now=NOW + timedelta(minutes=10))

    assert (result["days"], result["first_day"], result["last_day"]) == (
        2,
        "2025-03-09",
        "2025-03-10",
    )
    assert result["channel_rows"] == 2 * Channel.objects.count()
    assert (
        sorted(ChannelDailyStat.objects.values_list("day", "channel_id", *CHANNEL_FIELDS))
        == before_channels
    )
    assert (
        sorted(CampaignDailyStat.objects.values_list("day", "campaign_id", *CAMPAIGN_FIELDS))
        == before_campaigns
    )
    # One snapshot per hour: the second run of the hour replaced the first.
    assert list(AudienceSnapshot.objects.values_list("taken_at", flat=True)) == [
        NOW + timedelta(minutes=10)
    ]
    refreshed = ChannelDailyStat.objects.values_list("refreshed_at", flat=True)
    assert set(refreshed.filter(day__gte=YESTERDAY)) == {NOW + timedelta(minutes=10)}
    assert set(refreshed.filter(day__lt=YESTERDAY)) == {NOW}


def test_a_figure_back_to_zero_is_corrected(data):
    rollups_refresh(now=NOW)
    Order.objects.filter(pk=data.ann_order.pk).update(status=OrderStatus.CANCELLED)
    attributions_compute(now=NOW)

    rollups_refresh(now=NOW + timedelta(hours=1))

    assert channel_stat(TODAY, data.channels.web) == figures(active_customers=2)
    assert channel_stat(TODAY, data.channels.email) == figures(clicks=1)
    stats = campaign_stat(TODAY, data.campaign)
    assert (stats["converted"], stats["holdout_converted"], stats["revenue"]) == (
        0,
        1,
        Decimal("0.00"),
    )
    assert AudienceSnapshot.objects.count() == 2


def test_days_follow_the_site_time_zone(data, settings):
    settings.TIME_ZONE = "America/New_York"
    # 2025-03-10 03:00 UTC is 23:00 on the 9th in New York.
    make_order(data.ann, data.channels.pos, NOW.replace(hour=3), "7.00")

    rollups_refresh(now=NOW, days=2)

    assert channel_stat(YESTERDAY, data.channels.pos)["orders"] == 2
    assert channel_stat(YESTERDAY, data.channels.pos)["revenue"] == Decimal("22.00")


def test_days_must_be_positive(db):
    with pytest.raises(ValueError):
        rollups_refresh(days=0, now=NOW)


# --- Index-bounded reads ----------------------------------------------------------------------


def test_message_bounds_follow_the_retries():
    """Sent within the retries (1 + 4 + 16 + 64 minutes with 5 attempts) and a day; delivered
    within a week more; first clicked within 30 days."""
    assert message_event_bounds() == {
        "sent_at": timedelta(days=1, minutes=85),
        "delivered_at": timedelta(days=8, minutes=85),
        "clicked_at": timedelta(days=30),
    }


def test_more_attempts_widen_the_send_bound(settings):
    settings.OMNI_SEND_MAX_ATTEMPTS = 6
    assert message_event_bounds()["sent_at"] == timedelta(days=1, minutes=85 + 256)


@pytest.fixture
def edges(channels, make_campaign, make_customer):
    """Events today of messages and enrolments at the edges of the bounds of a two-day
    refresh (whose range starts yesterday at midnight)."""

    class E:
        pass

    e = E()
    e.start = timezone.make_aware(datetime.combine(YESTERDAY, time.min))
    e.campaign = make_campaign(attribution_window_hours=48)
    e.long = make_campaign(attribution_window_hours=24 * 10)
    customer = make_customer()
    subjects = count(1)

    def message(created_at, **times):
        enrolment = enrol(
            e.campaign, customer, created_at - timedelta(minutes=1), subject=f"s{next(subjects)}"
        )
        return Message.objects.create(
            enrolment=enrolment,
            campaign=e.campaign,
            step=e.campaign.steps.get(),
            customer=customer,
            channel=channels.email,
            status=MessageStatus.DELIVERED if "delivered_at" in times else MessageStatus.SENT,
            created_at=created_at,
            **times,
        )

    bounds = message_event_bounds()
    today = at(TODAY, 9)
    minute = timedelta(minutes=1)
    message(e.start - bounds["sent_at"], sent_at=today)
    message(e.start - bounds["delivered_at"], sent_at=e.start - minute, delivered_at=today)
    message(e.start - CLICKS_WITHIN, sent_at=e.start - minute, clicked_at=today)
    # First clicked today, more than 30 days after it was sent: left out (documented).
    message(e.start - CLICKS_WITHIN - minute, sent_at=e.start - minute, clicked_at=today)
    # Conversions today of enrolments a window before the range: 48 hours, and 10 days for the
    # other campaign.
    for campaign, hours in ((e.campaign, 48), (e.long, 240)):
        enrolment = enrol(
            campaign, customer, e.start - timedelta(hours=hours), subject=f"c{next(subjects)}"
        )
        Enrolment.objects.filter(pk=enrolment.pk).update(
            converted_at=e.start, revenue=Decimal("1.00")
        )
    return e


def test_events_at_the_edges_of_the_bounds_are_counted(edges):
    rollups_refresh(now=NOW, days=2)

    assert campaign_stat(TODAY, edges.campaign) == campaign_figures(sent=1, delivered=1, clicked=1)
    assert campaign_stat(YESTERDAY, edges.campaign) == campaign_figures(converted=1)
    assert campaign_stat(YESTERDAY, edges.long) == campaign_figures(converted=1)
    # The enrolments themselves are before the range.
    assert campaign_stat(TODAY, edges.long)["enrolled"] == 0


@pytest.fixture
def big_tables(channels, make_campaign, make_customer):
    """Thousands of messages and enrolments over three years, a few in the range of a
    two-day refresh, and fresh planner statistics."""
    campaigns = [
        make_campaign(attribution_window_hours=48),
        make_campaign(attribution_window_hours=240),
    ]
    customer = make_customer()
    n = 6000
    first = NOW - timedelta(hours=4 * n)
    times = [first + timedelta(hours=4 * i + 1) for i in range(n)]
    enrolments = Enrolment.objects.bulk_create(
        Enrolment(
            campaign=campaigns[i % 2],
            customer=customer,
            subject_key=f"cart:{i}",
            status=EnrolmentStatus.COMPLETED,
            enrolled_at=when,
            finished_at=when,
            converted_at=when + timedelta(hours=1) if i % 3 == 0 else None,
        )
        for i, when in enumerate(times)
    )
    steps = {c.pk: c.steps.get().pk for c in campaigns}
    Message.objects.bulk_create(
        Message(
            enrolment_id=enrolment.pk,
            campaign_id=enrolment.campaign_id,
            step_id=steps[enrolment.campaign_id],
            customer=customer,
            channel=channels.email,
            status=MessageStatus.DELIVERED,
            created_at=enrolment.enrolled_at,
            sent_at=enrolment.enrolled_at + timedelta(minutes=1),
            delivered_at=enrolment.enrolled_at + timedelta(minutes=2),
            clicked_at=enrolment.enrolled_at + timedelta(hours=5) if i % 4 == 0 else None,
        )
        for i, enrolment in enumerate(enrolments)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE campaigns_message")
        cursor.execute("ANALYZE campaigns_enrolment")
    start = timezone.make_aware(datetime.combine(YESTERDAY, time.min))
    return start, start + timedelta(days=2)


@pytest.mark.parametrize("time_field", ["sent_at", "delivered_at", "clicked_at"])
def test_message_figures_read_a_range_of_the_created_at_index(big_tables, time_field):
    start, end = big_tables
    query = message_figures_query(time_field, start, end, timezone.get_current_timezone())

    plan = query.explain()

    assert "message_created_idx" in plan, plan
    assert "Seq Scan on campaigns_message" not in plan, plan
    # And the figures are those of a scan.
    scanned = Message.objects.filter(**{f"{time_field}__gte": start, f"{time_field}__lt": end})
    assert sum(row["n"] for row in query) == scanned.count() > 0


def test_enrolment_figures_read_ranges_of_the_campaign_index(big_tables):
    start, end = big_tables
    enrolled, converted = enrolment_figures_queries(start, end, timezone.get_current_timezone())

    for query in (enrolled, converted):
        plan = query.explain()
        assert "enrolment_campaign_idx" in plan, plan
        assert "Seq Scan on campaigns_enrolment" not in plan, plan
    assert sum(row["enrolled"] for row in enrolled) == (
        Enrolment.objects.filter(enrolled_at__gte=start, enrolled_at__lt=end).count()
    )
    assert sum(row["converted"] for row in converted) == (
        Enrolment.objects.filter(converted_at__gte=start, converted_at__lt=end).count()
    )
