"""The demo customers (journeys across channels, a merged pair, consents, a conversation that
moved from social media to email, segments) and the hourly segment count task."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from customers import tasks
from customers.models import (
    ConsentState,
    Conversation,
    Customer,
    CustomerMerge,
    Segment,
    SegmentRule,
    SegmentRuleKind,
)
from customers.segments import segment_queryset
from omni.schedules import SCHEDULES, ensure_periodic_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    out = io.StringIO()
    call_command("load_demo", "--products", "40", stdout=out)
    return out.getvalue()


def by_email(address):
    return Customer.objects.get(identities__kind="email", identities__value=address)


def test_camilles_app_web_and_store_journey_is_one_customer(demo):
    camille = by_email("camille.laurent@example.com")

    assert sorted(camille.identities.values_list("kind", "value")) == [
        ("app_device", "dev-camille"),
        ("email", "camille.laurent@example.com"),
        ("phone", "+33611223344"),
        ("web_cookie", "ck-camille"),
    ]
    kinds = set(camille.channel_stats.values_list("channel__kind", flat=True))
    # The journey (app, web, store) plus her consents (email, SMS) and conversation (DM).
    assert kinds == {"app", "web", "store_pos", "email", "sms", "social_dm"}
    assert camille.lifetime_orders == 1
    assert str(camille.lifetime_revenue) == "89.90"
    assert "Demo customers loaded" in demo


def test_hugos_two_profiles_were_merged_by_a_store_purchase(demo):
    hugo = by_email("hugo.martin@example.com")
    merge = CustomerMerge.objects.get()

    assert merge.survivor == hugo
    assert sorted(hugo.identities.values_list("kind", flat=True)) == [
        "email",
        "loyalty_card",
        "phone",
    ]
    assert hugo.lifetime_orders == 3
    assert str(hugo.lifetime_revenue) == "200.50"
    sms = ConsentState.objects.get(customer=hugo, channel__code="sms")
    assert sms.status == "opted_out"
    assert sms.consent.source == "SMS STOP reply"


def test_the_open_conversation_moved_from_social_to_email(demo):
    conversation = Conversation.objects.get()

    assert conversation.customer == by_email("camille.laurent@example.com")
    assert conversation.status == "open"
    assert list(conversation.messages.values_list("channel__code", flat=True)) == [
        "social-dm",
        "email",
    ]


def test_segments_are_counted_and_a_second_load_adds_nothing(demo):
    counts = dict(Segment.objects.values_list("name", "member_count"))
    # The demo population is seeded, so its segments hold known numbers of customers.
    assert counts == {
        "Web shoppers reachable by email": 119,
        "Big spenders": 27,
        "Lapsed buyers (no purchase in 60 days)": 20,
    }
    for segment in Segment.objects.all():
        assert counts[segment.name] == segment_queryset(segment).count()
    assert Customer.objects.count() == 202

    call_command("load_demo", "--products", "40", stdout=io.StringIO())

    assert Customer.objects.count() == 202
    assert dict(Segment.objects.values_list("name", "member_count")) == counts


def test_the_segment_task_stores_counts(channels):
    now = timezone.now()
    recent = Customer.objects.create(created_at=now, last_seen_at=now - timedelta(days=1))
    Customer.objects.create(created_at=now, last_seen_at=now - timedelta(days=40))
    Customer.objects.create(
        created_at=now, last_seen_at=now - timedelta(days=1), erased_at=now - timedelta(hours=1)
    )
    segment = Segment.objects.create(name="Everyone seen")
    SegmentRule.objects.create(segment=segment, kind=SegmentRuleKind.SEEN_WITHIN, days=30)

    assert tasks.refresh_segments.delay().get() == {"segments": 1}
    segment.refresh_from_db()
    # Only the recent one: the lapsed one is outside 30 days, the erased one never counts.
    assert list(segment_queryset(segment)) == [recent]
    assert segment.member_count == 1
    assert segment.counted_at is not None
    assert now <= segment.counted_at <= timezone.now()


def test_the_segment_schedule_is_hourly_and_stored():
    by_task = {entry.task: entry for entry in SCHEDULES}
    entry = by_task["customers.refresh_segments"]
    assert (entry.minute, entry.hour) == ("10", "*")

    ensure_periodic_tasks()

    assert PeriodicTask.objects.get(task="customers.refresh_segments").crontab.minute == "10"
