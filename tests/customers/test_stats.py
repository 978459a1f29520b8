"""Profile statistics: the inferred preferred channel and the channel rollups."""

import pytest

from customers.models import Customer, CustomerChannelStat, PreferenceSource
from customers.services import consent_record, customer_update, preferred_channel_infer
from customers.services.stats import channel_stats_merge
from omni.models import ChannelKind
from tests.customers.conftest import at
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db


def stat(customer, channel, touchpoints, last, first=None):
    return CustomerChannelStat.objects.create(
        customer=customer,
        channel=channel,
        touchpoints=touchpoints,
        first_seen_at=first or at(-100),
        last_seen_at=last,
    )


def preferred(customer):
    customer.refresh_from_db()
    return customer.preferred_channel.code if customer.preferred_channel else None


def test_sales_channels_count_for_the_messaging_channel_that_reaches_them(make_customer, channels):
    marketplace = ChannelFactory(code="market", kind=ChannelKind.MARKETPLACE)
    cases = [
        (channels["web"], "email"),
        (marketplace, "email"),
        (channels["app"], "push"),
        (channels["pos"], "sms"),
        (channels["social"], "social-dm"),
        (channels["sms"], "sms"),
        (channels["push"], "push"),
    ]
    customers = []
    for n, (channel, _) in enumerate(cases):
        customer = make_customer(("email", f"c{n}@example.com"))
        stat(customer, channel, 2, at(-1))
        customers.append(customer)

    changed = preferred_channel_infer(customer_ids=[c.pk for c in customers])

    assert changed == len(cases)
    assert [preferred(c) for c in customers] == [code for _, code in cases]
    assert preferred_channel_infer(customer_ids=[c.pk for c in customers]) == 0


def test_use_adds_up_across_channels_reaching_the_same_messaging_channel(make_customer, channels):
    ana = make_customer(("email", "ana@example.com"))
    marketplace = ChannelFactory(code="market", kind=ChannelKind.MARKETPLACE)
    stat(ana, channels["web"], 2, at(-9))
    stat(ana, marketplace, 2, at(-8))
    stat(ana, channels["pos"], 3, at(-1))

    preferred_channel_infer(customer_ids=[ana.pk])

    assert preferred(ana) == "email"  # 2 + 2 > 3


def test_a_tie_goes_to_the_channel_used_last(make_customer, channels):
    ana = make_customer(("email", "ana@example.com"))
    stat(ana, channels["web"], 3, at(-2))
    stat(ana, channels["app"], 3, at(-1))
    preferred_channel_infer(customer_ids=[ana.pk])
    assert preferred(ana) == "push"


def test_without_use_there_is_no_preferred_channel(make_customer, channels):
    ana = make_customer(("email", "ana@example.com"), preferred_channel=channels["email"])
    assert preferred_channel_infer(customer_ids=[ana.pk]) == 1
    assert preferred(ana) is None
    assert preferred_channel_infer(customer_ids=[]) == 0


def test_a_channel_chosen_by_the_customer_is_never_inferred_over(make_customer, channels):
    ana = make_customer(("email", "ana@example.com"))
    customer_update(customer=ana, data={"preferred_channel": "push"})
    stat(ana, channels["web"], 10, at(-1))

    assert preferred_channel_infer(customer_ids=[ana.pk]) == 0
    ana.refresh_from_db()
    assert (ana.preferred_channel.code, ana.preferred_channel_source) == (
        "push",
        PreferenceSource.CUSTOMER,
    )


def test_inactive_messaging_channels_are_never_inferred(make_customer, channels):
    ana = make_customer(("email", "ana@example.com"))
    stat(ana, channels["web"], 5, at(-1))
    stat(ana, channels["app"], 1, at(-1))
    channels["email"].is_active = False
    channels["email"].save()

    preferred_channel_infer(customer_ids=[ana.pk])
    assert preferred(ana) == "push"

    # Another active email channel takes over.
    ChannelFactory(code="email-eu", kind=ChannelKind.EMAIL)
    preferred_channel_infer(customer_ids=[ana.pk])
    assert preferred(ana) == "email-eu"


def test_a_channel_the_customer_opted_out_of_is_never_inferred(make_customer, channels):
    ana = make_customer(("phone", "+33612345678"))

    consent_record(
        customer=ana, channel=channels["sms"], status="opted_out", source="store", occurred_at=at()
    )

    assert preferred(ana) is None
    stat(ana, channels["pos"], 4, at(-1))
    stat(ana, channels["web"], 1, at(-2))
    preferred_channel_infer(customer_ids=[ana.pk])
    assert preferred(ana) == "email"

    consent_record(
        customer=ana, channel=channels["sms"], status="opted_in", source="store", occurred_at=at(1)
    )
    assert preferred(ana) == "sms"


def test_channel_stats_merge_adds_and_moves(make_customer, channels):
    survivor = make_customer(("email", "a@example.com"))
    merged = make_customer(("email", "b@example.com"))
    stat(survivor, channels["web"], 2, at(-5), first=at(-9))
    stat(merged, channels["web"], 5, at(-1), first=at(-20))
    stat(merged, channels["pos"], 1, at(-3), first=at(-3))

    assert channel_stats_merge(survivor=survivor, merged=merged) == 2

    assert {
        s.channel_id: (s.touchpoints, s.first_seen_at, s.last_seen_at)
        for s in CustomerChannelStat.objects.all()
    } == {
        channels["web"].pk: (7, at(-20), at(-1)),
        channels["pos"].pk: (1, at(-3), at(-3)),
    }
    assert set(CustomerChannelStat.objects.values_list("customer_id", flat=True)) == {survivor.pk}
    assert Customer.objects.count() == 2
