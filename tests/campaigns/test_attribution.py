"""Attribution of orders to campaign messages (click or delivery per channel rule, inside the
campaign's window, per-channel overrides, cancelled orders ignored, re-runs add nothing) and
the conversions of treated and held-out enrolments behind lift."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest

from campaigns.models import (
    AttributeOn,
    Attribution,
    AttributionWindow,
    Enrolment,
    EnrolmentStatus,
    Message,
    MessageStatus,
)
from campaigns.services.attribution import attributions_compute, enrolment_conversions_mark
from campaigns.services.tracking import message_click_record
from customers.models import Touchpoint
from orders.models import Order, OrderStatus

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_numbers = count(1)


def make_order(customer, channel, placed_at, total="50.00", status=OrderStatus.PLACED):
    n = next(_numbers)
    return Order.objects.create(
        number=f"T{n:07d}",
        channel=channel,
        customer=customer,
        status=status,
        fulfilment_method="ship",
        public_token=f"token{n:027d}",
        currency="EUR",
        subtotal=Decimal(total),
        total=Decimal(total),
        placed_at=placed_at,
        source="test",
    )


def enrol(campaign, customer, enrolled_at, *, holdout=False, subject="cart:1"):
    return Enrolment.objects.create(
        campaign=campaign,
        customer=customer,
        subject_key=subject,
        holdout=holdout,
        status=EnrolmentStatus.COMPLETED,
        enrolled_at=enrolled_at,
        finished_at=enrolled_at,
    )


def send(enrolment, channel, sent_at, *, clicked_at=None, delivered_at=None, step=None):
    step = step or enrolment.campaign.steps.get(position=1)
    return Message.objects.create(
        enrolment=enrolment,
        campaign=enrolment.campaign,
        step=step,
        customer=enrolment.customer,
        channel=channel,
        status=MessageStatus.DELIVERED if delivered_at else MessageStatus.SENT,
        created_at=sent_at,
        sent_at=sent_at,
        delivered_at=delivered_at,
        clicked_at=clicked_at,
        clicks=1 if clicked_at else 0,
    )


@pytest.fixture
def setup(channels, make_campaign, make_customer):
    """A campaign with a 48-hour window, one customer enrolled 3 days ago and sent an email."""

    class S:
        pass

    s = S()
    s.channels = channels
    s.campaign = make_campaign(attribution_window_hours=48, steps=((0, "email"), (60, "sms")))
    s.customer = make_customer()
    s.enrolment = enrol(s.campaign, s.customer, NOW - timedelta(days=3))
    return s


def test_order_after_a_click_inside_the_window_is_credited(setup):
    clicked = NOW - timedelta(hours=20)
    message = send(
        setup.enrolment, setup.channels.email, NOW - timedelta(hours=30), clicked_at=clicked
    )
    order = make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=2), "80.00")

    assert attributions_compute(now=NOW) == 1

    attribution = Attribution.objects.get()
    assert (
        attribution.order_id,
        attribution.message_id,
        attribution.campaign_id,
        attribution.step_id,
        attribution.channel_id,
        attribution.basis,
        attribution.touched_at,
        attribution.revenue,
        attribution.currency,
        attribution.placed_at,
        attribution.attributed_at,
    ) == (
        order.pk,
        message.pk,
        setup.campaign.pk,
        message.step_id,
        setup.channels.email.pk,
        AttributeOn.CLICK,
        clicked,
        Decimal("80.00"),
        "EUR",
        order.placed_at,
        NOW,
    )


def test_order_outside_the_window_is_not_credited(setup):
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=60),
        clicked_at=NOW - timedelta(hours=50, minutes=1),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=2))

    assert attributions_compute(now=NOW) == 0
    assert Attribution.objects.count() == 0


def test_window_edge_is_inclusive(setup):
    placed = NOW - timedelta(hours=2)
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=55),
        clicked_at=placed - timedelta(hours=48),
    )
    make_order(setup.customer, setup.channels.web, placed)

    assert attributions_compute(now=NOW) == 1


def test_order_before_the_click_is_not_credited(setup):
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=5),
        clicked_at=NOW - timedelta(hours=1),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=2))

    assert attributions_compute(now=NOW) == 0


def test_click_rule_ignores_a_message_delivered_but_not_clicked(setup):
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=5),
        delivered_at=NOW - timedelta(hours=5),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=2))

    assert attributions_compute(now=NOW) == 0


def test_delivery_rule_credits_the_last_message_received(setup, rules):
    rules.sms.attribute_on = AttributeOn.DELIVERY
    rules.sms.save()
    sms_step = setup.campaign.steps.get(position=2)
    send(setup.enrolment, setup.channels.email, NOW - timedelta(hours=10))  # not clicked
    delivered = NOW - timedelta(hours=6)
    sms = send(
        setup.enrolment,
        setup.channels.sms,
        NOW - timedelta(hours=7),
        delivered_at=delivered,
        step=sms_step,
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=1))

    assert attributions_compute(now=NOW) == 1
    attribution = Attribution.objects.get()
    assert (attribution.message_id, attribution.basis, attribution.touched_at) == (
        sms.pk,
        AttributeOn.DELIVERY,
        delivered,
    )
    assert attribution.step_id == sms_step.pk


def test_delivery_rule_uses_the_send_time_when_the_backend_reports_no_delivery(setup, rules):
    rules.email.attribute_on = AttributeOn.DELIVERY
    rules.email.save()
    sent = NOW - timedelta(hours=10)
    send(setup.enrolment, setup.channels.email, sent)
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=1))

    assert attributions_compute(now=NOW) == 1
    assert Attribution.objects.get().touched_at == sent


def test_the_last_touch_wins_across_campaigns(setup, make_campaign):
    other = make_campaign(attribution_window_hours=48)
    other_enrolment = enrol(other, setup.customer, NOW - timedelta(days=2), subject="cart:2")
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=30),
        clicked_at=NOW - timedelta(hours=9),
    )
    later = send(
        other_enrolment,
        setup.channels.email,
        NOW - timedelta(hours=20),
        clicked_at=NOW - timedelta(hours=8),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=1))

    attributions_compute(now=NOW)

    attribution = Attribution.objects.get()
    assert (attribution.message_id, attribution.campaign_id) == (later.pk, other.pk)


def test_per_channel_window_overrides_the_campaign_window(setup, make_customer):
    AttributionWindow.objects.create(campaign=setup.campaign, channel=setup.channels.email, hours=6)
    # Clicked 10 hours before the order: inside the campaign's 48 hours, outside email's 6.
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=12),
        clicked_at=NOW - timedelta(hours=11),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=1))
    # The override only applies to email: an SMS click 20 hours before still counts.
    sms_customer = make_customer(phone="+33612345678", opt_in=("sms",))
    sms_enrolment = enrol(setup.campaign, sms_customer, NOW - timedelta(days=2))
    sms = send(
        sms_enrolment,
        setup.channels.sms,
        NOW - timedelta(hours=22),
        clicked_at=NOW - timedelta(hours=21),
        step=setup.campaign.steps.get(position=2),
    )
    sms_order = make_order(sms_customer, setup.channels.web, NOW - timedelta(hours=1))

    assert attributions_compute(now=NOW) == 1
    assert Attribution.objects.get().order_id == sms_order.pk
    assert Attribution.objects.get().message_id == sms.pk


def test_per_channel_window_may_be_longer(setup):
    AttributionWindow.objects.create(
        campaign=setup.campaign, channel=setup.channels.email, hours=100
    )
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=72),
        clicked_at=NOW - timedelta(hours=71),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=1))

    assert attributions_compute(now=NOW) == 1


def test_cancelled_orders_are_ignored(setup):
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=5),
        clicked_at=NOW - timedelta(hours=4),
    )
    make_order(
        setup.customer, setup.channels.web, NOW - timedelta(hours=2), status=OrderStatus.CANCELLED
    )

    assert attributions_compute(now=NOW) == 0
    assert Attribution.objects.count() == 0


def test_orders_of_other_customers_and_before_since_are_ignored(setup, make_customer):
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(days=9),
        clicked_at=NOW - timedelta(days=8, hours=23),
    )
    # Placed 8 days ago: inside the window of the click but before the default 7 days.
    make_order(setup.customer, setup.channels.web, NOW - timedelta(days=8, hours=22))
    make_order(make_customer(), setup.channels.web, NOW - timedelta(hours=1))

    assert attributions_compute(now=NOW) == 0
    assert attributions_compute(now=NOW, since=NOW - timedelta(days=10)) == 1


def test_each_order_is_credited_once_and_re_runs_add_nothing(setup):
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=30),
        clicked_at=NOW - timedelta(hours=20),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=3), "10.00")
    make_order(setup.customer, setup.channels.pos, NOW - timedelta(hours=2), "20.00")

    assert attributions_compute(now=NOW) == 2
    assert attributions_compute(now=NOW) == 0
    assert attributions_compute(now=NOW + timedelta(hours=1)) == 0
    assert sorted(Attribution.objects.values_list("revenue", flat=True)) == [
        Decimal("10.00"),
        Decimal("20.00"),
    ]


def test_an_existing_attribution_is_kept(setup, make_campaign):
    first = send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=30),
        clicked_at=NOW - timedelta(hours=20),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=2))
    attributions_compute(now=NOW - timedelta(hours=1))
    # A later click (before the order) appears afterwards: the order keeps its attribution.
    other = make_campaign()
    later = enrol(other, setup.customer, NOW - timedelta(days=1), subject="cart:9")
    send(later, setup.channels.email, NOW - timedelta(hours=4), clicked_at=NOW - timedelta(hours=3))

    assert attributions_compute(now=NOW) == 0
    assert Attribution.objects.get().message_id == first.pk


def test_suppressed_messages_are_never_credited(setup):
    Message.objects.create(
        enrolment=setup.enrolment,
        campaign=setup.campaign,
        step=setup.campaign.steps.get(position=1),
        customer=setup.customer,
        channel=setup.channels.email,
        status=MessageStatus.SUPPRESSED,
        reason="capped",
        created_at=NOW - timedelta(hours=5),
        clicked_at=NOW - timedelta(hours=4),
    )
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=2))

    assert attributions_compute(now=NOW) == 0


# --- The latest click before the order -------------------------------------------------------


def click(message, at):
    assert message_click_record(message_id=message.pk, url="https://shop.example.com/", at=at)


def test_the_latest_click_inside_the_window_is_followed_not_the_first(setup):
    message = send(setup.enrolment, setup.channels.email, NOW - timedelta(days=5))
    click(message, NOW - timedelta(days=4))  # outside the 48 hours before the order
    latest = NOW - timedelta(hours=3)
    click(message, latest)
    order = make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=1), "25.00")

    assert attributions_compute(now=NOW) == 1
    attribution = Attribution.objects.get()
    assert (
        attribution.order_id,
        attribution.message_id,
        attribution.basis,
        attribution.touched_at,
        attribution.revenue,
    ) == (order.pk, message.pk, AttributeOn.CLICK, latest, Decimal("25.00"))
    assert attributions_compute(now=NOW) == 0
    assert attributions_compute(now=NOW + timedelta(hours=1)) == 0
    assert Attribution.objects.count() == 1


def test_a_click_after_the_order_does_not_count(setup, make_campaign):
    placed = NOW - timedelta(hours=1)
    # Clicked 4 days and 40 hours before the order, and again after it: the order follows the
    # last click before it (inside the 48 hours), read from the timeline.
    message = send(setup.enrolment, setup.channels.email, NOW - timedelta(days=5))
    click(message, placed - timedelta(days=4))
    before = placed - timedelta(hours=40)
    click(message, before)
    click(message, placed + timedelta(minutes=30))
    # Clicks that are not the message's own tracked clicks are not read.
    for source, message_id, hours in (("test", message.pk, 5), ("omni:campaigns", 999_999, 4)):
        Touchpoint.objects.create(
            customer=setup.customer,
            channel=setup.channels.email,
            kind="link_clicked",
            occurred_at=placed - timedelta(hours=hours),
            source=source,
            event_id=f"other-{hours}",
            received_at=NOW,
            properties={"message": message_id},
        )
    # Another campaign's message clicked only after the order is never a candidate.
    other = make_campaign(attribution_window_hours=48)
    late = send(enrol(other, setup.customer, NOW - timedelta(days=1)), setup.channels.email, NOW)
    click(late, placed + timedelta(minutes=10))
    order = make_order(setup.customer, setup.channels.web, placed)

    assert attributions_compute(now=NOW) == 1
    attribution = Attribution.objects.get()
    assert (attribution.order_id, attribution.message_id, attribution.touched_at) == (
        order.pk,
        message.pk,
        before,
    )
    assert attributions_compute(now=NOW) == 0


def test_a_click_after_the_order_does_not_outrank_an_earlier_click_elsewhere(setup, make_campaign):
    placed = NOW - timedelta(hours=1)
    first = send(setup.enrolment, setup.channels.email, NOW - timedelta(days=1))
    click(first, placed - timedelta(hours=10))
    click(first, placed + timedelta(minutes=30))
    other = make_campaign(attribution_window_hours=48)
    second = send(enrol(other, setup.customer, NOW - timedelta(days=1)), setup.channels.email, NOW)
    click(second, placed - timedelta(hours=5))
    make_order(setup.customer, setup.channels.web, placed)

    assert attributions_compute(now=NOW) == 1
    attribution = Attribution.objects.get()
    assert (attribution.message_id, attribution.campaign_id, attribution.touched_at) == (
        second.pk,
        other.pk,
        placed - timedelta(hours=5),
    )


def test_the_last_click_before_the_order_must_be_inside_the_window(setup):
    placed = NOW - timedelta(hours=1)
    message = send(setup.enrolment, setup.channels.email, NOW - timedelta(days=3))
    click(message, placed - timedelta(hours=48, minutes=1))
    click(message, placed + timedelta(minutes=5))
    make_order(setup.customer, setup.channels.web, placed)

    assert attributions_compute(now=NOW) == 0


def test_without_the_timeline_the_first_click_stands_in(setup):
    """An erased customer's timeline is gone: of the clicks, only the first is known to
    precede the order."""
    placed = NOW - timedelta(hours=1)
    first_click = placed - timedelta(hours=10)
    message = send(
        setup.enrolment, setup.channels.email, NOW - timedelta(days=1), clicked_at=first_click
    )
    Message.objects.filter(pk=message.pk).update(last_clicked_at=placed + timedelta(minutes=1))
    make_order(setup.customer, setup.channels.web, placed)

    assert attributions_compute(now=NOW) == 1
    assert Attribution.objects.get().touched_at == first_click


# --- Conversions of enrolments (lift) ---------------------------------------------------------


def test_treated_and_holdout_enrolments_convert_with_their_first_order(setup, make_customer):
    held = make_customer()
    held_enrolment = enrol(setup.campaign, held, NOW - timedelta(days=1), holdout=True)
    treated = enrol(setup.campaign, setup.customer, NOW - timedelta(days=1), subject="cart:5")
    first = make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=20), "30.00")
    make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=10), "99.00")
    held_order = make_order(held, setup.channels.pos, NOW - timedelta(hours=5), "12.50")

    attributions_compute(now=NOW)

    treated.refresh_from_db()
    held_enrolment.refresh_from_db()
    assert (treated.converted_order_id, treated.converted_at, treated.revenue) == (
        first.pk,
        first.placed_at,
        Decimal("30.00"),
    )
    assert (
        held_enrolment.converted_order_id,
        held_enrolment.converted_at,
        held_enrolment.revenue,
    ) == (
        held_order.pk,
        held_order.placed_at,
        Decimal("12.50"),
    )


def test_conversion_needs_an_order_inside_the_campaign_window(setup, make_customer):
    late = make_customer()
    late_enrolment = enrol(setup.campaign, late, NOW - timedelta(days=4))
    make_order(late, setup.channels.web, NOW - timedelta(days=4) + timedelta(hours=49))
    early = make_customer()
    early_enrolment = enrol(setup.campaign, early, NOW - timedelta(days=1))
    make_order(early, setup.channels.web, NOW - timedelta(days=1, minutes=1))
    cancelled = make_customer()
    cancelled_enrolment = enrol(setup.campaign, cancelled, NOW - timedelta(days=1))
    make_order(
        cancelled, setup.channels.web, NOW - timedelta(hours=3), status=OrderStatus.CANCELLED
    )
    edge = make_customer()
    edge_enrolment = enrol(setup.campaign, edge, NOW - timedelta(days=3))
    edge_order = make_order(edge, setup.channels.web, NOW - timedelta(days=3) + timedelta(hours=48))

    assert enrolment_conversions_mark(now=NOW) == 1

    for enrolment in (late_enrolment, early_enrolment, cancelled_enrolment):
        enrolment.refresh_from_db()
        assert enrolment.converted_at is None
        assert enrolment.revenue == Decimal("0.00")
    edge_enrolment.refresh_from_db()
    assert edge_enrolment.converted_order_id == edge_order.pk


def test_conversions_are_marked_once(setup):
    first = make_order(setup.customer, setup.channels.web, NOW - timedelta(days=2), "40.00")

    assert enrolment_conversions_mark(now=NOW - timedelta(days=1)) == 1
    # An earlier order recorded afterwards (a late POS batch) does not move a conversion
    # already recorded, and a re-run marks nothing.
    make_order(setup.customer, setup.channels.web, NOW - timedelta(days=2, hours=12), "5.00")
    assert enrolment_conversions_mark(now=NOW) == 0
    setup.enrolment.refresh_from_db()
    assert (setup.enrolment.converted_order_id, setup.enrolment.revenue) == (
        first.pk,
        Decimal("40.00"),
    )


def test_an_order_cancelled_after_it_was_credited_loses_attribution_and_conversion(setup):
    Enrolment.objects.filter(pk=setup.enrolment.pk).update(enrolled_at=NOW - timedelta(days=1))
    send(
        setup.enrolment,
        setup.channels.email,
        NOW - timedelta(hours=30),
        clicked_at=NOW - timedelta(hours=20),
    )
    order = make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=3), "10.00")
    assert attributions_compute(now=NOW) == 1
    setup.enrolment.refresh_from_db()
    assert setup.enrolment.converted_order_id == order.pk

    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)
    later = make_order(setup.customer, setup.channels.web, NOW - timedelta(hours=2), "15.00")

    assert attributions_compute(now=NOW) == 1
    assert Attribution.objects.get().order_id == later.pk
    setup.enrolment.refresh_from_db()
    assert (setup.enrolment.converted_order_id, setup.enrolment.revenue) == (
        later.pk,
        Decimal("15.00"),
    )
