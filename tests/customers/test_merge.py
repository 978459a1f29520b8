"""Merging customers: field conflicts by rule, counters, consents, rollups, moved rows, audit."""

from decimal import Decimal

import pytest

from customers.models import (
    Consent,
    ConsentState,
    Conversation,
    ConversationMessage,
    Customer,
    CustomerChannelStat,
    CustomerMerge,
    Identity,
    PreferenceSource,
    Touchpoint,
)
from customers.services import (
    consent_record,
    conversation_message_add,
    customer_erase,
    customer_merge,
    customer_update,
)
from customers.services.merge import customer_relations
from omni.exceptions import Conflict, NotFound, ValidationFailed
from omni.models import OutboxEvent
from tests.customers.conftest import at, iso, keys_of
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db

EMAIL = ("email", "ana@example.com")
PHONE = ("phone", "+33612345678")
CARD = ("loyalty_card", "AB1234")


def stat(customer, channel, touchpoints, first, last):
    return CustomerChannelStat.objects.create(
        customer=customer,
        channel=channel,
        touchpoints=touchpoints,
        first_seen_at=first,
        last_seen_at=last,
    )


# --- Profile fields ---------------------------------------------------------------------------


def test_the_newest_non_empty_value_wins_and_empty_never_overwrites(make_customer):
    paris = LocationFactory(code="paris")
    survivor = make_customer(
        EMAIL,
        created_at=at(-100),
        first_name="Ana",
        last_name="Silva",
        city="Lyon",
        occupation="Teacher",
        language="",
        field_times={
            "first_name": iso(at(-1)),
            "last_name": iso(at(-50)),
            "city": iso(at(-10)),
            "occupation": iso(at(-3)),
        },
    )
    merged = make_customer(
        PHONE,
        created_at=at(-20),
        first_name="Anna",
        last_name="Silva",
        city="Paris",
        occupation="",
        language="pt-BR",
        gender="female",
        home_store=paris,
        field_times={
            "first_name": iso(at(-5)),
            "last_name": iso(at(-2)),
            "city": iso(at(-2)),
            "occupation": iso(at(-1)),
            "language": iso(at(-4)),
            "gender": iso(at(-6)),
            "home_store": iso(at(-7)),
        },
    )

    result, records = customer_merge(customers=[merged, survivor])

    assert result.pk == survivor.pk
    row = Customer.objects.get()
    assert row.pk == survivor.pk
    assert (row.first_name, row.last_name, row.city, row.occupation) == (
        "Ana",
        "Silva",
        "Paris",
        "Teacher",
    )
    assert (row.language, row.gender, row.home_store_id, row.age_range) == (
        "pt-BR",
        "female",
        paris.pk,
        "",
    )
    assert row.field_times == {
        "first_name": iso(at(-1)),
        "last_name": iso(at(-50)),
        "city": iso(at(-2)),
        "occupation": iso(at(-3)),
        "language": iso(at(-4)),
        "gender": iso(at(-6)),
        "home_store": iso(at(-7)),
    }
    audit = CustomerMerge.objects.get()
    assert records == [audit]
    assert audit.field_changes == {
        "first_name": {"survivor": "Ana", "merged": "Anna", "result": "Ana"},
        "city": {"survivor": "Lyon", "merged": "Paris", "result": "Paris"},
        "language": {"survivor": "", "merged": "pt-BR", "result": "pt-BR"},
        "gender": {"survivor": "", "merged": "female", "result": "female"},
        "home_store": {"survivor": None, "merged": paris.pk, "result": paris.pk},
    }


def test_fields_set_through_the_profile_service_carry_their_time(make_customer):
    survivor = make_customer(EMAIL, created_at=at(-100))
    merged = make_customer(PHONE, created_at=at(-20))
    customer_update(customer=survivor, data={"city": "Lyon"}, at=at(-3))
    customer_update(customer=merged, data={"city": "Paris"}, at=at(-9))
    customer_update(customer=merged, data={"occupation": "Nurse"}, at=at(-9))

    customer_merge(customers=[survivor, merged])

    row = Customer.objects.get()
    assert (row.city, row.occupation) == ("Lyon", "Nurse")
    assert row.field_times == {"city": iso(at(-3)), "occupation": iso(at(-9))}


def test_counters_add_and_seen_times_take_the_extremes(make_customer):
    survivor = make_customer(
        EMAIL,
        created_at=at(-100),
        lifetime_orders=2,
        lifetime_revenue=Decimal("30.50"),
        first_seen_at=at(-90),
        last_seen_at=at(-10),
        last_purchase_at=None,
    )
    merged = make_customer(
        PHONE,
        created_at=at(-20),
        lifetime_orders=3,
        lifetime_revenue=Decimal("12.25"),
        first_seen_at=at(-95),
        last_seen_at=at(-12),
        last_purchase_at=at(-30),
    )

    customer_merge(customers=[survivor, merged])

    row = Customer.objects.get()
    assert row.lifetime_orders == 5
    assert row.lifetime_revenue == Decimal("42.75")
    assert (row.first_seen_at, row.last_seen_at, row.last_purchase_at) == (
        at(-95),
        at(-10),
        at(-30),
    )
    assert CustomerMerge.objects.get().field_changes == {
        "lifetime_orders": {"survivor": 2, "merged": 3, "result": 5},
        "lifetime_revenue": {"survivor": "30.50", "merged": "12.25", "result": "42.75"},
    }


def test_a_merged_customer_without_history_changes_no_counter(make_customer):
    survivor = make_customer(
        EMAIL, created_at=at(-100), lifetime_orders=1, lifetime_revenue=Decimal("9.90")
    )
    merged = make_customer(PHONE, created_at=at(-20))

    customer_merge(customers=[survivor, merged])

    row = Customer.objects.get()
    assert (row.lifetime_orders, row.lifetime_revenue) == (1, Decimal("9.90"))
    assert (row.first_seen_at, row.last_seen_at, row.last_purchase_at) == (None, None, None)
    assert CustomerMerge.objects.get().field_changes == {}


# --- Preferred channel ------------------------------------------------------------------------


def test_a_channel_chosen_by_the_customer_beats_an_inferred_one(make_customer, channels):
    survivor = make_customer(EMAIL, created_at=at(-100))
    stat(survivor, channels["web"], 9, at(-90), at(-1))
    survivor.preferred_channel = channels["email"]
    survivor.save()
    merged = make_customer(PHONE, created_at=at(-20))
    customer_update(customer=merged, data={"preferred_channel": "sms"}, at=at(-15))

    result, _ = customer_merge(customers=[survivor, merged])

    row = Customer.objects.get()
    assert (row.preferred_channel_id, row.preferred_channel_source) == (
        channels["sms"].pk,
        PreferenceSource.CUSTOMER,
    )
    assert (result.preferred_channel_id, result.preferred_channel_source) == (
        channels["sms"].pk,
        PreferenceSource.CUSTOMER,
    )
    assert row.field_times == {"preferred_channel": iso(at(-15))}
    assert CustomerMerge.objects.get().field_changes == {
        "preferred_channel": {
            "survivor": channels["email"].pk,
            "merged": channels["sms"].pk,
            "result": channels["sms"].pk,
        }
    }


def test_the_survivor_s_own_choice_beats_an_inferred_one(make_customer, channels):
    survivor = make_customer(EMAIL, created_at=at(-100))
    customer_update(customer=survivor, data={"preferred_channel": "push"}, at=at(-50))
    merged = make_customer(PHONE, created_at=at(-20), preferred_channel=channels["email"])
    stat(merged, channels["web"], 9, at(-19), at(-1))

    result, _ = customer_merge(customers=[survivor, merged])

    row = Customer.objects.get()
    assert (row.preferred_channel_id, row.preferred_channel_source) == (
        channels["push"].pk,
        PreferenceSource.CUSTOMER,
    )
    assert result.preferred_channel_id == channels["push"].pk
    assert CustomerMerge.objects.get().field_changes == {}


def test_of_two_chosen_channels_the_newest_wins(make_customer, channels):
    survivor = make_customer(EMAIL, created_at=at(-100))
    merged = make_customer(PHONE, created_at=at(-20))
    customer_update(customer=survivor, data={"preferred_channel": "push"}, at=at(-5))
    customer_update(customer=merged, data={"preferred_channel": "sms"}, at=at(-8))

    customer_merge(customers=[survivor, merged])
    assert Customer.objects.get().preferred_channel_id == channels["push"].pk

    third = make_customer(CARD, created_at=at(-10))
    customer_update(customer=third, data={"preferred_channel": "email"}, at=at(-2))
    customer_merge(customers=[survivor.pk, third.pk])
    row = Customer.objects.get()
    assert (row.preferred_channel_id, row.preferred_channel_source) == (
        channels["email"].pk,
        PreferenceSource.CUSTOMER,
    )


def test_two_inferred_channels_are_inferred_again_from_the_combined_use(make_customer, channels):
    survivor = make_customer(EMAIL, created_at=at(-100), preferred_channel=None)
    stat(survivor, channels["web"], 3, at(-90), at(-5))
    merged = make_customer(PHONE, created_at=at(-20))
    stat(merged, channels["pos"], 2, at(-19), at(-2))
    stat(merged, channels["web"], 1, at(-19), at(-3))
    Customer.objects.filter(pk=survivor.pk).update(preferred_channel=channels["email"])
    Customer.objects.filter(pk=merged.pk).update(preferred_channel=channels["sms"])

    result, _ = customer_merge(customers=[survivor.pk, merged.pk])

    row = Customer.objects.get()
    # Web use (3 + 1) is reached by email, the store (2) by SMS.
    assert (row.preferred_channel_id, row.preferred_channel_source) == (
        channels["email"].pk,
        PreferenceSource.INFERRED,
    )
    assert result.preferred_channel_id == channels["email"].pk


def test_the_returned_survivor_carries_the_re_inferred_channel(make_customer, channels):
    survivor = make_customer(EMAIL, created_at=at(-100))
    merged = make_customer(PHONE, created_at=at(-20))
    stat(merged, channels["app"], 7, at(-19), at(-2))

    result, _ = customer_merge(customers=[survivor, merged])

    assert result.preferred_channel_id == channels["push"].pk
    assert Customer.objects.get().preferred_channel_id == channels["push"].pk


# --- Consent ----------------------------------------------------------------------------------


def test_consent_follows_the_newest_decision_per_channel_and_history_moves(make_customer, channels):
    survivor = make_customer(EMAIL, created_at=at(-100))
    merged = make_customer(PHONE, created_at=at(-20))
    email, sms, push = channels["email"], channels["sms"], channels["push"]
    s_email = consent_record(
        customer=survivor, channel=email, status="opted_in", source="web", occurred_at=at(-10)
    )
    consent_record(
        customer=survivor, channel=sms, status="opted_in", source="store", occurred_at=at(-9)
    )
    s_sms = consent_record(
        customer=survivor, channel=sms, status="opted_out", source="store", occurred_at=at(-1)
    )
    m_email = consent_record(
        customer=merged, channel=email, status="opted_out", source="app", occurred_at=at(-2)
    )
    consent_record(
        customer=merged, channel=sms, status="opted_in", source="app", occurred_at=at(-5)
    )
    m_push = consent_record(
        customer=merged, channel=push, status="opted_in", source="app", occurred_at=at(-4)
    )

    customer_merge(customers=[survivor, merged])

    states = {
        s.channel_id: (s.status, s.occurred_at, s.consent_id)
        for s in ConsentState.objects.filter(customer=survivor)
    }
    assert states == {
        email.pk: ("opted_out", at(-2), m_email.pk),
        sms.pk: ("opted_out", at(-1), s_sms.pk),
        push.pk: ("opted_in", at(-4), m_push.pk),
    }
    assert ConsentState.objects.count() == 3
    assert Consent.objects.filter(customer=survivor).count() == 6
    assert Consent.objects.count() == 6
    assert s_email.pk in set(Consent.objects.values_list("pk", flat=True))
    moved = CustomerMerge.objects.get().moved
    # Each consent also wrote a touchpoint and a channel stat; the phone identity moved too.
    assert moved == {
        "customers.Identity": 1,
        "customers.Touchpoint": 3,
        "customers.CustomerChannelStat": 3,
        "customers.Consent": 3,
        "customers.ConsentState": 3,
    }


# --- Rows that follow the survivor ------------------------------------------------------------


def test_channel_stats_combine(make_customer, channels):
    survivor = make_customer(EMAIL, created_at=at(-100))
    merged = make_customer(PHONE, created_at=at(-20))
    stat(survivor, channels["web"], 3, at(-10), at(-3))
    stat(survivor, channels["pos"], 1, at(-8), at(-8))
    stat(merged, channels["web"], 2, at(-20), at(-1))
    stat(merged, channels["app"], 4, at(-15), at(-6))

    customer_merge(customers=[survivor, merged])

    rows = {
        s.channel_id: (s.touchpoints, s.first_seen_at, s.last_seen_at)
        for s in CustomerChannelStat.objects.filter(customer=survivor)
    }
    assert rows == {
        channels["web"].pk: (5, at(-20), at(-1)),
        channels["pos"].pk: (1, at(-8), at(-8)),
        channels["app"].pk: (4, at(-15), at(-6)),
    }
    assert CustomerChannelStat.objects.count() == 3
    assert CustomerMerge.objects.get().moved == {
        "customers.Identity": 1,
        "customers.CustomerChannelStat": 2,
    }


def test_everything_pointing_at_the_merged_customer_moves(make_customer, channels, staff_user):
    survivor = make_customer(EMAIL, created_at=at(-100))
    merged = make_customer(PHONE, CARD, created_at=at(-20), first_name="Anna")
    for n in range(3):
        Touchpoint.objects.create(
            customer=merged,
            channel=channels["web"],
            kind="product_view",
            occurred_at=at(-n),
            source="client:1",
            event_id=f"m{n}",
            received_at=at(),
        )
    Touchpoint.objects.create(
        customer=survivor,
        channel=channels["web"],
        kind="search",
        occurred_at=at(-4),
        source="client:1",
        event_id="s1",
        received_at=at(),
    )
    message, _ = conversation_message_add(
        customer=merged, channel=channels["social-dm"], body="Where is my order?", source="x"
    )
    newer = make_customer(("pos_customer_id", "P1"), created_at=at(-10))
    customer_merge(customers=[merged, newer])  # merged (the older of the two) takes P1
    assert keys_of(newer) == set()
    merged.refresh_from_db()

    survivor_back, records = customer_merge(
        customers=[survivor.pk, merged.pk], reason="Same person", source="admin", actor=staff_user
    )

    assert survivor_back.pk == survivor.pk
    assert keys_of(survivor) == {EMAIL, PHONE, CARD, ("pos_customer_id", "P1")}
    assert Touchpoint.objects.filter(customer=survivor).count() == 5  # + the support message
    assert Touchpoint.objects.count() == 5
    assert Conversation.objects.get().customer_id == survivor.pk
    assert ConversationMessage.objects.get().pk == message.pk
    audit = CustomerMerge.objects.get(merged_customer_id=merged.pk)
    assert records == [audit]
    assert (audit.survivor_id, audit.reason, audit.source, audit.actor_id) == (
        survivor.pk,
        "Same person",
        "admin",
        staff_user.pk,
    )
    assert audit.moved == {
        "customers.Identity": 3,
        "customers.Touchpoint": 4,
        "customers.CustomerChannelStat": 1,
        "customers.Conversation": 1,
        "customers.CustomerMerge": 1,
    }
    # The earlier audit row (newer into merged) now points at the survivor.
    assert CustomerMerge.objects.get(merged_customer_id=newer.pk).survivor_id == survivor.pk
    snapshot = audit.merged_snapshot
    assert set(snapshot) == {f.attname for f in Customer._meta.concrete_fields}
    assert (snapshot["id"], snapshot["first_name"], snapshot["created_at"]) == (
        merged.pk,
        "Anna",
        "2026-02-10T09:00:00Z",
    )
    event = OutboxEvent.objects.filter(type="customer.merged").order_by("id").last()
    assert (event.subject_type, event.subject_id, event.payload) == (
        "customer",
        str(survivor.pk),
        {"survivor": survivor.pk, "merged": merged.pk, "merge": audit.pk},
    )
    assert OutboxEvent.objects.filter(type="customer.merged").count() == 2
    assert not Customer.objects.filter(pk=merged.pk).exists()


def test_every_foreign_key_to_customer_is_covered():
    labels = {(model._meta.label, fk.name) for model, fk in customer_relations()}
    assert {
        ("customers.Identity", "customer"),
        ("customers.Touchpoint", "customer"),
        ("customers.CustomerChannelStat", "customer"),
        ("customers.Consent", "customer"),
        ("customers.ConsentState", "customer"),
        ("customers.Conversation", "customer"),
        ("customers.CustomerMerge", "survivor"),
        ("orders.Cart", "customer"),
        ("orders.Order", "customer"),
        ("campaigns.BackInStockSubscription", "customer"),
        ("campaigns.Enrolment", "customer"),
        ("campaigns.Message", "customer"),
    } == labels


def test_three_customers_merge_into_the_oldest(make_customer):
    a = make_customer(EMAIL, created_at=at(-5))
    b = make_customer(PHONE, created_at=at(-50))
    c = make_customer(CARD, created_at=at(-20))

    survivor, records = customer_merge(customers=[a.pk, b.pk, c.pk])

    assert survivor.pk == b.pk
    assert [r.merged_customer_id for r in records] == [c.pk, a.pk]
    assert Customer.objects.get().pk == b.pk
    assert keys_of(b) == {EMAIL, PHONE, CARD}
    assert {r.reason for r in records} == {"Merged by staff"}


# --- Refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["none", "one", "twice"])
def test_fewer_than_two_customers_is_refused(make_customer, how):
    ana = make_customer(EMAIL, created_at=at(-5))
    customers = {"none": [], "one": [ana], "twice": [ana, ana.pk]}[how]

    with pytest.raises(ValidationFailed) as error:
        customer_merge(customers=customers)

    assert error.value.code == "validation_error"
    assert error.value.extra == {"customers": ["At least two different customers."]}
    assert CustomerMerge.objects.count() == 0


def test_merging_an_unknown_customer_is_refused(make_customer):
    ana = make_customer(EMAIL, created_at=at(-5))

    with pytest.raises(NotFound) as error:
        customer_merge(customers=[ana, 999_999])

    assert error.value.code == "not_found"
    assert error.value.extra == {"customers": ["Unknown customer 999999."]}
    assert Customer.objects.count() == 1


def test_merging_an_erased_customer_is_refused_and_changes_nothing(make_customer):
    ana = make_customer(EMAIL, created_at=at(-50))
    bob = make_customer(PHONE, created_at=at(-5))
    customer_erase(customer=bob, source="test")

    with pytest.raises(Conflict) as error:
        customer_merge(customers=[ana, bob])

    assert error.value.code == "customer_erased"
    assert error.value.extra == {"customers": [f"Customer {bob.pk} was erased."]}
    assert Customer.objects.count() == 2
    assert CustomerMerge.objects.count() == 0
    assert keys_of(ana) == {EMAIL}
    assert Identity.objects.count() == 1
