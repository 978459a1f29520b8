"""Touchpoint ingest: batches with identifiers, all or nothing, replays harmless, stats current."""

from decimal import Decimal

import pytest

from customers.models import (
    BlockedIdentifier,
    Customer,
    CustomerChannelStat,
    CustomerMerge,
    Identity,
    PreferenceSource,
    Touchpoint,
)
from customers.selectors import customer_timeline
from customers.services import (
    customer_erase,
    customer_merge,
    customer_update,
    touchpoint_record,
    touchpoints_ingest,
)
from customers.services.touchpoints import MAX_EVENTS
from omni.exceptions import ValidationFailed
from tests.customers.conftest import at, keys_of
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db

NOW = at(1)
EMAIL = {"kind": "email", "value": "Ana@Example.com"}
PHONE = {"kind": "phone", "value": "06 12 34 56 78"}
CARD = {"kind": "loyalty_card", "value": "ab 12 34"}


def event(event_id, kind="product_view", channel="web", when=None, identifiers=None, **extra):
    data = {
        "event_id": event_id,
        "kind": kind,
        "channel": channel,
        "occurred_at": (when or at()).isoformat(),
        "identifiers": [EMAIL] if identifiers is None else identifiers,
    }
    data.update(extra)
    if data["identifiers"] is ...:
        del data["identifiers"]
    return data


def ingest(events, source="client:1", now=NOW):
    return touchpoints_ingest(source=source, events=events, now=now)


def stats_of(customer):
    return {
        s.channel.code: (s.touchpoints, s.first_seen_at, s.last_seen_at)
        for s in CustomerChannelStat.objects.filter(customer=customer).select_related("channel")
    }


# --- Recording --------------------------------------------------------------------------------


def test_a_batch_is_recorded_on_the_customers_timelines(channels):
    store = LocationFactory(code="lyon")
    result = ingest(
        [
            event("e1", when=at(-2), properties={"sku": "TEE-1"}),
            event("e2", kind="store_visit", channel="pos", when=at(-1), location="lyon"),
            event("e3", identifiers=[PHONE], when=at(-3)),
        ]
    )

    ana = Customer.objects.get(identities__kind="email")
    other = Customer.objects.get(identities__kind="phone")
    assert result.as_dict == {
        "received": 3,
        "created": 3,
        "duplicates": 0,
        "new_customers": 2,
        "merges": 0,
        "customers": [ana.pk, ana.pk, other.pk],
    }
    rows = list(
        customer_timeline(ana.pk).values_list(
            "event_id",
            "kind",
            "channel__code",
            "occurred_at",
            "location_id",
            "properties",
            "source",
            "received_at",
        )
    )
    assert rows == [
        ("e2", "store_visit", "pos", at(-1), store.pk, {}, "client:1", NOW),
        ("e1", "product_view", "web", at(-2), None, {"sku": "TEE-1"}, "client:1", NOW),
    ]
    assert list(customer_timeline(other.pk).values_list("event_id", flat=True)) == ["e3"]
    assert keys_of(ana) == {("email", "ana@example.com")}
    assert Identity.objects.get(kind="email").source == "client:1"


def test_a_batch_chaining_identifiers_makes_one_customer(channels):
    result = ingest(
        [
            event("e1", identifiers=[EMAIL]),
            event("e2", identifiers=[EMAIL, PHONE]),
            event("e3", identifiers=[PHONE, CARD]),
        ]
    )

    ana = Customer.objects.get()
    assert (result.created, result.new_customers, result.merges) == (3, 1, 0)
    assert result.customers == [ana.pk] * 3
    assert keys_of(ana) == {
        ("email", "ana@example.com"),
        ("phone", "+33612345678"),
        ("loyalty_card", "AB1234"),
    }
    assert ana.touchpoints.count() == 3


def test_a_batch_merges_known_customers(channels, make_customer):
    old = make_customer(("email", "ana@example.com"), created_at=at(-60))
    young = make_customer(("phone", "+33612345678"), created_at=at(-6))

    result = ingest([event("e1", identifiers=[PHONE, EMAIL])])

    assert (result.created, result.new_customers, result.merges) == (1, 0, 1)
    assert result.customers == [old.pk]
    assert not Customer.objects.filter(pk=young.pk).exists()
    # The merged customer's identity moved to the survivor, who also got the event.
    assert keys_of(old) == {("email", "ana@example.com"), ("phone", "+33612345678")}
    assert Identity.objects.count() == 2
    assert list(Touchpoint.objects.values_list("event_id", "customer_id")) == [("e1", old.pk)]
    merge = CustomerMerge.objects.get()
    assert (merge.survivor_id, merge.merged_customer_id, merge.reason, merge.source) == (
        old.pk,
        young.pk,
        "Shared identifier",
        "client:1",
    )
    assert merge.moved == {"customers.Identity": 1}


def test_an_event_may_name_its_customer_even_a_merged_one(channels, make_customer):
    old = make_customer(("email", "ana@example.com"), created_at=at(-60))
    young = make_customer(("phone", "+33612345678"), created_at=at(-6))
    customer_merge(customers=[old, young])

    result = ingest(
        [
            event("e1", identifiers=..., customer=young.pk),
            event("e2", identifiers=[CARD], customer=old.pk),
        ]
    )

    assert result.customers == [old.pk, old.pk]
    assert keys_of(old) == {
        ("email", "ana@example.com"),
        ("phone", "+33612345678"),
        ("loyalty_card", "AB1234"),
    }


def test_the_same_event_id_from_another_sender_is_another_event(channels):
    ingest([event("e1")], source="client:1")
    result = ingest([event("e1")], source="client:2")
    assert (result.created, result.duplicates) == (1, 0)
    assert Touchpoint.objects.count() == 2


def test_an_event_without_time_happened_now(channels):
    data = event("e1")
    del data["occurred_at"]
    ingest([data])
    assert Touchpoint.objects.get().occurred_at == NOW


# --- Replays ----------------------------------------------------------------------------------


def test_a_replay_is_harmless(channels):
    batch = [
        event("e1", when=at(-2)),
        event("p1", kind="purchase", channel="pos", when=at(-1), properties={"amount": "20"}),
        event("e2", identifiers=[PHONE]),
    ]
    ingest(batch)
    before = list(Customer.objects.order_by("pk").values())
    stats_before = list(CustomerChannelStat.objects.order_by("pk").values())

    again = ingest(batch, now=at(2))

    assert again.as_dict == {
        "received": 3,
        "created": 0,
        "duplicates": 3,
        "new_customers": 0,
        "merges": 0,
        "customers": [None, None, None],
    }
    assert list(Customer.objects.order_by("pk").values()) == before
    assert list(CustomerChannelStat.objects.order_by("pk").values()) == stats_before
    assert Touchpoint.objects.count() == 3
    assert Touchpoint.objects.filter(received_at=NOW).count() == 3


def test_a_partial_replay_records_only_the_new_events(channels):
    ingest([event("e1", when=at(-2)), event("e2", when=at(-1))])
    ana = Customer.objects.get()

    result = ingest([event("e1", when=at(-2)), event("e3", when=at()), event("e2", when=at(-1))])

    assert (result.created, result.duplicates) == (1, 2)
    assert result.customers == [None, ana.pk, None]
    assert stats_of(ana) == {"web": (3, at(-2), at())}


# --- Statistics -------------------------------------------------------------------------------


def test_stats_follow_the_events(channels):
    ingest(
        [
            event("v1", when=at(-9)),
            event("v2", when=at(-4)),
            event("a1", kind="app_open", channel="app", when=at(-6)),
            event("p1", kind="purchase", channel="pos", when=at(-5), properties={"amount": 19.9}),
            event("p2", kind="purchase", channel="web", when=at(-2), properties={"amount": "5.05"}),
            event("p3", kind="purchase", channel="web", when=at(-3)),
            event("c1", kind="add_to_cart", channel="web", when=at(-1), properties={"amount": 99}),
        ]
    )

    ana = Customer.objects.get()
    assert (ana.first_seen_at, ana.last_seen_at, ana.last_purchase_at) == (at(-9), at(-1), at(-2))
    assert (ana.lifetime_orders, ana.lifetime_revenue) == (3, Decimal("24.95"))
    assert stats_of(ana) == {
        "web": (5, at(-9), at(-1)),
        "app": (1, at(-6), at(-6)),
        "pos": (1, at(-5), at(-5)),
    }

    ingest(
        [
            event("v3", when=at(-12)),
            event("p4", kind="purchase", channel="app", when=at(-7), properties={"amount": "1"}),
        ]
    )

    ana.refresh_from_db()
    assert (ana.first_seen_at, ana.last_seen_at, ana.last_purchase_at) == (at(-12), at(-1), at(-2))
    assert (ana.lifetime_orders, ana.lifetime_revenue) == (4, Decimal("25.95"))
    assert stats_of(ana) == {
        "web": (6, at(-12), at(-1)),
        "app": (2, at(-7), at(-6)),
        "pos": (1, at(-5), at(-5)),
    }


def test_a_new_customer_was_seen_at_her_events_not_when_they_arrived(channels):
    ingest([event("e1", when=at(-30)), event("e2", when=at(-20))], now=at(1))

    ana = Customer.objects.get()
    assert (ana.created_at, ana.first_seen_at, ana.last_seen_at) == (at(1), at(-30), at(-20))


@pytest.mark.parametrize(
    ("channel", "kind", "preferred"),
    [
        ("web", "product_view", "email"),
        ("app", "app_open", "push"),
        ("pos", "store_visit", "sms"),
        ("social", "product_view", "social-dm"),
        ("sms", "link_clicked", "sms"),
    ],
)
def test_the_preferred_channel_is_inferred_from_use(channels, channel, kind, preferred):
    ingest([event("e1", kind=kind, channel=channel)])

    ana = Customer.objects.get()
    assert ana.preferred_channel_id == channels[preferred].pk
    assert ana.preferred_channel_source == PreferenceSource.INFERRED


def test_the_most_used_channel_wins_and_ties_go_to_the_latest(channels):
    ingest([event("w1", when=at(-5)), event("a1", kind="app_open", channel="app", when=at(-3))])
    ana = Customer.objects.get()
    assert ana.preferred_channel_id == channels["push"].pk  # 1 web vs 1 app: the app is later

    ingest(
        [
            event("w2", when=at(-4)),
            event("p1", kind="store_visit", channel="pos", when=at(-1)),
        ]
    )
    ana.refresh_from_db()
    assert ana.preferred_channel_id == channels["email"].pk  # web 2, app 1, store 1


def test_a_channel_the_customer_chose_is_kept(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"), created_at=at(-60))
    customer_update(customer=ana, data={"preferred_channel": "sms"})

    ingest([event(f"e{n}", kind="app_open", channel="app") for n in range(5)])

    ana.refresh_from_db()
    assert (ana.preferred_channel_id, ana.preferred_channel_source) == (
        channels["sms"].pk,
        PreferenceSource.CUSTOMER,
    )

    # Given back, the choice is inferred from use again.
    customer_update(customer=ana, data={"preferred_channel": None})
    ana.refresh_from_db()
    assert (ana.preferred_channel_id, ana.preferred_channel_source) == (
        channels["push"].pk,
        PreferenceSource.INFERRED,
    )


def test_touchpoint_record_puts_one_event_on_a_known_timeline(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"), created_at=at(-60))

    for _ in range(2):
        touchpoint_record(
            customer=ana,
            channel=channels["pos"],
            kind="purchase",
            source="omni:orders",
            event_id="o-1",
            occurred_at=at(-1),
            properties={"amount": "42.00"},
        )

    ana.refresh_from_db()
    assert Touchpoint.objects.filter(customer=ana, event_id="o-1").count() == 1
    assert (ana.lifetime_orders, ana.lifetime_revenue, ana.last_purchase_at) == (
        1,
        Decimal("42.00"),
        at(-1),
    )
    assert stats_of(ana) == {"pos": (1, at(-1), at(-1))}
    with pytest.raises(ValueError):
        touchpoint_record(
            customer=ana, channel=channels["pos"], kind="teleport", source="x", event_id="1"
        )


def test_a_big_batch_costs_a_handful_of_queries(channels, django_assert_max_num_queries):
    events = [
        event(f"e{n}", identifiers=[{"kind": "email", "value": f"c{n}@example.com"}])
        for n in range(300)
    ]
    with django_assert_max_num_queries(30):
        result = ingest(events)
    assert (result.created, result.new_customers) == (300, 300)
    assert Customer.objects.count() == 300
    assert Touchpoint.objects.count() == 300


def test_a_full_batch_is_accepted(channels):
    events = [
        event(f"e{n}", identifiers=[{"kind": "web_cookie", "value": "ck"}]) for n in range(1000)
    ]
    result = ingest(events)
    assert (result.received, result.created, result.new_customers) == (1000, 1000, 1)
    assert CustomerChannelStat.objects.get().touchpoints == 1000


# --- Refusals: by index, nothing applied ------------------------------------------------------


def assert_refused(events, expected, code="invalid_batch"):
    with pytest.raises(ValidationFailed) as error:
        ingest(events)
    assert error.value.code == code
    assert error.value.extra == expected
    assert Touchpoint.objects.count() == 0
    assert Customer.objects.count() == 0
    assert Identity.objects.count() == 0
    assert CustomerChannelStat.objects.count() == 0
    return error.value


def test_one_bad_event_refuses_the_whole_batch(channels):
    error = assert_refused(
        [event("ok-1"), event("bad", kind="teleport"), event("ok-2", identifiers=[PHONE])],
        {
            "events": {
                "1": {
                    "kind": [
                        "Unknown kind 'teleport'; one of: add_to_cart, app_open, "
                        "checkout_started, consent_changed, link_clicked, message_opened, "
                        "message_sent, order_cancelled, pickup, product_view, profile_updated, "
                        "purchase, qr_scan, remove_from_cart, return, search, sign_up, "
                        "store_visit, support_message."
                    ]
                }
            }
        },
    )
    assert error.message == "1 of 3 events are invalid; nothing was recorded."


def test_every_error_is_reported_by_index(channels):
    channels["app"].is_active = False
    channels["app"].save()
    events = [
        event("ok"),
        event("", kind="search"),
        event("e2", channel="fax"),
        event("e3", channel="app"),
        event("e4", when=None, occurred_at="yesterday"),
        event("e5", occurred_at="2026-03-01T10:00:00"),
        event("e6", occurred_at=at(3).isoformat()),
        event("ok"),
        event("e8", identifiers=[{"kind": "phone", "value": "0612"}, EMAIL]),
        event("e9", identifiers=[]),
        event("e10", kind="purchase", properties={"amount": "abc"}),
        event("e11", kind="purchase", properties={"amount": -1}),
        event("e12", kind="purchase", properties={"amount": True}),
        event("e13", kind="purchase", properties={"amount": "1e12"}),
        event("e14", properties=["not", "an", "object"]),
        event("e15", location="nowhere"),
        event("e16", customer="12"),
        "not an event",
        event("x" * 101),
        event("e19", kind=["search"], channel=None),
        event("e20", kind="purchase", properties={"amount": "NaN"}),
        event(True),
    ]
    events[9]["identifiers"] = []
    events[19].pop("channel")
    assert_refused(
        events,
        {
            "events": {
                "1": {"event_id": ["Required: your id of this event."]},
                "2": {"channel": ["Unknown channel fax."]},
                "3": {"channel": ["Channel app is inactive."]},
                "4": {"occurred_at": ["Not an ISO 8601 date and time."]},
                "5": {
                    "occurred_at": ["Give a time zone (e.g. 2026-11-22T10:00:00+01:00 or ...Z)."]
                },
                "6": {"occurred_at": ["Lies in the future."]},
                "7": {"event_id": ["Repeats event 0 of this batch."]},
                "8": {"identifiers": {"0": ["'0612' is not a valid phone number."]}},
                "9": {"identifiers": ["At least one identifier ({kind, value})."]},
                "10": {"properties": ["properties.amount must be a number."]},
                "11": {"properties": ["properties.amount must be a positive number below 10^12."]},
                "12": {"properties": ["properties.amount must be a number."]},
                "13": {"properties": ["properties.amount must be a positive number below 10^12."]},
                "14": {"properties": ["Must be an object."]},
                "15": {"location": ["Unknown location nowhere."]},
                "16": {"customer": ["A customer id (a whole number)."]},
                "17": {"event": ["Must be an object."]},
                "18": {"event_id": ["At most 100 characters."]},
                "19": {
                    "kind": [
                        "Unknown kind ['search']; one of: add_to_cart, app_open, "
                        "checkout_started, consent_changed, link_clicked, message_opened, "
                        "message_sent, order_cancelled, pickup, product_view, profile_updated, "
                        "purchase, qr_scan, remove_from_cart, return, search, sign_up, "
                        "store_visit, support_message."
                    ],
                    "channel": ["Required."],
                },
                "20": {"properties": ["properties.amount must be a positive number below 10^12."]},
                "21": {"event_id": ["Required: your id of this event."]},
            }
        },
    )


def test_missing_event_id_and_identifiers_are_refused(channels):
    data = event("e1", identifiers=...)
    del data["event_id"]
    assert_refused(
        [data],
        {
            "events": {
                "0": {
                    "event_id": ["Required: your id of this event."],
                    "identifiers": ["At least one identifier ({kind, value})."],
                }
            }
        },
    )


def test_unknown_and_erased_customers_are_refused_by_index(channels, make_customer):
    gone = make_customer(("email", "gone@example.com"), created_at=at(-9))
    customer_erase(customer=gone, source="test")
    with pytest.raises(ValidationFailed) as error:
        ingest(
            [
                event("e1", identifiers=..., customer=999_999),
                event("e2", customer=gone.pk),
                event("e3", identifiers=..., customer=0),
                event("e4", identifiers=..., customer=2**70),
            ]
        )
    assert error.value.code == "invalid_batch"
    assert error.value.extra == {
        "events": {
            "0": {"customer": ["Unknown customer 999999."]},
            "1": {"customer": [f"Customer {gone.pk} was erased."]},
            "2": {"customer": ["Unknown customer 0."]},
            "3": {"customer": [f"Unknown customer {2**70}."]},
        }
    }
    assert Touchpoint.objects.count() == 0
    assert Identity.objects.count() == 0


def test_a_merged_id_whose_survivor_was_erased_is_refused_by_index(channels, make_customer):
    old = make_customer(("email", "old@example.com"), created_at=at(-60))
    young = make_customer(("phone", "+33612345678"), created_at=at(-6))
    customer_merge(customers=[old, young])
    customer_erase(customer=old, source="test")

    with pytest.raises(ValidationFailed) as error:
        ingest(
            [
                event("e1"),
                event("e2", identifiers=..., customer=young.pk),
            ]
        )

    assert error.value.code == "invalid_batch"
    assert error.value.extra == {
        "events": {"1": {"customer": [f"Customer {young.pk} was erased."]}}
    }
    assert Touchpoint.objects.count() == 0
    assert Identity.objects.count() == 0
    assert list(Customer.objects.values_list("pk", flat=True)) == [old.pk]


def test_an_event_identified_only_by_blocked_values_is_refused(channels):
    BlockedIdentifier.objects.create(kind="email", value="ana@example.com")
    assert_refused(
        [event("e1", identifiers=[PHONE, EMAIL]), event("e2", identifiers=[EMAIL])],
        {
            "events": {
                "1": {
                    "identifiers": ["Every identifier is blocked: nothing identifies the customer."]
                }
            }
        },
    )


@pytest.mark.parametrize("events", [[], None, {"event_id": "e1"}, "events"])
def test_an_empty_batch_is_refused(channels, events):
    assert_refused(events, {"events": ["At least one event."]}, code="validation_error")


def test_more_than_a_thousand_events_are_refused(channels):
    error = assert_refused(
        [event(f"e{n}") for n in range(MAX_EVENTS + 1)],
        {"events": ["At most 1000."]},
        code="batch_too_large",
    )
    assert error.message == "A batch holds at most 1,000 events; this one has 1,001."
