"""Rules moved into the customer services after review, so that the admin, the API and later the
store pages meet them in one place: a value blocked while a request runs is never attached,
replayed messages resolve no one, a profile sent with a resolve is checked before anyone is
created, only changed fields get a new time, merges have one survivor rule and a limit."""

from decimal import Decimal

import pytest
from django.db import transaction

from customers.identifiers import Identifier
from customers.models import (
    BlockedIdentifier,
    ConversationMessage,
    Customer,
    Identity,
    Touchpoint,
)
from customers.services import (
    MAX_MERGE,
    ResolveRequest,
    blocked_identifier_add,
    consent_record,
    conversation_message_add,
    conversation_message_receive,
    customer_merge,
    customer_resolve,
    customer_update,
    identities_resolve,
    merge_survivor,
    touchpoint_record,
    touchpoints_ingest,
)
from omni.exceptions import Conflict, ValidationFailed
from tests.customers.conftest import T0, at, iso, keys_of

pytestmark = pytest.mark.django_db


def email(value):
    return Identifier("email", value)


def test_a_value_blocked_after_validation_is_dropped_under_the_lock(channels, make_customer):
    BlockedIdentifier.objects.create(kind="email", value="front-desk@shop.example")

    with transaction.atomic():
        resolution = identities_resolve(
            requests=[ResolveRequest([email("front-desk@shop.example"), email("ana@example.com")])],
            source="t",
            seen_at=T0,
        )

    customer = Customer.objects.get()
    assert resolution.customer_ids == [customer.pk]
    assert keys_of(customer) == {("email", "ana@example.com")}


def test_a_request_left_with_only_values_blocked_meanwhile_is_refused(channels):
    BlockedIdentifier.objects.create(kind="email", value="front-desk@shop.example")

    with pytest.raises(Conflict) as refused, transaction.atomic():
        identities_resolve(
            requests=[ResolveRequest([email("front-desk@shop.example")])], source="t", seen_at=T0
        )

    assert refused.value.code == "identifiers_blocked"
    assert refused.value.extra == {"identifiers": ["Every identifier given is blocked."]}
    assert (Customer.objects.count(), Identity.objects.count()) == (0, 0)


def test_blocking_says_whose_identifier_it_removed(make_customer):
    ana = make_customer(("phone", "+33612345678"))

    blocked = blocked_identifier_add(kind="phone", value="06 12 34 56 78", reason="shop phone")

    assert blocked.unlinked == [ana.pk]
    assert keys_of(ana) == set()
    assert blocked_identifier_add(kind="phone", value="0612345678").unlinked == []


def test_a_replayed_message_resolves_no_one(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"))
    first, created = conversation_message_receive(
        identifiers=[email("ana@example.com")],
        channel=channels["social-dm"],
        body="Where is my order?",
        source="client:7",
        external_id="dm-1",
    )

    again, created_again = conversation_message_receive(
        identifiers=[email("someone.else@example.com")],
        channel=channels["social-dm"],
        body="Where is my order?",
        source="client:7",
        external_id="dm-1",
    )

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert first.conversation.customer_id == ana.pk
    assert list(Customer.objects.values_list("pk", flat=True)) == [ana.pk]
    assert ConversationMessage.objects.count() == 1


def test_a_message_id_reused_for_another_customer_is_refused(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"))
    bob = make_customer(("email", "bob@example.com"))
    conversation_message_add(
        customer=ana, channel=channels["email"], body="Hi", source="client:7", external_id="m-1"
    )

    with pytest.raises(Conflict) as refused:
        conversation_message_add(
            customer=bob,
            channel=channels["email"],
            body="Hey",
            source="client:7",
            external_id="m-1",
        )

    assert refused.value.code == "external_id_reused"
    assert refused.value.extra == {"external_id": ["Already used for another customer's message."]}
    assert list(ConversationMessage.objects.values_list("body", flat=True)) == ["Hi"]
    assert bob.conversations.count() == 0


def test_an_outbound_message_from_staff_is_authored_and_an_inbound_one_is_not(
    channels, make_customer, django_user_model
):
    make_customer(("email", "ana@example.com"))
    staff = django_user_model.objects.create_user(username="agent", password="pw", is_staff=True)

    inbound, _ = conversation_message_receive(
        identifiers=[email("ana@example.com")],
        channel=channels["email"],
        body="Question",
        source="user:1",
        actor=staff,
    )
    outbound, _ = conversation_message_receive(
        identifiers=[email("ana@example.com")],
        channel=channels["email"],
        body="Answer",
        source="user:1",
        direction="outbound",
        actor=staff,
    )

    assert (inbound.author, outbound.author) == (None, staff)
    assert inbound.conversation_id == outbound.conversation_id


def test_a_refused_profile_refuses_the_resolve_before_anyone_is_created(channels):
    with pytest.raises(ValidationFailed) as refused:
        customer_resolve(
            identifiers=[email("new@example.com")],
            source="t",
            profile={"city": "Lyon", "age_range": "young"},
        )

    assert refused.value.extra == {"age_range": ["Value 'young' is not a valid choice."]}
    assert (Customer.objects.count(), Identity.objects.count()) == (0, 0)

    customer, resolution = customer_resolve(
        identifiers=[email("new@example.com")], source="t", profile={"city": "Lyon"}
    )
    assert (customer.city, resolution.created) == ("Lyon", {customer.pk})
    assert Customer.objects.get().city == "Lyon"


def test_only_changed_fields_get_a_new_time(make_customer):
    ana = make_customer(("email", "ana@example.com"))
    customer_update(customer=ana, data={"city": "Lyon", "occupation": "Chef"}, at=at(-10))

    updated = customer_update(customer=ana, data={"city": "Lyon", "occupation": "Nurse"}, at=at(-1))

    assert updated.changed_fields == ["occupation"]
    assert updated.field_times == {"city": iso(at(-10)), "occupation": iso(at(-1))}
    again = customer_update(customer=ana, data={"city": "Lyon"}, at=at(0))
    assert again.changed_fields == []
    assert Customer.objects.get().field_times == {
        "city": iso(at(-10)),
        "occupation": iso(at(-1)),
    }


def test_merges_keep_the_oldest_and_take_at_most_the_limit(make_customer):
    young = make_customer(("email", "young@example.com"), created_at=at(-1))
    old = make_customer(("email", "old@example.com"), created_at=at(-30))
    assert merge_survivor([young, old]) == old

    many = [make_customer(created_at=at(-2)) for _ in range(MAX_MERGE - 1)]
    with pytest.raises(ValidationFailed) as refused:
        customer_merge(customers=[young, old, *many])

    assert refused.value.code == "too_many_customers"
    assert refused.value.extra == {"customers": [f"At most {MAX_MERGE}."]}
    assert Customer.objects.count() == MAX_MERGE + 1


def test_a_consent_recorded_late_says_it_is_not_the_current_one(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"))
    newer = consent_record(
        customer=ana, channel=channels["sms"], status="opted_out", source="STOP", occurred_at=at(-1)
    )
    older = consent_record(
        customer=ana, channel=channels["sms"], status="opted_in", source="form", occurred_at=at(-5)
    )

    assert (newer.is_current, older.is_current) == (True, False)


def test_a_recorded_touchpoint_with_a_bad_amount_is_refused(channels, make_customer):
    ana = make_customer(("email", "ana@example.com"))

    with pytest.raises(ValueError, match="properties.amount must be a number."):
        touchpoint_record(
            customer=ana,
            channel=channels["pos"],
            kind="purchase",
            source="orders",
            event_id="o-1",
            properties={"amount": "abc"},
        )

    ana.refresh_from_db()
    assert (ana.lifetime_orders, ana.lifetime_revenue) == (0, Decimal("0.00"))
    assert Touchpoint.objects.count() == 0


def test_customers_created_by_ingest_are_seen_at_their_events(channels):
    result = touchpoints_ingest(
        source="client:1",
        events=[
            {
                "event_id": f"e{n}",
                "kind": "product_view",
                "channel": "web",
                "occurred_at": iso(at(-n)),
                "identifiers": [{"kind": "email", "value": "new@example.com"}],
            }
            for n in (3, 1)
        ],
    )

    customer = Customer.objects.get(pk=result.customers[0])
    assert (customer.first_seen_at, customer.last_seen_at) == (at(-3), at(-1))
