"""Phase two of sending: queued messages go to their backend exactly once, under two
concurrent workers, after a crash between claim and send and after a crash while sending;
transient errors retry with backoff, permanent ones fail at once."""

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.backends.base import (
    DeliveryBackend,
    DeliveryResult,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from campaigns.models import Enrolment, Message, MessageStatus, Trigger
from campaigns.services.sending import messages_deliver, messages_send, steps_claim

KINDS = ("email", "sms", "push", "social_dm")
NOON = datetime(2027, 6, 15, 10, 0, tzinfo=UTC)


class Recorder(DeliveryBackend):
    """Records every message id it is handed; ``behaviour`` decides what each call does."""

    calls: list = []
    lock = threading.Lock()
    behaviour = None
    idempotent = True

    def send(self, message):
        with self.lock:
            self.calls.append(message.message_id)
        if Recorder.behaviour is not None:
            return Recorder.behaviour(message)
        return DeliveryResult(provider_id=f"rec-{message.message_id}")


class NotIdempotentRecorder(Recorder):
    idempotent = False


@pytest.fixture
def recorder(settings):
    Recorder.calls = []
    Recorder.behaviour = None
    settings.OMNI_MESSAGING_BACKENDS = dict.fromkeys(KINDS, "tests.campaigns.test_deliver.Recorder")
    return Recorder


@pytest.fixture
def local_outbox(settings, tmp_path):
    settings.OMNI_LOCAL_OUTBOX_DIR = tmp_path / "outbox"
    settings.OMNI_MESSAGING_BACKENDS = dict.fromkeys(
        KINDS, "campaigns.backends.local.LocalOutboxBackend"
    )
    return tmp_path / "outbox"


def enrol(campaign, customer, key=None):
    return Enrolment.objects.create(
        campaign=campaign,
        customer=customer,
        subject_key=key or f"test:{customer.pk}",
        enrolled_at=NOON - timedelta(hours=1),
        due_at=NOON,
    )


@pytest.fixture
def campaign(make_campaign):
    return make_campaign(trigger=Trigger.WIN_BACK, steps=((0, "email"),))


def test_messages_reach_the_local_outbox_rendered(local_outbox, make_customer, campaign):
    customer = make_customer(email="lea@example.com", first_name="Léa")
    enrol(campaign, customer)
    result = messages_send(now=NOON)
    assert (result.claimed, result.queued, result.delivered, result.failed) == (1, 1, 1, 0)
    m = Message.objects.get()
    assert (m.status, m.attempts, m.sent_at, m.delivered_at) == ("delivered", 1, NOON, NOON)
    assert m.provider_id == f"local:{m.pk}"
    assert m.preview == "Léa, your cart is waiting"
    document = json.loads((local_outbox / "email" / f"{m.pk}.json").read_text())
    assert document["to"] == "lea@example.com"
    assert document["subject"] == "Léa, your cart is waiting"
    assert "Hello Léa" in document["text"]
    assert "<p>Hello Léa</p>" in document["html"]


def test_a_crash_between_claim_and_send_sends_once(recorder, make_customer, campaign):
    customers = [make_customer() for _ in range(3)]
    for customer in customers:
        enrol(campaign, customer)
    steps_claim(now=NOON)  # the worker dies here: messages queued, none handed on
    assert Message.objects.filter(status=MessageStatus.QUEUED).count() == 3
    assert recorder.calls == []
    messages_send(now=NOON + timedelta(minutes=1))
    messages_send(now=NOON + timedelta(minutes=2))
    assert sorted(recorder.calls) == sorted(Message.objects.values_list("pk", flat=True))
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


class WorkerKilled(BaseException):
    """What a killed worker looks like from inside: not an error any handler catches."""


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_crash_while_sending_never_sends_twice(
    idempotent, settings, recorder, make_customer, campaign
):
    if not idempotent:
        settings.OMNI_MESSAGING_BACKENDS = {
            **settings.OMNI_MESSAGING_BACKENDS,
            "email": "tests.campaigns.test_deliver.NotIdempotentRecorder",
        }
    enrol(campaign, make_customer())
    steps_claim(now=NOON)

    def killed(message):
        raise WorkerKilled

    recorder.behaviour = killed
    with pytest.raises(WorkerKilled):
        messages_deliver(now=NOON)
    m = Message.objects.get()
    assert (m.status, m.sending_since) == ("sending", NOON)
    assert recorder.calls == [m.pk]  # it may or may not have left
    recorder.behaviour = None
    # Within the lease nothing happens; after it, only an idempotent backend sends again.
    messages_send(now=NOON + timedelta(minutes=5))
    assert Message.objects.get().status == "sending"
    result = messages_send(now=NOON + timedelta(minutes=11))
    m.refresh_from_db()
    if idempotent:
        assert (result.recovered, result.abandoned) == (1, 0)
        assert (m.status, m.attempts) == ("sent", 2)
        assert recorder.calls == [m.pk, m.pk]  # the backend dedupes on the message id
    else:
        assert (result.recovered, result.abandoned) == (0, 1)
        assert (m.status, m.reason) == ("failed", "unknown_outcome")
        assert recorder.calls == [m.pk]


@pytest.mark.django_db(transaction=True)
def test_two_send_workers_deliver_each_message_once(recorder, make_customer, make_campaign):
    campaign = make_campaign(trigger=Trigger.WIN_BACK, steps=((0, "email"), (0, "email")))
    customers = [make_customer() for _ in range(25)]
    for customer in customers:
        enrol(campaign, customer)
    errors = []
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            for _ in range(40):
                claimed = steps_claim(now=NOON, limit=4).claimed
                attempted = messages_deliver(now=NOON, limit=3).attempted
                if not claimed and not attempted:
                    break
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = set(Message.objects.values_list("pk", flat=True))
    assert len(ids) == 50
    assert Counter(recorder.calls) == Counter(dict.fromkeys(ids, 1))
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_transient_errors_retry_with_backoff_then_give_up(
    settings, recorder, make_customer, campaign
):
    settings.OMNI_SEND_MAX_ATTEMPTS = 3
    enrol(campaign, make_customer())

    def flaky(message):
        raise TransientDeliveryError("503 from the gateway")

    recorder.behaviour = flaky
    messages_send(now=NOON)
    m = Message.objects.get()
    assert (m.status, m.attempts, m.reason) == ("queued", 1, "transient")
    assert m.next_attempt_at == NOON + timedelta(minutes=1)
    assert m.detail == "503 from the gateway"
    messages_send(now=NOON + timedelta(seconds=59))
    assert Message.objects.get().attempts == 1  # not before its time
    messages_send(now=NOON + timedelta(minutes=1))
    m.refresh_from_db()
    assert (m.status, m.attempts, m.next_attempt_at) == (
        "queued",
        2,
        NOON + timedelta(minutes=1 + 4),
    )
    messages_send(now=NOON + timedelta(minutes=5))
    m.refresh_from_db()
    assert (m.status, m.attempts, m.reason) == ("failed", 3, "gave_up")
    assert len(recorder.calls) == 3


def test_a_permanent_error_fails_at_once(recorder, make_customer, campaign):
    enrol(campaign, make_customer())

    def refused(message):
        raise PermanentDeliveryError("550 no such user")

    recorder.behaviour = refused
    result = messages_send(now=NOON)
    m = Message.objects.get()
    assert (result.failed, m.status, m.reason, m.detail, m.failed_at) == (
        1,
        "failed",
        "permanent",
        "550 no such user",
        NOON,
    )
    messages_send(now=NOON + timedelta(days=1))
    assert len(recorder.calls) == 1


def test_every_channel_kind_goes_to_its_backend(local_outbox, make_customer, make_campaign):
    from customers.services import identity_add

    customer = make_customer(phone="+33612345678", opt_in=("email", "sms", "push", "social-dm"))
    identity_add(customer=customer, kind="app_device", value="device-42", source="test")
    identity_add(customer=customer, kind="social_handle", value="instagram:lea", source="test")
    for code in ("sms", "push", "social-dm"):
        campaign = make_campaign(name=code, trigger=Trigger.WIN_BACK, steps=((0, code),))
        enrol(campaign, customer)
    messages_send(now=NOON)
    got = {m.channel.code: (m.status, m.to) for m in Message.objects.select_related("channel")}
    assert got == {
        "sms": ("delivered", "+33612345678"),
        "push": ("delivered", "device-42"),
        "social-dm": ("delivered", "instagram:lea"),
    }
    for code in ("sms", "push", "social-dm"):
        assert len(list((local_outbox / code).glob("*.json"))) == 1


def test_a_retry_checks_again_for_an_opt_out(recorder, make_customer, campaign, channels):
    from customers.services import consent_record

    customer = make_customer()
    enrol(campaign, customer)

    def flaky(message):
        raise TransientDeliveryError("timeout")

    recorder.behaviour = flaky
    messages_send(now=NOON)
    consent_record(customer=customer, channel=channels.email, status="opted_out", source="t")
    recorder.behaviour = None
    result = messages_send(now=NOON + timedelta(minutes=1))
    m = Message.objects.get()
    assert (m.status, m.reason) == ("suppressed", "no_consent")
    assert dict(result.suppressed) == {"at_retry": 1}
    assert recorder.calls == [m.pk]  # tried once, never again


def test_a_retry_waits_for_the_end_of_quiet_hours(recorder, rules, make_customer, campaign):
    from datetime import time

    rules.email.quiet_hours_start, rules.email.quiet_hours_end = time(21, 0), time(8, 0)
    rules.email.save()
    enrol(campaign, make_customer(time_zone="Europe/Paris"))
    evening = datetime(2027, 6, 15, 18, 50, tzinfo=UTC)  # 20:50 in Paris
    Enrolment.objects.update(due_at=evening)

    def flaky(message):
        raise TransientDeliveryError("timeout")

    recorder.behaviour = flaky
    messages_send(now=evening)
    recorder.behaviour = None
    m = Message.objects.get()
    assert (m.status, m.attempts, m.next_attempt_at) == (
        "queued",
        1,
        evening + timedelta(minutes=1),
    )
    later = datetime(2027, 6, 15, 19, 5, tzinfo=UTC)  # 21:05 in Paris: quiet
    messages_send(now=later)
    m.refresh_from_db()
    morning = datetime(2027, 6, 16, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    assert (m.status, m.next_attempt_at, m.reason, m.attempts) == (
        "queued",
        morning,
        "quiet_hours",
        1,
    )
    assert len(recorder.calls) == 1
    messages_send(now=morning)
    m.refresh_from_db()
    assert (m.status, m.attempts) == ("sent", 2)


def test_a_retry_exits_when_the_customer_bought(recorder, make_customer, campaign):
    from customers.models import Customer

    customer = make_customer()
    enrol(campaign, customer)

    def flaky(message):
        raise TransientDeliveryError("timeout")

    recorder.behaviour = flaky
    messages_send(now=NOON)
    Customer.objects.filter(pk=customer.pk).update(last_purchase_at=NOON)
    recorder.behaviour = None
    messages_send(now=NOON + timedelta(minutes=1))
    m = Message.objects.get()
    assert (m.status, m.reason, m.detail) == ("suppressed", "exited", "purchased")
    assert len(recorder.calls) == 1


def test_an_email_whose_outcome_is_unknown_is_not_sent_again(
    settings, recorder, make_customer, campaign
):
    from campaigns.backends.base import OutcomeUnknownError

    settings.OMNI_MESSAGING_BACKENDS = {
        **settings.OMNI_MESSAGING_BACKENDS,
        "email": "tests.campaigns.test_deliver.NotIdempotentRecorder",
    }
    enrol(campaign, make_customer())

    def lost(message):
        raise OutcomeUnknownError("connection lost after DATA")

    recorder.behaviour = lost
    messages_send(now=NOON)
    m = Message.objects.get()
    assert (m.status, m.reason) == ("failed", "unknown_outcome")
    messages_send(now=NOON + timedelta(hours=1))
    assert len(recorder.calls) == 1


def test_a_paused_campaign_holds_its_queued_messages(recorder, make_customer, campaign):
    from campaigns.services.campaigns import campaign_activate, campaign_pause

    customers = [make_customer() for _ in range(2)]
    for customer in customers:
        enrol(campaign, customer)
    steps_claim(now=NOON)  # queued; then staff pause the campaign before they go
    campaign_pause(campaign=campaign)
    result = messages_deliver(now=NOON + timedelta(minutes=1))
    assert result.attempted == 0
    assert recorder.calls == []
    assert set(Message.objects.values_list("status", "attempts")) == {("queued", 0)}

    campaign.refresh_from_db()
    campaign_activate(campaign=campaign)
    result = messages_deliver(now=NOON + timedelta(minutes=2))
    assert (result.attempted, result.sent) == (2, 2)
    assert sorted(recorder.calls) == sorted(Message.objects.values_list("pk", flat=True))


def test_a_message_that_waited_is_checked_again_before_it_goes(
    recorder, rules, make_customer, campaign, channels
):
    from datetime import time

    from campaigns.services.campaigns import campaign_activate, campaign_pause
    from customers.services import consent_record

    rules.email.quiet_hours_start, rules.email.quiet_hours_end = time(21, 0), time(8, 0)
    rules.email.save()
    ann, ben = make_customer(time_zone="Europe/Paris"), make_customer(time_zone="Europe/Paris")
    enrol(campaign, ann)
    enrol(campaign, ben)
    steps_claim(now=NOON)
    campaign_pause(campaign=campaign)
    consent_record(customer=ben, channel=channels.email, status="opted_out", source="t")
    campaign.refresh_from_db()
    campaign_activate(campaign=campaign)
    night = datetime(2027, 6, 15, 21, 30, tzinfo=UTC)  # 23:30 in Paris: quiet
    result = messages_deliver(now=night)
    assert recorder.calls == []
    assert (result.attempted, result.suppressed, result.retrying) == (2, 1, 1)
    held = Message.objects.get(customer=ann)
    morning = datetime(2027, 6, 16, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    assert (held.status, held.next_attempt_at, held.reason) == ("queued", morning, "quiet_hours")
    gone = Message.objects.get(customer=ben)
    assert (gone.status, gone.reason) == ("suppressed", "no_consent")
    messages_deliver(now=morning)
    held.refresh_from_db()
    assert held.status == "sent"
    assert recorder.calls == [held.pk]


def test_a_paused_campaign_that_ended_suppresses_its_queued_messages(
    recorder, make_customer, campaign
):
    from campaigns.models import Campaign
    from campaigns.services.campaigns import campaign_pause

    enrol(campaign, make_customer())
    steps_claim(now=NOON)
    campaign_pause(campaign=campaign)
    assert messages_deliver(now=NOON + timedelta(minutes=1)).attempted == 0
    # Its end date passes while it is paused: it can no longer be activated.
    Campaign.objects.filter(pk=campaign.pk).update(ends_at=NOON + timedelta(days=1))
    result = messages_deliver(now=NOON + timedelta(days=1, minutes=1))

    assert (result.attempted, result.suppressed) == (1, 1)
    m = Message.objects.get()
    assert (m.status, m.reason, m.detail) == ("suppressed", "exited", "campaign_ended")
    assert recorder.calls == []


def test_a_batch_whose_rendering_fails_whole_is_tried_again(
    recorder, make_customer, campaign, monkeypatch
):
    from django.db import OperationalError

    import campaigns.rendering

    enrol(campaign, make_customer())
    enrol(campaign, make_customer())
    steps_claim(now=NOON)

    def broken(messages):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(campaigns.rendering, "render_batch", broken)
    result = messages_deliver(now=NOON)
    assert (result.attempted, result.retrying, result.failed) == (2, 2, 0)
    assert set(Message.objects.values_list("status", "reason", "next_attempt_at")) == {
        ("queued", "transient", NOON + timedelta(minutes=1))
    }
    assert recorder.calls == []

    monkeypatch.undo()
    result = messages_deliver(now=NOON + timedelta(minutes=1))
    assert result.sent == 2
    assert len(recorder.calls) == 2


def test_a_retry_on_a_channel_switched_off_since_is_suppressed(
    recorder, rules, make_customer, campaign
):
    enrol(campaign, make_customer())

    def flaky(message):
        raise TransientDeliveryError("timeout")

    recorder.behaviour = flaky
    messages_send(now=NOON)
    rules.email.is_enabled = False
    rules.email.save()
    recorder.behaviour = None
    result = messages_send(now=NOON + timedelta(minutes=1))

    m = Message.objects.get()
    assert (m.status, m.reason) == ("suppressed", "no_channel")
    assert dict(result.suppressed) == {"at_retry": 1}
    assert recorder.calls == [m.pk]  # tried once, never again


def queue(campaign, channel, count, due_at):
    """``count`` queued messages of ``campaign``'s first step, due at ``due_at``, each of its
    own customer and enrolment (bulk: the claim's plan is what is tested, not the claim)."""
    from customers.models import Customer

    step = campaign.steps.get(position=1)
    customers = Customer.objects.bulk_create(
        Customer(first_name=f"Q{n}", time_zone="Europe/Paris", created_at=NOON, updated_at=NOON)
        for n in range(count)
    )
    enrolments = Enrolment.objects.bulk_create(
        Enrolment(
            campaign=campaign,
            customer=customer,
            subject_key=f"queue:{customer.pk}",
            enrolled_at=NOON - timedelta(hours=1),
            due_at=NOON,
            next_position=2,
        )
        for customer in customers
    )
    return Message.objects.bulk_create(
        Message(
            enrolment=enrolment,
            campaign=campaign,
            step=step,
            customer=enrolment.customer,
            channel=channel,
            status="queued",
            to=f"q{enrolment.pk}@example.com",
            next_attempt_at=due_at,
            created_at=NOON - timedelta(hours=1),
        )
        for enrolment in enrolments
    )


def test_a_paused_campaigns_queue_is_not_read_by_the_delivery(recorder, make_campaign, channels):
    """Its messages stay queued until it is activated again; each batch reads the queue of
    each campaign that may send, from the (campaign, next_attempt_at, id) index in its order,
    so a long paused queue (due earlier than everything else) costs a batch nothing."""
    from campaigns.models import CampaignStatus

    paused = make_campaign(status=CampaignStatus.PAUSED)
    active = make_campaign()
    idle = [make_campaign() for _ in range(3)]  # active, nothing due: no lock query either
    queue(idle[0], channels.email, 5, NOON + timedelta(minutes=5))
    queue(paused, channels.email, 3000, NOON - timedelta(minutes=5))
    waiting = queue(active, channels.email, 30, NOON - timedelta(minutes=1))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Message._meta.db_table}")
    with CaptureQueriesContext(connection) as captured:
        result = messages_deliver(now=NOON, limit=100)

    assert result.attempted == 30
    assert set(Message.objects.exclude(status="queued").values_list("pk", flat=True)) == {
        m.pk for m in waiting
    }
    claims = [q["sql"] for q in captured if "SKIP LOCKED" in q["sql"]]
    assert len(claims) == 1  # the active campaign's only
    assert f'"campaign_id" = {active.pk}' in claims[0]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + claims[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_queue_idx" in plan, plan
    assert "Sort" not in plan, plan
    # Which campaigns have something due: probes of the same index, not a read of the queue.
    chosen = next(q["sql"] for q in captured if 'FROM "campaigns_campaign"' in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + chosen)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_queue_idx" in plan, plan
    assert "campaign_id = campaigns_campaign.id" in plan, plan  # one probe per campaign
    assert "Seq Scan on campaigns_message" not in plan, plan


def test_a_delivery_batch_is_shared_between_campaigns_then_filled(
    recorder, make_campaign, channels
):
    """A campaign with a long queue due earlier does not hold up another's messages: each
    first gets its share of the batch, then the long queue takes what the other left, oldest
    first."""
    big, small = make_campaign(), make_campaign()
    early = queue(big, channels.email, 100, NOON - timedelta(minutes=9))
    later = queue(big, channels.email, 200, NOON - timedelta(minutes=3))
    few = queue(small, channels.email, 20, NOON - timedelta(minutes=1))

    result = messages_deliver(now=NOON, limit=100)

    assert result.attempted == 100
    taken = set(Message.objects.exclude(status="queued").values_list("pk", flat=True))
    assert {m.pk for m in few} <= taken
    assert taken - {m.pk for m in few} == {m.pk for m in early[:80]}
    assert messages_deliver(now=NOON, limit=500).attempted == 220
    assert not Message.objects.filter(status="queued").exists()
    assert {m.pk for m in later} <= set(recorder.calls)
