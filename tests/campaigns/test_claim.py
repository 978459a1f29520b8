"""Phase one of sending: due steps become queued or suppressed messages, or wait, after the
send-time checks (exit, holdout, consent, address, fallback, cap, quiet hours)."""

import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import (
    Enrolment,
    EnrolmentStatus,
    Message,
    MessageStatus,
    MessagingRule,
    OverCap,
    Purpose,
    Trigger,
)
from campaigns.services.sending import quiet_until, steps_claim
from customers.models import Customer
from customers.services import consent_record, customer_update
from inventory.models import ChannelAvailability
from omni.models import Channel
from orders.models import Cart, CartStatus
from tests.factories import VariantFactory

NOON = datetime(2027, 6, 15, 10, 0, tzinfo=UTC)  # 12:00 in Paris (after consents given now)


@pytest.fixture
def make_campaign(make_campaign):
    """Campaigns on the win-back trigger unless a test says otherwise: its subject has
    nothing to exit on, so each test controls the exits it checks."""

    def _make(**fields):
        fields.setdefault("trigger", Trigger.WIN_BACK)
        return make_campaign(**fields)

    return _make


def enrol(campaign, customer, *, key=None, at=NOON, **fields):
    fields.setdefault("due_at", at)
    return Enrolment.objects.create(
        campaign=campaign,
        customer=customer,
        subject_key=key or f"test:{customer.pk}:{Enrolment.objects.count()}",
        enrolled_at=at - timedelta(hours=1),
        **fields,
    )


def messages(**filters):
    return list(
        Message.objects.filter(**filters)
        .order_by("pk")
        .values_list("status", "reason", "channel__code")
    )


def test_a_due_step_becomes_one_queued_message(make_customer, make_campaign):
    customer = make_customer(email="ana@example.com")
    campaign = make_campaign(steps=((0, "email"), (60, "email")))
    e = enrol(campaign, customer)
    result = steps_claim(now=NOON)
    assert (result.claimed, result.queued) == (1, 1)
    m = Message.objects.get()
    assert (m.status, m.channel.code, m.to, m.step.position) == (
        "queued",
        "email",
        "ana@example.com",
        1,
    )
    assert (m.is_marketing, m.next_attempt_at, m.created_at) == (True, NOON, NOON)
    e.refresh_from_db()
    assert (e.status, e.next_position, e.due_at) == ("active", 2, NOON + timedelta(minutes=60))
    # Not due again before the second step's time.
    assert steps_claim(now=NOON + timedelta(minutes=59)).claimed == 0
    later = NOON + timedelta(minutes=60)
    assert steps_claim(now=later).queued == 1
    e.refresh_from_db()
    assert (e.status, e.due_at, e.finished_at) == ("completed", None, later)
    assert Message.objects.count() == 2
    assert steps_claim(now=later + timedelta(days=1)).claimed == 0


def test_consent_revoked_after_enrolment_is_suppressed(make_customer, make_campaign, channels):
    customer = make_customer()
    campaign = make_campaign()
    enrol(campaign, customer)
    consent_record(customer=customer, channel=channels.email, status="opted_out", source="test")
    result = steps_claim(now=NOON)
    assert dict(result.suppressed) == {"no_consent": 1}
    assert messages() == [("suppressed", "no_consent", "email")]


def test_fallback_to_the_next_channel(make_customer, make_campaign, rules, channels):
    customer = make_customer(phone="+33612345678", opt_in=("sms",))
    rules.email.fallback_channel = channels.sms
    rules.email.save()
    campaign = make_campaign(steps=((0, "email"),))
    enrol(campaign, customer)
    steps_claim(now=NOON)
    m = Message.objects.get()
    assert (m.status, m.channel.code, m.to) == ("queued", "sms", "+33612345678")


def test_step_channel_order_and_preferred_channel(make_customer, make_campaign, channels):
    customer = make_customer(phone="+33612345678", opt_in=("email", "sms"))
    customer_update(customer=customer, data={"preferred_channel": "email"})
    campaign = make_campaign(steps=((0, "email,sms"),))
    enrol(campaign, customer, key="a")
    steps_claim(now=NOON)
    assert messages() == [("queued", "", "email")]
    customer_update(customer=customer, data={"preferred_channel": "sms"})
    assert Customer.objects.get(pk=customer.pk).preferred_channel_id == channels.sms.pk
    enrol(campaign, customer, key="b")
    steps_claim(now=NOON)
    assert messages()[-1] == ("queued", "", "sms")


def test_no_address_is_suppressed(make_customer, make_campaign):
    customer = make_customer(email=None, opt_in=("sms",))  # a loyalty card only
    campaign = make_campaign(steps=((0, "sms"),))
    enrol(campaign, customer)
    steps_claim(now=NOON)
    assert messages() == [("suppressed", "no_address", "sms")]


def test_disabled_channel_is_skipped_for_the_next(make_customer, make_campaign, rules):
    customer = make_customer(phone="+33612345678", opt_in=("email", "sms"))
    rules.email.is_enabled = False
    rules.email.save()
    campaign = make_campaign(steps=((0, "email,sms"),))
    enrol(campaign, customer)
    steps_claim(now=NOON)
    assert messages() == [("queued", "", "sms")]
    rules.sms.is_enabled = False
    rules.sms.save()
    enrol(campaign, customer, key="again")
    steps_claim(now=NOON)
    assert messages()[-1] == ("suppressed", "no_channel", None)


def test_cart_converted_before_the_step_exits(make_customer, make_campaign, channels):
    customer = make_customer()
    now = timezone.now()
    cart = Cart.objects.create(
        token="c1",
        channel=channels.web,
        customer=customer,
        currency="EUR",
        created_at=now,
        last_activity_at=now,
    )
    campaign = make_campaign(trigger=Trigger.CART_ABANDONED, steps=((0, "email"), (60, "email")))
    e = enrol(campaign, customer, cart=cart, at=now)
    Cart.objects.filter(pk=cart.pk).update(status=CartStatus.CONVERTED, closed_at=now)
    result = steps_claim(now=now)
    assert dict(result.exited) == {"cart_converted": 1}
    m = Message.objects.get()
    assert (m.status, m.reason, m.detail) == ("suppressed", "exited", "cart_converted")
    e.refresh_from_db()
    assert (e.status, e.exit_reason, e.due_at) == ("exited", "cart_converted", None)
    assert steps_claim(now=now + timedelta(hours=2)).claimed == 0


def test_a_purchase_after_enrolment_exits(make_customer, make_campaign):
    customer = make_customer()
    campaign = make_campaign()
    enrol(campaign, customer)
    Customer.objects.filter(pk=customer.pk).update(last_purchase_at=NOON - timedelta(minutes=5))
    steps_claim(now=NOON)
    assert Enrolment.objects.get().exit_reason == "purchased"
    no_exit = make_campaign(name="Keep going", exit_on_purchase=False)
    enrol(no_exit, customer)
    steps_claim(now=NOON)
    assert messages(campaign=no_exit) == [("queued", "", "email")]


def test_back_in_stock_sold_out_again_exits(make_customer, make_campaign, channels):
    customer = make_customer()
    variant = VariantFactory(sku="SKU-X")
    campaign = make_campaign(trigger=Trigger.BACK_IN_STOCK, min_quantity=2)
    enrol(campaign, customer, variant=variant, sales_channel=channels.web)
    ChannelAvailability.objects.create(
        variant=variant, channel=channels.web, quantity=1, updated_at=NOON
    )
    steps_claim(now=NOON)
    assert Enrolment.objects.get().exit_reason == "sold_out"


def test_holdout_is_suppressed_at_every_step(make_customer, make_campaign):
    customer = make_customer()
    campaign = make_campaign(steps=((0, "email"), (0, "email")), holdout_percent=50)
    e = enrol(campaign, customer, holdout=True)
    steps_claim(now=NOON)
    steps_claim(now=NOON)
    assert messages() == [("suppressed", "holdout", None)] * 2
    e.refresh_from_db()
    assert e.status == "completed"


@pytest.mark.parametrize("over_cap", [OverCap.SKIP, OverCap.DEFER])
def test_frequency_cap_across_campaigns(over_cap, make_customer, make_campaign, rules):
    rules.email.frequency_cap = 1
    rules.email.cap_period_hours = 24
    rules.email.over_cap = over_cap
    rules.email.save()
    customer = make_customer()
    first = make_campaign(name="First")
    second = make_campaign(name="Second")
    enrol(first, customer)
    steps_claim(now=NOON)
    late = enrol(second, customer, at=NOON + timedelta(hours=2))
    result = steps_claim(now=NOON + timedelta(hours=2))
    late.refresh_from_db()
    if over_cap == OverCap.SKIP:
        assert dict(result.suppressed) == {"capped": 1}
        assert messages(campaign=second) == [("suppressed", "capped", "email")]
        assert late.status == "completed"
    else:
        assert dict(result.deferred) == {"capped": 1}
        assert messages(campaign=second) == []
        assert (late.due_at, late.deferrals, late.last_deferral) == (
            NOON + timedelta(hours=24),
            1,
            "capped",
        )
        steps_claim(now=NOON + timedelta(hours=24))
        assert messages(campaign=second) == [("queued", "", "email")]


def test_transactional_ignores_the_cap_but_not_an_opt_out(
    make_customer, make_campaign, rules, channels
):
    rules.email.frequency_cap = 1
    rules.email.over_cap = OverCap.SKIP
    rules.email.save()
    customer = make_customer(opt_in=())  # no opt-in: transactional still goes
    Message.objects.bulk_create([])
    notice = make_campaign(
        name="Pickup", trigger=Trigger.PICKUP_READY, purpose=Purpose.TRANSACTIONAL
    )
    marketing = make_campaign(name="Promo")
    consent_record(customer=customer, channel=channels.email, status="opted_in", source="t")
    enrol(marketing, customer)
    steps_claim(now=NOON)
    # The pickup notice checks its order: give it none so we test the channel only.
    notice.trigger = Trigger.STORE_PURCHASE
    notice.save()
    enrol(notice, customer)
    steps_claim(now=NOON)
    assert messages(campaign=notice) == [("queued", "", "email")]
    consent_record(customer=customer, channel=channels.email, status="opted_out", source="t")
    enrol(notice, customer, key="again")
    steps_claim(now=NOON)
    assert messages(campaign=notice)[-1] == ("suppressed", "no_consent", "email")


def test_quiet_hours_in_the_customers_time_zone(make_customer, make_campaign, rules):
    rules.sms.quiet_hours_start, rules.sms.quiet_hours_end = time(21, 0), time(8, 0)
    rules.sms.save()
    customer = make_customer(phone="+12125550123", opt_in=("sms",), time_zone="America/New_York")
    campaign = make_campaign(steps=((0, "sms"),))
    at = datetime(2027, 6, 15, 7, 0, tzinfo=UTC)  # 03:00 in New York, 09:00 in Paris
    e = enrol(campaign, customer, at=at)
    result = steps_claim(now=at)
    assert dict(result.deferred) == {"quiet_hours": 1}
    e.refresh_from_db()
    end = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)  # 08:00 in New York (EDT)
    assert (e.due_at, e.last_deferral, e.deferrals) == (end, "quiet_hours", 1)
    assert Message.objects.count() == 0
    steps_claim(now=end)
    assert messages() == [("queued", "", "sms")]


def test_quiet_until_spans_midnight_and_same_day():
    tz = "Europe/Paris"
    # 22:30 Paris (20:30 UTC, summer) -> 08:00 next day
    assert quiet_until(time(21), time(8), tz, datetime(2026, 6, 15, 20, 30, tzinfo=UTC)) == (
        datetime(2026, 6, 16, 6, 0, tzinfo=UTC)
    )
    # 07:59 Paris -> 08:00 the same day
    assert quiet_until(time(21), time(8), tz, datetime(2026, 6, 15, 5, 59, tzinfo=UTC)) == (
        datetime(2026, 6, 15, 6, 0, tzinfo=UTC)
    )
    assert quiet_until(time(21), time(8), tz, datetime(2026, 6, 15, 6, 0, tzinfo=UTC)) is None
    # A daytime window 12:00-14:00
    assert quiet_until(time(12), time(14), tz, datetime(2026, 6, 15, 10, 30, tzinfo=UTC)) == (
        datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    )
    assert quiet_until(None, None, tz, NOON) is None


def test_paused_campaign_waits_and_ended_campaign_exits(make_customer, make_campaign):
    customer = make_customer()
    paused = make_campaign(name="Paused")
    enrol(paused, customer)
    paused.status = "paused"
    paused.save()
    assert steps_claim(now=NOON).claimed == 0
    paused.status = "active"
    paused.save()
    assert steps_claim(now=NOON).queued == 1
    ended = make_campaign(
        name="Ended", starts_at=NOON - timedelta(days=5), ends_at=NOON - timedelta(days=1)
    )
    enrol(ended, customer)
    steps_claim(now=NOON)
    assert Enrolment.objects.get(campaign=ended).exit_reason == "campaign_ended"


@pytest.mark.django_db(transaction=True)
def test_two_workers_claim_each_step_once(make_customer, make_campaign):
    campaign = make_campaign(steps=((0, "email"), (0, "email")))
    customers = [make_customer() for _ in range(30)]
    for customer in customers:
        enrol(campaign, customer)
    errors = []
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            while steps_claim(now=NOON, limit=7).claimed:
                pass
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
    assert Message.objects.filter(status=MessageStatus.QUEUED).count() == 60
    per_enrolment = set(
        Enrolment.objects.filter(campaign=campaign).values_list("status", "next_position")
    )
    assert per_enrolment == {(EnrolmentStatus.COMPLETED, 2)}


@pytest.mark.django_db(transaction=True)
def test_cap_holds_under_concurrency(make_customer, make_campaign, rules):
    rules.email.frequency_cap = 1
    rules.email.over_cap = OverCap.SKIP
    rules.email.save()
    customers = [make_customer() for _ in range(8)]
    campaigns = [make_campaign(name=f"C{i}") for i in range(2)]
    for customer in customers:
        for campaign in campaigns:
            enrol(campaign, customer)
    errors = []
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            while steps_claim(now=NOON, limit=3).claimed:
                pass
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
    for customer in customers:
        statuses = sorted(Message.objects.filter(customer=customer).values_list("status", "reason"))
        assert statuses == [("queued", ""), ("suppressed", "capped")]


def test_rule_validation_messages(channels):
    from django.core.exceptions import ValidationError

    rule = MessagingRule(channel=Channel.objects.get(code="email"), quiet_hours_start=time(21))
    with pytest.raises(ValidationError, match="both ends"):
        rule.validate_constraints()
    rule.quiet_hours_end = time(21)
    with pytest.raises(ValidationError, match="different times"):
        rule.clean()


@pytest.mark.django_db(transaction=True)
def test_a_customer_locked_by_a_merge_or_erasure_is_skipped_not_waited_for(
    make_customer, make_campaign
):
    """A merge or an erasure locks the customer, then her enrolments; the claim locks
    enrolments then customers. It skips a customer another transaction holds instead of
    waiting, so the two can never deadlock; her step goes out on a later run."""
    busy, free = make_customer(), make_customer()
    campaign = make_campaign()
    enrol(campaign, busy)
    enrol(campaign, free)
    locked, release, done = threading.Event(), threading.Event(), threading.Event()

    def merge_like():
        from django.db import transaction

        with transaction.atomic():
            list(Customer.objects.select_for_update().filter(pk=busy.pk))
            locked.set()
            release.wait(10)
        connection.close()
        done.set()

    holder = threading.Thread(target=merge_like)
    holder.start()
    assert locked.wait(10)
    try:
        result = steps_claim(now=NOON)  # must not block on the held customer
        assert result.claimed == 1
        assert list(Message.objects.values_list("customer_id", flat=True)) == [free.pk]
    finally:
        release.set()
        holder.join(10)
    assert done.is_set()
    assert steps_claim(now=NOON).claimed == 1
    assert sorted(Message.objects.values_list("customer_id", flat=True)) == sorted(
        [busy.pk, free.pk]
    )


def test_a_backlog_due_at_one_instant_is_claimed_from_the_index(make_campaign):
    """A broadcast, or a backlog after a stop, leaves thousands of steps due at the same
    instant: the claim reads them from the (campaign, due_at, id) index in its own order, a
    batch at a time, instead of sorting them all (with their customers joined) per batch.
    Active campaigns with nothing due cost no lock query."""
    campaign = make_campaign()
    make_campaign(), make_campaign()  # idle
    customers = Customer.objects.bulk_create(
        Customer(first_name=f"C{n}", time_zone="Europe/Paris", created_at=NOON, updated_at=NOON)
        for n in range(3000)
    )
    Enrolment.objects.bulk_create(
        Enrolment(
            campaign=campaign,
            customer=customer,
            subject_key=f"backlog:{customer.pk}",
            enrolled_at=NOON - timedelta(hours=1),
            due_at=NOON,
        )
        for customer in customers
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Enrolment._meta.db_table}")
        cursor.execute(f"ANALYZE {Customer._meta.db_table}")
    with CaptureQueriesContext(connection) as captured:
        result = steps_claim(now=NOON, limit=100)
    assert result.claimed == 100
    claim = [q["sql"] for q in captured if "FOR NO KEY UPDATE" in q["sql"]]
    assert len(claim) == 1
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + claim[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "enrolment_claim_idx" in plan, plan
    assert "Sort" not in plan, plan
    # The first hundred in (due_at, id) order, all at one instant: the lowest ids.
    claimed = Enrolment.objects.filter(campaign=campaign, status=EnrolmentStatus.COMPLETED)
    assert set(claimed.values_list("pk", flat=True)) == set(
        Enrolment.objects.filter(campaign=campaign)
        .order_by("pk")
        .values_list("pk", flat=True)[:100]
    )


def test_a_batch_is_shared_then_filled(make_campaign):
    """Two campaigns with steps due, one with a backlog: each first gets its share of the
    batch, then the backlog takes what the other left, in its (due_at, id) order."""
    big, small = make_campaign(), make_campaign()
    customers = Customer.objects.bulk_create(
        Customer(first_name=f"C{n}", time_zone="Europe/Paris", created_at=NOON, updated_at=NOON)
        for n in range(610)
    )

    def due(campaign, chosen, minutes):
        return Enrolment.objects.bulk_create(
            Enrolment(
                campaign=campaign,
                customer=customer,
                subject_key=f"share:{customer.pk}",
                enrolled_at=NOON - timedelta(hours=1),
                due_at=NOON - timedelta(minutes=minutes),
            )
            for customer in chosen
        )

    # The backlog: 600 steps, the first 300 due earlier than the rest.
    backlog = due(big, customers[:300], 30) + due(big, customers[300:600], 10)
    few = due(small, customers[600:], 20)
    result = steps_claim(now=NOON, limit=500)
    assert result.claimed == 500
    done = set(
        Enrolment.objects.filter(status=EnrolmentStatus.COMPLETED).values_list("pk", flat=True)
    )
    assert {e.pk for e in few} <= done
    assert done - {e.pk for e in few} == {e.pk for e in backlog[:490]}
    # The next batch takes the rest.
    assert steps_claim(now=NOON, limit=500).claimed == 110
