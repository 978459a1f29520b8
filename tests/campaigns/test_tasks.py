"""The campaign tasks call their services: detection asks for a send when it enrolled
someone, a send that sent something refreshes stale dashboard rollups, and the three
schedules are declared."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import (
    AudienceSnapshot,
    CampaignDailyStat,
    ChannelDailyStat,
    Enrolment,
    Message,
    Trigger,
)
from campaigns.services.rollups import rollups_last_refreshed_at
from campaigns.tasks import detect_triggers, send_messages
from customers.models import Customer
from omni.schedules import SCHEDULES


@pytest.fixture
def outbox(settings, tmp_path):
    settings.OMNI_LOCAL_OUTBOX_DIR = tmp_path / "outbox"
    settings.OMNI_MESSAGING_BACKENDS = dict.fromkeys(
        ("email", "sms", "push", "social_dm"), "campaigns.backends.local.LocalOutboxBackend"
    )


def test_detection_then_sending_through_the_tasks(
    outbox, make_customer, make_campaign, django_capture_on_commit_callbacks
):
    customer = make_customer()
    Customer.objects.filter(pk=customer.pk).update(
        last_purchase_at=timezone.now() - timedelta(days=91)
    )
    campaign = make_campaign(trigger=Trigger.WIN_BACK, winback_days=90)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        result = detect_triggers()
    assert result == {"campaigns": 1, "enrolled": {campaign.name: 1}}
    assert len(callbacks) == 1  # the send asked for at once (eager in tests)
    assert Enrolment.objects.get().status == "completed"
    assert Message.objects.get().status == "delivered"
    # The send refreshed the rollups the dashboards read.
    assert AudienceSnapshot.objects.count() == 1
    assert CampaignDailyStat.objects.filter(campaign=campaign).exists()


def test_a_send_refreshes_rollups_only_when_stale(outbox, make_customer, make_campaign):
    first, second = make_customer(), make_customer()
    campaign = make_campaign(trigger=Trigger.WIN_BACK)
    now = timezone.now()
    Enrolment.objects.create(
        campaign=campaign, customer=first, subject_key="a", enrolled_at=now, due_at=now
    )
    assert send_messages()["delivered"] == 1
    refreshed = rollups_last_refreshed_at()
    assert refreshed is not None
    Enrolment.objects.create(
        campaign=campaign, customer=second, subject_key="b", enrolled_at=now, due_at=now
    )
    assert send_messages()["delivered"] == 1
    assert rollups_last_refreshed_at() == refreshed  # refreshed moments ago: not again
    ChannelDailyStat.objects.update(refreshed_at=refreshed - timedelta(minutes=11))
    Enrolment.objects.create(
        campaign=campaign, customer=first, subject_key="c", enrolled_at=now, due_at=now
    )
    assert send_messages()["delivered"] == 1
    assert rollups_last_refreshed_at() > refreshed  # stale: refreshed again


def test_the_schedules_are_declared():
    by_task = {entry.task: entry for entry in SCHEDULES}
    assert (
        by_task["campaigns.detect_triggers"].minute,
        by_task["campaigns.detect_triggers"].hour,
    ) == ("*/5", "*")
    assert (by_task["campaigns.send_messages"].minute, by_task["campaigns.send_messages"].hour) == (
        "*",
        "*",
    )
    assert (
        by_task["campaigns.refresh_rollups"].minute,
        by_task["campaigns.refresh_rollups"].hour,
    ) == ("20", "*")
