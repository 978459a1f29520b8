"""Export and erase a customer's data; each recorded."""

from decimal import Decimal

import pytest
from django.utils import timezone

from customers.identifiers import Identifier
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
    PrivacyRequest,
    Segment,
    Touchpoint,
)
from customers.segments import segment_queryset
from customers.selectors import may_message
from customers.services import (
    consent_record,
    conversation_message_add,
    conversation_reply,
    customer_erase,
    customer_export,
    customer_merge,
    customer_resolve,
    customer_update,
    identity_add,
    touchpoints_ingest,
)
from omni.exceptions import Conflict, ValidationFailed
from omni.models import OutboxEvent
from tests.customers.conftest import at
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(make_customer, channels, staff_user):
    """Ana with three identifiers, a web visit and a purchase, two consents, a conversation
    (a question and a reply) and a merged duplicate."""
    LocationFactory(code="lyon")
    ana = make_customer(
        ("email", "ana@example.com"),
        ("phone", "+33612345678"),
        created_at=at(-90),
        first_name="Ana",
        last_name="Silva",
        city="Lyon",
        gender="female",
        age_range="25_34",
        language="pt-BR",
        time_zone="Europe/Lisbon",
    )
    duplicate = make_customer(("loyalty_card", "AB1234"), created_at=at(-10), occupation="Nurse")
    customer_merge(customers=[ana, duplicate])
    customer_update(customer=ana, data={"home_store": "lyon", "preferred_channel": "email"})
    touchpoints_ingest(
        source="client:1",
        events=[
            {
                "event_id": "v1",
                "kind": "product_view",
                "channel": "web",
                "occurred_at": at(-5).isoformat(),
                "identifiers": [{"kind": "email", "value": "ana@example.com"}],
            },
            {
                "event_id": "p1",
                "kind": "purchase",
                "channel": "pos",
                "occurred_at": at(-4).isoformat(),
                "identifiers": [{"kind": "phone", "value": "0612345678"}],
                "properties": {"amount": "59.90"},
            },
        ],
    )
    consent_record(
        customer=ana, channel=channels["email"], status="opted_in", source="web", occurred_at=at(-3)
    )
    consent_record(
        customer=ana, channel=channels["sms"], status="opted_out", source="pos", occurred_at=at(-2)
    )
    question, _ = conversation_message_add(
        customer=ana, channel=channels["social-dm"], body="Size?", source="x", sent_at=at(-1)
    )
    conversation_reply(
        conversation=question.conversation, channel=channels["email"], body="M", author=staff_user
    )
    ana.refresh_from_db()
    return ana


# --- Export -----------------------------------------------------------------------------------


def test_export_holds_everything_about_the_customer(ana, staff_user):
    data = customer_export(customer=ana, source="admin", actor=staff_user, reason="GDPR art. 15")

    assert set(data) == {
        "customer",
        "exported_at",
        "customers.identity",
        "customers.touchpoint",
        "customers.customerchannelstat",
        "customers.consent",
        "customers.consentstate",
        "customers.conversation",
        "customers.customermerge__survivor",
        "orders.cart",
        "orders.order",
        "campaigns.backinstocksubscription",
        "campaigns.enrolment",
        "campaigns.message",
    }
    assert {key: len(value) for key, value in data.items() if isinstance(value, list)} == {
        "customers.identity": 3,
        "customers.touchpoint": 6,  # a visit, a purchase, two consents, two messages
        "customers.customerchannelstat": 5,  # web, pos, email, sms, social-dm
        "customers.consent": 2,
        "customers.consentstate": 2,
        "customers.conversation": 1,
        "customers.customermerge__survivor": 1,
        "orders.cart": 0,
        "orders.order": 0,
        "campaigns.backinstocksubscription": 0,
        "campaigns.enrolment": 0,
        "campaigns.message": 0,
    }
    # Her events as recorded, without the timeline's stored copy of each.
    assert set(data["customers.touchpoint"][0]) == {
        "id",
        "customer_id",
        "channel_id",
        "kind",
        "occurred_at",
        "location_id",
        "properties",
        "source",
        "event_id",
        "received_at",
    }
    profile = data["customer"]
    assert (profile["id"], profile["first_name"], profile["last_name"], profile["city"]) == (
        ana.pk,
        "Ana",
        "Silva",
        "Lyon",
    )
    assert (profile["occupation"], profile["lifetime_orders"], profile["lifetime_revenue"]) == (
        "Nurse",
        1,
        "59.90",
    )
    assert sorted(i["value"] for i in data["customers.identity"]) == [
        "+33612345678",
        "AB1234",
        "ana@example.com",
    ]
    assert sorted(c["status"] for c in data["customers.consent"]) == ["opted_in", "opted_out"]
    conversation = data["customers.conversation"][0]
    assert [(m["direction"], m["body"]) for m in conversation["messages"]] == [
        ("inbound", "Size?"),
        ("outbound", "M"),
    ]
    assert data["customers.customermerge__survivor"][0]["merged_snapshot"]["occupation"] == "Nurse"

    request = PrivacyRequest.objects.get()
    assert (
        request.customer_id_ref,
        request.kind,
        request.reason,
        request.source,
        request.actor_id,
    ) == (ana.pk, "export", "GDPR art. 15", "admin", staff_user.pk)
    assert request.summary == {
        "customers.identity": 3,
        "customers.touchpoint": 6,
        "customers.customerchannelstat": 5,
        "customers.consent": 2,
        "customers.consentstate": 2,
        "customers.conversation": 1,
        "customers.customermerge__survivor": 1,
        "orders.cart": 0,
        "orders.order": 0,
        "campaigns.backinstocksubscription": 0,
        "campaigns.enrolment": 0,
        "campaigns.message": 0,
    }


def test_export_changes_nothing_but_the_record(ana):
    before = Customer.objects.filter(pk=ana.pk).values().get()
    customer_export(customer=ana, source="api")
    assert Customer.objects.filter(pk=ana.pk).values().get() == before
    assert PrivacyRequest.objects.count() == 1


def test_export_of_a_merged_customer_is_refused(make_customer):
    old = make_customer(("email", "a@example.com"), created_at=at(-9))
    young = make_customer(("email", "b@example.com"), created_at=at(-1))
    customer_merge(customers=[old, young])

    with pytest.raises(Conflict) as error:
        customer_export(customer=young, source="api")

    assert error.value.code == "customer_gone"
    assert PrivacyRequest.objects.count() == 0


# --- Erase ------------------------------------------------------------------------------------


def test_erase_removes_personal_data_and_keeps_the_row(ana, channels, staff_user):
    assert (ana.age_range, ana.language, ana.time_zone) == ("25_34", "pt-BR", "Europe/Lisbon")

    summary = customer_erase(customer=ana, source="admin", actor=staff_user, reason="Asked")

    assert summary == {
        "customers.Identity": 3,
        "customers.Touchpoint": 6,
        "customers.CustomerChannelStat": 5,
        "customers.Consent": 2,
        "customers.ConsentState": 2,
        "customers.Conversation": 1,
        "customers.ConversationMessage": 2,
        "customers.CustomerMerge": 1,
    }
    for model in (
        Identity,
        Touchpoint,
        CustomerChannelStat,
        Consent,
        ConsentState,
        Conversation,
        ConversationMessage,
    ):
        assert model.objects.count() == 0, model
    row = Customer.objects.get()
    assert row.pk == ana.pk
    assert (
        row.first_name,
        row.last_name,
        row.city,
        row.gender,
        row.occupation,
        row.age_range,
        row.language,
        row.time_zone,
        row.home_store_id,
        row.preferred_channel_id,
        row.preferred_channel_source,
        row.field_times,
    ) == ("Erased", "", "", "", "", "", "", "", None, None, PreferenceSource.INFERRED, {})
    assert row.erased_at is not None
    # What orders and reports need stays, without the person.
    assert (row.lifetime_orders, row.lifetime_revenue) == (1, Decimal("59.90"))
    audit = CustomerMerge.objects.get()
    assert (audit.survivor_id, audit.merged_snapshot, audit.field_changes) == (
        ana.pk,
        {"erased": True},
        {},
    )
    request = PrivacyRequest.objects.get()
    assert (
        request.customer_id_ref,
        request.kind,
        request.reason,
        request.source,
        request.actor_id,
        request.summary,
        request.created_at,
    ) == (ana.pk, "erase", "Asked", "admin", staff_user.pk, summary, row.erased_at)
    event = OutboxEvent.objects.get(type="customer.erased")
    assert (event.subject_id, event.payload) == (str(ana.pk), {"customer": ana.pk})


def test_an_erased_customer_stays_erased(ana, channels):
    customer_erase(customer=ana, source="admin")

    with pytest.raises(Conflict) as error:
        customer_erase(customer=ana, source="admin")
    assert error.value.code == "customer_erased"
    assert PrivacyRequest.objects.filter(kind="erase").count() == 1

    for attempt in (
        lambda: consent_record(
            customer=ana, channel=channels["email"], status="opted_in", source="web"
        ),
        lambda: conversation_message_add(
            customer=ana, channel=channels["email"], body="Hi", source="x"
        ),
        lambda: customer_update(customer=ana, data={"first_name": "Ana"}),
        lambda: identity_add(customer=ana, kind="email", value="ana@example.com", source="x"),
        lambda: customer_resolve(identifiers=[], customer_id=ana.pk, source="x"),
    ):
        with pytest.raises(Conflict) as error:
            attempt()
        assert error.value.code == "customer_erased"
    with pytest.raises(ValidationFailed) as error:
        touchpoints_ingest(
            source="client:1",
            events=[{"event_id": "z", "kind": "search", "channel": "web", "customer": ana.pk}],
        )
    assert error.value.extra == {"events": {"0": {"customer": [f"Customer {ana.pk} was erased."]}}}
    assert not may_message(ana, channels["email"])
    assert Consent.objects.count() == 0
    assert ConversationMessage.objects.count() == 0
    assert Identity.objects.count() == 0
    assert Touchpoint.objects.count() == 0
    assert Customer.objects.values_list(
        "first_name", "age_range", "language", "time_zone"
    ).get() == ("Erased", "", "", "")


def test_her_old_identifiers_now_make_a_new_customer(ana):
    customer_erase(customer=ana, source="admin")

    fresh, resolution = customer_resolve(
        identifiers=[Identifier("email", "ana@example.com")], source="web"
    )

    assert fresh.pk != ana.pk
    assert resolution.created == {fresh.pk}
    assert Customer.objects.count() == 2


def test_erased_customers_leave_segments(ana):
    everyone = Segment.objects.create(name="Everyone")
    assert list(segment_queryset(everyone)) == [ana]
    customer_erase(customer=ana, source="admin")
    assert list(segment_queryset(everyone)) == []


def test_erasing_a_merged_customer_is_refused(make_customer):
    old = make_customer(("email", "a@example.com"), created_at=at(-9))
    young = make_customer(("email", "b@example.com"), created_at=at(-1))
    customer_merge(customers=[old, young])

    with pytest.raises(Conflict) as error:
        customer_erase(customer=young, source="api")

    assert error.value.code == "customer_gone"
    assert PrivacyRequest.objects.count() == 0
    assert Customer.objects.get().erased_at is None


def test_erase_time_is_now(ana):
    before = timezone.now()
    customer_erase(customer=ana, source="admin")
    ana.refresh_from_db()
    assert before <= ana.erased_at <= timezone.now()
