"""The demo campaigns of ``load_demo``: within the first detection and send runs after
``make run``, cart reminders, pickup notices and back-in-stock alerts reach the local outbox;
loading again adds nothing; every demo template is valid for the documented context."""

import io
from collections import Counter

import pytest
from django.core.management import call_command

from campaigns.models import Campaign, Enrolment, Message, Template
from campaigns.rendering import template_problems
from campaigns.services.detection import triggers_detect
from campaigns.services.sending import messages_send

pytestmark = pytest.mark.django_db


def test_demo_campaigns_send_on_their_own(settings, tmp_path):
    settings.OMNI_LOCAL_OUTBOX_DIR = tmp_path / "outbox"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    out = io.StringIO()
    call_command("load_demo", "--products", "40", stdout=out)
    assert "Demo campaigns loaded" in out.getvalue()
    assert dict(Campaign.objects.values_list("name", "status")) == {
        "Abandoned cart reminder": "active",
        "Pickup ready notice": "active",
        "Back in stock": "active",
        "Thank you for your visit": "active",
        "Win-back after 90 days": "draft",
    }
    for template in Template.objects.all():
        assert template_problems(template) == {}, template.name

    detected = triggers_detect()
    assert detected.enrolled["Abandoned cart reminder"] >= 6
    assert detected.enrolled["Pickup ready notice"] == 3  # two ready, one overdue, in Paris
    assert detected.enrolled["Back in stock"] == 3
    result = messages_send()
    assert result.failed == 0
    sent = Counter(
        Message.objects.filter(status__in=["sent", "delivered"]).values_list(
            "campaign__name", flat=True
        )
    )
    held_out = Enrolment.objects.filter(campaign__name="Abandoned cart reminder", holdout=True)
    assert sent["Abandoned cart reminder"] == (
        detected.enrolled["Abandoned cart reminder"] - held_out.count()
    )
    assert sent["Pickup ready notice"] == 3
    # Each waiting customer gets one message: sent where she agreed, else suppressed.
    alerts = Message.objects.filter(campaign__name="Back in stock")
    assert alerts.count() == 3
    assert set(alerts.values_list("status", flat=True)) <= {"delivered", "suppressed"}
    assert sent["Back in stock"] == alerts.filter(status="delivered").count() >= 1
    files = list((tmp_path / "outbox").rglob("*.json"))
    from django.core import mail

    assert len(files) + len(mail.outbox) == sum(sent.values())

    again = io.StringIO()
    call_command("load_demo", stdout=again)
    assert again.getvalue().strip() == "Demo data already loaded; skipping."
    assert triggers_detect().total == 0
