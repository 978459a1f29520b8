"""An abandoned cart carried from detection to a delivered message by real Celery worker and
beat processes (the database scheduler) on a real broker (Redis)."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignStatus,
    CampaignStep,
    Enrolment,
    Message,
    MessagingRule,
    Template,
    Trigger,
)
from customers.identifiers import Identifier
from customers.services import consent_record, customer_create
from omni.models import Channel, ChannelKind
from orders.models import Cart, CartLine
from tests.factories import ChannelFactory, ListingFactory, VariantFactory
from tests.integration.test_runtime import PROD_SECRET, ROOT, _env, _wait_for, redis_url

__all__ = ["redis_url"]  # the fixture, imported for pytest


def _shop():
    web = ChannelFactory(code="web", name="Web shop", kind=ChannelKind.WEB, currency="EUR")
    sms = ChannelFactory(code="sms", name="SMS", kind=ChannelKind.SMS, currency="")
    MessagingRule.objects.update_or_create(
        channel=sms,
        defaults={"quiet_hours_start": None, "quiet_hours_end": None, "frequency_cap": 0},
    )
    variant = VariantFactory(sku="SKU-TOTE")
    ListingFactory(variant=variant, channel=web, price=Decimal("35.00"))
    customer = customer_create(
        data={"first_name": "Inès", "time_zone": "Europe/Paris"},
        identifiers=[Identifier("phone", "+33611223344")],
        source="test",
    )
    consent_record(customer=customer, channel=sms, status="opted_in", source="test")
    two_hours_ago = timezone.now() - timedelta(hours=2)
    cart = Cart.objects.create(
        token="integration-cart",
        channel=web,
        customer=customer,
        currency="EUR",
        created_at=two_hours_ago,
        last_activity_at=two_hours_ago,
    )
    CartLine.objects.create(
        cart=cart,
        variant=variant,
        quantity=1,
        unit_price=Decimal("35.00"),
        added_at=two_hours_ago,
        updated_at=two_hours_ago,
    )
    template = Template.objects.create(
        name="Reminder", sms_text="{{ customer.first_name }}, your cart: {{ cart.url }}"
    )
    campaign = Campaign.objects.create(
        name="Abandoned cart",
        trigger=Trigger.CART_ABANDONED,
        status=CampaignStatus.ACTIVE,
        idle_minutes=60,
    )
    CampaignStep.objects.create(campaign=campaign, position=1, channels="sms", template=template)
    return customer, cart, campaign


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_worker_and_beat_send_an_abandoned_cart_reminder(transactional_db, redis_url, tmp_path):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    customer, cart, campaign = _shop()
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=2, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.create(
        name="detect (integration)", task="campaigns.detect_triggers", interval=every_second
    )
    db = connection.settings_dict
    env = _env(
        DEBUG="false",
        SECRET_KEY=PROD_SECRET,
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        CELERY_BROKER_URL=redis_url,
        OMNI_MESSAGE_GATEWAY="local",
        OMNI_LOCAL_OUTBOX_DIR=str(tmp_path / "outbox"),
        OMNI_SITE_URL="https://omni.example.com",
    )
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed in finally
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "omni",
            "worker",
            "--beat",
            "--scheduler",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--schedule",
            str(tmp_path / "beat-schedule"),
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
            "--hostname",
            f"campaigns-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        delivered = lambda: Message.objects.filter(status="delivered").exists()  # noqa: E731
        assert _wait_for(delivered, 90), (tmp_path / "worker.log").read_text()[-4000:]
        # Beat keeps detecting every 2 seconds: nothing is enrolled or sent twice.
        _wait_for(lambda: False, 6)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    enrolment = Enrolment.objects.get()
    assert (enrolment.campaign_id, enrolment.customer_id, enrolment.cart_id) == (
        campaign.pk,
        customer.pk,
        cart.pk,
    )
    assert enrolment.status == "completed"
    message = Message.objects.get()
    assert (message.status, message.to, message.channel.code) == (
        "delivered",
        "+33611223344",
        "sms",
    )
    files = list((tmp_path / "outbox" / "sms").glob("*.json"))
    assert [f.name for f in files] == [f"{message.pk}.json"]
    document = json.loads(files[0].read_text())
    assert document["text"].startswith("Inès, your cart: https://omni.example.com/t/")
    assert Channel.objects.filter(code="sms").count() == 1
