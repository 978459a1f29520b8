"""The customers API as a contract: profiles found by any identifier, resolution, timelines,
touchpoint batches, consents, conversations, segments, merges and privacy requests."""

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from customers.models import (
    Consent,
    ConsentState,
    ConsentStatus,
    Conversation,
    ConversationMessage,
    ConversationStatus,
    Customer,
    CustomerChannelStat,
    CustomerMerge,
    Identity,
    PreferenceSource,
    PrivacyRequest,
    Segment,
    SegmentMatch,
    SegmentRule,
    SegmentRuleKind,
    Touchpoint,
)
from customers.services import (
    MAX_MERGE,
    consent_record,
    conversation_message_add,
    customer_erase,
    customer_merge,
    touchpoints_ingest,
)
from omni.models import IdempotencyKey, OutboxEvent
from tests.customers.conftest import at
from tests.factories import LocationFactory
from tests.omni.test_schema import assert_matches_schema

pytestmark = pytest.mark.django_db

BASE = "/api/v1/customers"
CUSTOMERS = f"{BASE}/"
RESOLVE = f"{BASE}/resolve/"
MERGE = f"{BASE}/merge/"
BATCH = f"{BASE}/touchpoints/batch/"
CONVERSATIONS = f"{BASE}/conversations/"
MESSAGES = f"{BASE}/conversations/messages/"
SEGMENTS = f"{BASE}/segments/"


def detail_url(pk) -> str:
    return f"{BASE}/{pk}/"


def timeline_url(pk) -> str:
    return f"{BASE}/{pk}/timeline/"


def consents_url(pk) -> str:
    return f"{BASE}/{pk}/consents/"


def export_url(pk) -> str:
    return f"{BASE}/{pk}/export/"


def erase_url(pk) -> str:
    return f"{BASE}/{pk}/erase/"


def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


def snapshot() -> dict:
    """Every customer row (and the outbox), to prove that a refused call changed nothing."""
    models = (
        Customer,
        Identity,
        Touchpoint,
        CustomerChannelStat,
        Consent,
        ConsentState,
        Conversation,
        ConversationMessage,
        CustomerMerge,
        PrivacyRequest,
    )
    rows = {model.__name__: list(model.objects.order_by("pk").values()) for model in models}
    return {
        **rows,
        "events": OutboxEvent.objects.count(),
        "keys": IdempotencyKey.objects.count(),
    }


def source_of(api) -> str:
    return f"client:{api.api_client.pk}"


def event(event_id, kind="product_view", channel="web", minutes=0, **extra) -> dict:
    return {
        "event_id": event_id,
        "kind": kind,
        "channel": channel,
        "occurred_at": iso(at(minutes=minutes)),
        "identifiers": [{"kind": "email", "value": "ana@example.com"}],
        **extra,
    }


@pytest.fixture
def schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def paris(db):
    return LocationFactory(code="paris", name="Paris", kind="store")


@pytest.fixture
def warehouse(db):
    return LocationFactory(code="wh", name="Warehouse", kind="warehouse")


@pytest.fixture
def ana(channels, make_customer):
    """A customer known by email and phone, created at T0."""
    return make_customer(
        ("email", "ana@example.com"), ("phone", "0612345678"), first_name="Ana", city="Paris"
    )


@pytest.fixture
def bob(channels, make_customer):
    return make_customer(("email", "bob@example.com"), created_at=at(days=1), first_name="Bob")


def customer_json(customer: Customer, **changes) -> dict:
    """A customer as the list sends it, read from the database."""
    customer = Customer.objects.select_related("home_store", "preferred_channel").get(
        pk=customer.pk
    )
    body = {
        "id": customer.pk,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "age_range": customer.age_range,
        "gender": customer.gender,
        "city": customer.city,
        "occupation": customer.occupation,
        "language": customer.language,
        "time_zone": customer.time_zone,
        "home_store": customer.home_store.code if customer.home_store else None,
        "preferred_channel": (
            customer.preferred_channel.code if customer.preferred_channel else None
        ),
        "preferred_channel_source": customer.preferred_channel_source,
        "identities": [
            {
                "kind": identity.kind,
                "value": identity.value,
                "verified": identity.verified,
                "source": identity.source,
                "first_seen_at": iso(identity.first_seen_at),
            }
            for identity in Identity.objects.filter(customer=customer).order_by("kind", "value")
        ],
        "first_seen_at": iso(customer.first_seen_at),
        "last_seen_at": iso(customer.last_seen_at),
        "last_purchase_at": iso(customer.last_purchase_at),
        "lifetime_orders": customer.lifetime_orders,
        "lifetime_revenue": f"{customer.lifetime_revenue:.2f}",
        "erased": customer.erased_at is not None,
        "erased_at": iso(customer.erased_at),
        "created_at": iso(customer.created_at),
        "updated_at": iso(customer.updated_at),
    }
    return {**body, **changes}


def customer_detail_json(customer: Customer, **changes) -> dict:
    return {
        **customer_json(customer),
        "consents": [
            {"channel": s.channel.code, "status": s.status, "occurred_at": iso(s.occurred_at)}
            for s in ConsentState.objects.filter(customer=customer)
            .select_related("channel")
            .order_by("channel__code")
        ],
        "channels": [
            {
                "channel": s.channel.code,
                "touchpoints": s.touchpoints,
                "first_seen_at": iso(s.first_seen_at),
                "last_seen_at": iso(s.last_seen_at),
            }
            for s in CustomerChannelStat.objects.filter(customer=customer)
            .select_related("channel")
            .order_by("channel__code")
        ],
        **changes,
    }


# --- Who may call -----------------------------------------------------------------------------


def read_paths(customer_pk, conversation_pk, segment_pk) -> list[str]:
    return [
        CUSTOMERS,
        detail_url(customer_pk),
        timeline_url(customer_pk),
        consents_url(customer_pk),
        export_url(customer_pk),
        CONVERSATIONS,
        f"{CONVERSATIONS}{conversation_pk}/",
        SEGMENTS,
        f"{SEGMENTS}{segment_pk}/members/",
    ]


def write_calls(customer_pk, other_pk, conversation_pk) -> list[tuple[str, str, dict]]:
    return [
        ("post", CUSTOMERS, {"identifiers": [{"kind": "email", "value": "new@example.com"}]}),
        ("patch", detail_url(customer_pk), {"city": "Lyon"}),
        ("post", RESOLVE, {"identifiers": [{"kind": "email", "value": "new@example.com"}]}),
        ("post", MERGE, {"customers": [customer_pk, other_pk], "reason": "same"}),
        ("post", BATCH, {"events": [event("e1")]}),
        ("post", consents_url(customer_pk), {"channel": "email", "status": "opted_in"}),
        ("post", erase_url(customer_pk), {"reason": "asked"}),
        (
            "post",
            MESSAGES,
            {"customer": customer_pk, "channel": "email", "body": "Hello", "external_id": "m9"},
        ),
        ("post", f"{CONVERSATIONS}{conversation_pk}/status/", {"status": "closed"}),
    ]


@pytest.fixture
def world(ana, bob, channels):
    conversation = conversation_message_add(
        customer=ana, channel=channels["email"], body="Where is my order?", source="client:0"
    )[0].conversation
    segment = Segment.objects.create(name="Everyone")
    return ana, bob, conversation, segment


def test_anonymous_callers_are_refused_everywhere(api, world):
    ana, bob, conversation, segment = world
    before = snapshot()

    for path in read_paths(ana.pk, conversation.pk, segment.pk):
        body = assert_error(api.get(path), 401, "not_authenticated")
        assert body["details"] == {}
    for method, path, payload in write_calls(ana.pk, bob.pk, conversation.pk):
        assert_error(getattr(api, method)(path, payload), 401, "not_authenticated")

    assert snapshot() == before


def test_read_only_clients_read_but_may_not_write(reader, world):
    ana, bob, conversation, segment = world
    for path in read_paths(ana.pk, conversation.pk, segment.pk):
        if path == export_url(ana.pk):
            continue  # personal data: see below
        assert reader.get(path).status_code == 200, path
    before = snapshot()

    for method, path, payload in write_calls(ana.pk, bob.pk, conversation.pk):
        response = getattr(reader, method)(path, payload, HTTP_IDEMPOTENCY_KEY=f"k-{path}")
        body = assert_error(response, 403, "permission_denied")
        if path == erase_url(ana.pk):
            assert body["message"] == "Exporting or erasing personal data needs write access."
        else:
            assert body["message"] == "This API client has read-only access.", path

    assert snapshot() == before


def test_read_only_clients_may_not_export_personal_data(reader, ana):
    body = assert_error(reader.get(export_url(ana.pk)), 403, "permission_denied")

    assert body["message"] == "Exporting or erasing personal data needs write access."
    assert PrivacyRequest.objects.count() == 0


# --- List and filters -------------------------------------------------------------------------


def test_list_shows_every_customer_newest_first(reader, ana, bob):
    response = reader.get(CUSTOMERS)

    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [customer_json(bob), customer_json(ana)],
    }
    assert response.json()["results"][1]["identities"] == [
        {
            "kind": "email",
            "value": "ana@example.com",
            "verified": False,
            "source": "setup",
            "first_seen_at": "2026-03-02T09:00:00Z",
        },
        {
            "kind": "phone",
            "value": "+33612345678",
            "verified": False,
            "source": "setup",
            "first_seen_at": "2026-03-02T09:00:00Z",
        },
    ]


def test_list_shows_erased_customers_as_erased(reader, ana, bob):
    customer_erase(customer=ana, source="test", reason="asked")

    results = reader.get(CUSTOMERS).json()["results"]
    erased = reader.get(CUSTOMERS, {"erased": "true"}).json()["results"]
    others = reader.get(CUSTOMERS, {"erased": "false"}).json()["results"]

    assert [(c["id"], c["erased"], c["first_name"], c["identities"]) for c in results] == [
        (bob.pk, False, "Bob", results[0]["identities"]),
        (ana.pk, True, "Erased", []),
    ]
    assert results[1]["erased_at"] is not None
    assert [c["id"] for c in erased] == [ana.pk]
    assert [c["id"] for c in others] == [bob.pk]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("ANA@example.com", ["ana"]),
        ("+33 6 12 34 56 78", ["ana"]),
        ("06.12.34.56.78", ["ana"]),
        ("bob@example.com", ["bob"]),
        ("nobody@example.com", []),
        ("", ["bob", "ana"]),
    ],
)
def test_list_finds_customers_by_any_identifier(reader, ana, bob, text, found):
    names = {"ana": ana.pk, "bob": bob.pk}

    response = reader.get(CUSTOMERS, {"identifier": text})

    assert [c["id"] for c in response.json()["results"]] == [names[n] for n in found]


def test_list_filters_by_email_and_phone_normalised(reader, ana, bob):
    def ids(**params):
        return [c["id"] for c in reader.get(CUSTOMERS, params).json()["results"]]

    assert ids(email=" Ana@EXAMPLE.com") == [ana.pk]
    assert ids(phone="06 12 34 56 78") == [ana.pk]
    assert ids(phone="+33698765432") == []
    assert ids(email="bob@example.com", phone="0612345678") == []


def test_list_refuses_an_invalid_email_or_phone(reader, ana):
    body = assert_error(reader.get(CUSTOMERS, {"email": "not-an-email"}), 400, "validation_error")
    assert body["details"] == {"email": ["'not-an-email' is not an email address."]}

    body = assert_error(reader.get(CUSTOMERS, {"phone": "12"}), 400, "validation_error")
    assert body["details"] == {"phone": ["'12' is not a valid phone number."]}

    body = assert_error(reader.get(CUSTOMERS, {"seen_after": "soon"}), 400, "validation_error")
    assert body["details"] == {"seen_after": ["Enter a valid date/time."]}


def test_list_filters_by_home_store_channel_consent_and_last_seen(
    reader, ana, bob, channels, paris
):
    Customer.objects.filter(pk=ana.pk).update(home_store=paris)
    touchpoints_ingest(
        source="client:1",
        events=[
            event("e1", channel="pos", minutes=0),
            {
                **event("e2", channel="app", minutes=60 * 24 * 3),
                "identifiers": [{"kind": "email", "value": "bob@example.com"}],
            },
        ],
    )
    for customer, status in ((bob, ConsentStatus.OPTED_IN), (ana, ConsentStatus.OPTED_OUT)):
        consent_record(
            customer=customer,
            channel=channels["sms"],
            status=status,
            source="store",
            occurred_at=at(minutes=5),
        )

    def ids(**params):
        response = reader.get(CUSTOMERS, params)
        assert response.status_code == 200, response.content
        return [c["id"] for c in response.json()["results"]]

    assert ids(home_store="paris") == [ana.pk]
    assert ids(home_store="lyon") == []
    assert ids(channel="pos") == [ana.pk]
    assert ids(channel="app") == [bob.pk]
    assert ids(channel="sms") == [bob.pk, ana.pk]  # the consent changes are on the timeline
    assert ids(channel="web") == []
    assert ids(consent="sms") == [bob.pk]
    assert ids(consent="email") == []
    assert ids(seen_after=iso(at(days=2))) == [bob.pk]
    assert ids(seen_after=iso(at(days=2)), channel="pos") == []


@pytest.mark.parametrize("n", [2, 12])
def test_list_query_count_does_not_grow(
    reader, channels, make_customer, n, django_assert_num_queries
):
    for i in range(n):
        make_customer(("email", f"c{i}@example.com"), ("loyalty_card", f"card-{i}"))
    reader.get(CUSTOMERS)  # the token's first use records last_used_at

    # token, count, customers (home store and channel joined), identities
    with django_assert_num_queries(4):
        response = reader.get(CUSTOMERS, {"limit": 500, "email": "c1@example.com"})
    assert response.json()["count"] == 1

    with django_assert_num_queries(4):
        response = reader.get(CUSTOMERS, {"limit": 500})
    assert [len(c["identities"]) for c in response.json()["results"]] == [2] * n

    # token, identities matching the text, count, customers, identities
    with django_assert_num_queries(5):
        response = reader.get(CUSTOMERS, {"identifier": "CARD-1"})
    assert response.json()["count"] == 1


# --- Create -----------------------------------------------------------------------------------


def test_create_a_customer_with_identifiers_and_profile(writer, channels, paris):
    response = writer.post(
        CUSTOMERS,
        {
            "identifiers": [
                {"kind": "email", "value": "Ana@Example.com", "verified": True},
                {"kind": "phone", "value": "06 12 34 56 78"},
                {"kind": "social_handle", "value": "@Ana", "network": "instagram"},
            ],
            "first_name": " Ana ",
            "last_name": "Martin",
            "age_range": "25_34",
            "city": "Paris",
            "language": "fr",
            "time_zone": "Europe/Paris",
            "home_store": "paris",
            "preferred_channel": "sms",
        },
    )

    assert response.status_code == 201, response.content
    customer = Customer.objects.get()
    assert response.json() == customer_detail_json(customer)
    body = response.json()
    assert (body["first_name"], body["last_name"], body["home_store"]) == ("Ana", "Martin", "paris")
    assert (body["preferred_channel"], body["preferred_channel_source"]) == ("sms", "customer")
    assert [(i["kind"], i["value"], i["verified"], i["source"]) for i in body["identities"]] == [
        ("email", "ana@example.com", True, source_of(writer)),
        ("phone", "+33612345678", False, source_of(writer)),
        ("social_handle", "instagram:ana", False, source_of(writer)),
    ]
    assert (body["consents"], body["channels"], body["erased"]) == ([], [], False)


def test_create_refuses_an_identifier_that_belongs_to_someone(writer, ana):
    before = snapshot()

    response = writer.post(
        CUSTOMERS,
        {"identifiers": [{"kind": "phone", "value": "+33 6 12 34 56 78"}], "first_name": "Eve"},
    )

    body = assert_error(response, 409, "identifier_taken")
    assert body["details"] == {"identifiers": ["phone +33612345678 belongs to another customer."]}
    assert snapshot() == before


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        ({}, {"identifiers": ["At least one identifier ({kind, value})."]}),
        ({"identifiers": []}, {"identifiers": ["At least one identifier ({kind, value})."]}),
        (
            {
                "identifiers": [
                    {"kind": "email", "value": "ok@example.com"},
                    {"kind": "email", "value": "not-an-email"},
                    {"kind": "fax", "value": "1"},
                ]
            },
            {
                "identifiers": {
                    "1": ["'not-an-email' is not an email address."],
                    "2": [
                        "Unknown identifier kind 'fax'; one of: email, phone, loyalty_card, "
                        "pos_customer_id, app_device, social_handle, web_cookie."
                    ],
                }
            },
        ),
        (
            {"identifiers": [{"kind": "email", "value": "a@example.com"}], "nickname": "A"},
            {
                "nickname": [
                    "Unknown field; one of: first_name, last_name, age_range, gender, city, "
                    "occupation, language, time_zone, home_store, preferred_channel."
                ]
            },
        ),
        (
            {"identifiers": [{"kind": "email", "value": "a@example.com"}], "age_range": "old"},
            {"age_range": ["Value 'old' is not a valid choice."]},
        ),
        (
            {"identifiers": [{"kind": "email", "value": "a@example.com"}], "home_store": "wh"},
            {"home_store": ["wh is a warehouse, not a store."]},
        ),
        (
            {
                "identifiers": [{"kind": "email", "value": "a@example.com"}],
                "preferred_channel": "web",
            },
            {"preferred_channel": ["web is not a messaging channel."]},
        ),
        (
            {"identifiers": [{"kind": "email", "value": "a@example.com"}], "first_name": 7},
            {"first_name": ["Must be text."]},
        ),
    ],
)
def test_create_refuses_bad_input_and_changes_nothing(
    writer, channels, warehouse, payload, details
):
    before = snapshot()

    body = assert_error(writer.post(CUSTOMERS, payload), 400, "validation_error")

    assert body["details"] == details
    assert snapshot() == before


def test_create_refuses_a_body_that_is_not_an_object(writer, channels):
    body = assert_error(writer.post(CUSTOMERS, [1, 2]), 400, "validation_error")

    assert body["details"] == {"non_field_errors": ["Expected a JSON object."]}
    assert Customer.objects.count() == 0


def test_create_with_an_idempotency_key_runs_once(writer, channels):
    payload = {"identifiers": [{"kind": "email", "value": "ana@example.com"}]}

    first = writer.post(CUSTOMERS, payload, HTTP_IDEMPOTENCY_KEY="create-ana")
    again = writer.post(CUSTOMERS, payload, HTTP_IDEMPOTENCY_KEY="create-ana")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Customer.objects.count() == 1


# --- Resolve ----------------------------------------------------------------------------------


def test_resolve_creates_then_finds_then_merges(writer, channels, bob):
    first = writer.post(RESOLVE, {"identifiers": [{"kind": "email", "value": "Ana@Example.com"}]})
    assert first.status_code == 200, first.content
    ana = Customer.objects.get(identities__value="ana@example.com")
    assert first.json() == {
        "customer": customer_detail_json(ana),
        "created": True,
        "merged": [],
        "attached": 1,
    }

    again = writer.post(
        RESOLVE,
        {
            "identifiers": [
                {"kind": "email", "value": "ana@example.com"},
                {"kind": "phone", "value": "0612345678"},
            ]
        },
    )
    assert (again.json()["customer"]["id"], again.json()["created"]) == (ana.pk, False)
    assert (again.json()["merged"], again.json()["attached"]) == ([], 1)

    # Bob (older) turns out to be Ana: one person, Bob's profile survives.
    merged = writer.post(
        RESOLVE,
        {
            "identifiers": [
                {"kind": "phone", "value": "+33612345678"},
                {"kind": "email", "value": "bob@example.com"},
            ]
        },
    )
    body = merged.json()
    assert (body["customer"]["id"], body["created"], body["merged"]) == (bob.pk, False, [ana.pk])
    assert sorted(i["value"] for i in body["customer"]["identities"]) == [
        "+33612345678",
        "ana@example.com",
        "bob@example.com",
    ]
    assert Customer.objects.count() == 1


def test_resolve_sets_profile_fields_sent(writer, channels, ana):
    response = writer.post(
        RESOLVE,
        {"identifiers": [{"kind": "email", "value": "ana@example.com"}], "city": "Lyon"},
    )

    assert response.status_code == 200
    assert response.json()["customer"]["city"] == "Lyon"
    assert Customer.objects.get(pk=ana.pk).city == "Lyon"


def test_resolve_with_a_bad_profile_field_creates_nobody(writer, channels):
    before = snapshot()

    response = writer.post(
        RESOLVE,
        {"identifiers": [{"kind": "email", "value": "new@example.com"}], "gender": "robot"},
    )

    body = assert_error(response, 400, "validation_error")
    assert body["details"] == {"gender": ["Value 'robot' is not a valid choice."]}
    assert snapshot() == before


def test_resolve_an_erased_customer_is_409(writer, ana):
    customer_erase(customer=ana, source="test")
    before = snapshot()

    response = writer.post(
        RESOLVE,
        {"customer": ana.pk, "identifiers": [{"kind": "email", "value": "ana@example.com"}]},
    )

    body = assert_error(response, 409, "customer_erased")
    assert body["details"] == {"customer": [f"Customer {ana.pk} was erased."]}
    assert snapshot() == before


def test_resolve_by_a_merged_customer_id_finds_the_survivor(writer, ana, bob):
    customer_merge(customers=[ana, bob], reason="same")

    response = writer.post(RESOLVE, {"customer": bob.pk})

    assert response.status_code == 200
    assert (response.json()["customer"]["id"], response.json()["created"]) == (ana.pk, False)


@pytest.mark.parametrize(
    ("payload", "status", "code", "details"),
    [
        # "An identifier or a customer id" is the service's rule, and its error.
        ({}, 400, "validation_error", {"identifiers": ["At least one identifier."]}),
        (
            {"identifiers": [], "customer": None},
            400,
            "validation_error",
            {"identifiers": ["At least one identifier."]},
        ),
        (
            {"customer": "12"},
            400,
            "validation_error",
            {"customer": ["A customer id (a whole number)."]},
        ),
        (
            {"identifiers": [{"kind": "email", "value": "x"}]},
            400,
            "validation_error",
            {"identifiers": {"0": ["'x' is not an email address."]}},
        ),
        (
            {"identifiers": [{"kind": "pos_customer_id", "value": "P\u0000"}]},
            400,
            "validation_error",
            {"identifiers": {"0": ["The value contains a NUL character."]}},
        ),
        (
            {"city": "Ly\u0000on", "identifiers": [{"kind": "email", "value": "a@example.com"}]},
            400,
            "validation_error",
            {"city": ["Contains a NUL character."]},
        ),
        ({"customer": 999999}, 404, "not_found", {"customer": ["Unknown customer 999999."]}),
    ],
)
def test_resolve_refuses_bad_input(writer, channels, payload, status, code, details):
    before = snapshot()

    body = assert_error(writer.post(RESOLVE, payload), status, code)

    assert body["details"] == details
    assert snapshot() == before


def test_resolve_without_identifier_or_customer_says_what_is_missing(writer, channels):
    body = assert_error(writer.post(RESOLVE, {"city": "Lyon"}), 400, "validation_error")

    assert (body["message"], body["details"]) == (
        "Give an identifier or a customer id.",
        {"identifiers": ["At least one identifier."]},
    )
    assert Customer.objects.count() == 0


@pytest.mark.parametrize("value", ["12", True, 0, -3, 2**63, 1.5, [1]])
@pytest.mark.parametrize("path", [RESOLVE, MESSAGES])
def test_resolve_and_messages_take_the_same_customer_ids(writer, ana, channels, path, value):
    """The ``customer`` of both bodies is a JSON whole number: a string of digits, a boolean,
    a fraction or an id out of range is refused alike, before anything is resolved."""
    before = snapshot()

    response = writer.post(path, {"customer": value, "channel": "email", "body": "Hi"})

    body = assert_error(response, 400, "validation_error")
    assert body["details"] == {"customer": ["A customer id (a whole number)."]}
    assert snapshot() == before


def test_resolve_with_a_bad_profile_merges_and_attaches_nothing(writer, ana, bob, paris):
    before = snapshot()

    response = writer.post(
        RESOLVE,
        {
            "identifiers": [
                {"kind": "email", "value": "ana@example.com"},
                {"kind": "email", "value": "bob@example.com"},
                {"kind": "phone", "value": "0698765432"},
            ],
            "city": 7,
            "home_store": "nowhere",
        },
    )

    body = assert_error(response, 400, "validation_error")
    assert body["details"] == {
        "city": ["Must be text."],
        "home_store": ["Unknown location nowhere."],
    }
    assert snapshot() == before
    assert Customer.objects.count() == 2


def test_resolve_by_customer_id_sets_the_profile(writer, ana, paris):
    response = writer.post(RESOLVE, {"customer": ana.pk, "home_store": "paris", "city": "Lyon"})

    assert response.status_code == 200, response.content
    ana.refresh_from_db()
    assert (ana.home_store, ana.city) == (paris, "Lyon")
    assert response.json() == {
        "customer": customer_detail_json(ana),
        "created": False,
        "merged": [],
        "attached": 0,
    }


# --- Retrieve and change ----------------------------------------------------------------------


def test_get_a_customer_with_consents_channels_and_lifetime_stats(reader, ana, channels):
    touchpoints_ingest(
        source="client:1",
        events=[
            event("v1", minutes=0),
            event("v2", minutes=5),
            event("p1", kind="purchase", channel="pos", minutes=10, properties={"amount": 42.5}),
        ],
    )
    consent_record(
        customer=ana,
        channel=channels["email"],
        status=ConsentStatus.OPTED_IN,
        source="web form",
        occurred_at=at(minutes=20),
    )

    response = reader.get(detail_url(ana.pk))

    assert response.status_code == 200
    body = response.json()
    assert body == customer_detail_json(ana)
    assert body["consents"] == [
        {"channel": "email", "status": "opted_in", "occurred_at": "2026-03-02T09:20:00Z"}
    ]
    assert body["channels"] == [
        {
            "channel": "email",
            "touchpoints": 1,
            "first_seen_at": "2026-03-02T09:20:00Z",
            "last_seen_at": "2026-03-02T09:20:00Z",
        },
        {
            "channel": "pos",
            "touchpoints": 1,
            "first_seen_at": "2026-03-02T09:10:00Z",
            "last_seen_at": "2026-03-02T09:10:00Z",
        },
        {
            "channel": "web",
            "touchpoints": 2,
            "first_seen_at": "2026-03-02T09:00:00Z",
            "last_seen_at": "2026-03-02T09:05:00Z",
        },
    ]
    assert (body["lifetime_orders"], body["lifetime_revenue"]) == (1, "42.50")
    assert body["last_purchase_at"] == "2026-03-02T09:10:00Z"


def test_a_merged_customer_id_is_404_naming_the_survivor(reader, ana, bob, make_customer):
    carl = make_customer(("email", "carl@example.com"), created_at=at(days=-1))
    customer_merge(customers=[ana, bob], reason="same")  # bob into ana
    customer_merge(customers=[carl, ana], reason="same")  # ana (with bob) into carl

    for pk in (bob.pk, ana.pk):
        for path in (detail_url(pk), timeline_url(pk), consents_url(pk)):
            body = assert_error(reader.get(path), 404, "customer_merged")
            assert body["details"] == {"survivor": carl.pk}, path
            assert (
                body["message"] == f"Customer {pk} was merged into customer {carl.pk}; use that id."
            )

    assert reader.get(detail_url(carl.pk)).status_code == 200


def test_an_unknown_customer_is_404(reader, writer, channels):
    for path in (detail_url(999), timeline_url(999), consents_url(999)):
        body = assert_error(reader.get(path), 404, "not_found")
        assert (body["message"], body["details"]) == ("No customer 999.", {})
    assert_error(writer.patch(detail_url(999), {"city": "Lyon"}), 404, "not_found")
    assert_error(reader.get(f"{BASE}/{'9' * 30}/"), 404, "not_found")
    assert_error(reader.get(f"{BASE}/nope/"), 404, "not_found")


def test_get_a_customer_is_five_queries(reader, ana, django_assert_num_queries):
    reader.get(detail_url(ana.pk))

    # token, customer, identities, consents, channels
    with django_assert_num_queries(5):
        assert reader.get(detail_url(ana.pk)).status_code == 200


def test_patch_changes_only_the_fields_sent(writer, ana, channels, paris):
    response = writer.patch(
        detail_url(ana.pk),
        {"last_name": "Martin", "home_store": "paris", "preferred_channel": "email"},
    )

    assert response.status_code == 200, response.content
    ana.refresh_from_db()
    assert response.json() == customer_detail_json(ana)
    assert (ana.first_name, ana.last_name, ana.city) == ("Ana", "Martin", "Paris")
    assert (ana.home_store, ana.preferred_channel) == (paris, channels["email"])
    assert ana.preferred_channel_source == PreferenceSource.CUSTOMER


def test_patch_with_an_invalid_field_changes_nothing(writer, ana):
    before = snapshot()

    response = writer.patch(detail_url(ana.pk), {"city": "Lyon", "time_zone": "Mars/Olympus"})

    body = assert_error(response, 400, "validation_error")
    assert list(body["details"]) == ["time_zone"]
    assert snapshot() == before


def test_patch_an_erased_customer_is_409(writer, ana):
    customer_erase(customer=ana, source="test")
    before = snapshot()

    body = assert_error(writer.patch(detail_url(ana.pk), {"city": "Lyon"}), 409, "customer_erased")

    assert body["message"] == "This customer was erased."
    assert snapshot() == before


# --- Timeline ---------------------------------------------------------------------------------


@pytest.fixture
def journey(ana, channels, paris):
    """Ana's events on four channels, the two store ones at the same moment."""
    touchpoints_ingest(
        source="client:1",
        events=[
            event("v1", minutes=0, properties={"sku": "TEE-M"}),
            event("a1", kind="app_open", channel="app", minutes=10),
            event("s1", kind="store_visit", channel="pos", minutes=20, location="paris"),
            event(
                "p1",
                kind="purchase",
                channel="pos",
                minutes=20,
                location="paris",
                properties={"amount": "20.00"},
            ),
            event("c1", kind="add_to_cart", channel="web", minutes=30),
            event("m1", kind="message_opened", channel="email", minutes=40),
            event("v2", minutes=50),
        ],
    )
    return ana


def test_timeline_is_newest_first_across_channels(reader, journey):
    response = reader.get(timeline_url(journey.pk))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    rows = {t.event_id: t for t in Touchpoint.objects.all()}
    assert [r["event_id"] for r in body["results"]] == ["v2", "m1", "c1", "p1", "s1", "a1", "v1"]
    assert body["results"][3] == {
        "id": rows["p1"].pk,
        "kind": "purchase",
        "channel": "pos",
        "location": "paris",
        "occurred_at": "2026-03-02T09:20:00Z",
        "properties": {"amount": "20.00"},
        "source": "client:1",
        "event_id": "p1",
    }
    assert body["results"][6] == {
        "id": rows["v1"].pk,
        "kind": "product_view",
        "channel": "web",
        "location": None,
        "occurred_at": "2026-03-02T09:00:00Z",
        "properties": {"sku": "TEE-M"},
        "source": "client:1",
        "event_id": "v1",
    }


def test_timeline_cursor_pages_through_every_event_once(reader, journey):
    seen, pages, url = [], [], timeline_url(journey.pk) + "?limit=2"
    while url:
        response = reader.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append([r["event_id"] for r in body["results"]])
        seen += pages[-1]
        url = body["next"]
        if url:
            assert parse_qs(urlparse(url).query)["limit"] == ["2"]

    assert pages == [["v2", "m1"], ["c1", "p1"], ["s1", "a1"], ["v1"]]
    assert len(seen) == len(set(seen)) == 7

    second = reader.get(timeline_url(journey.pk) + "?limit=2").json()["next"]
    back = reader.get(reader.get(second).json()["previous"]).json()
    assert [r["event_id"] for r in back["results"]] == ["v2", "m1"]


def test_timeline_sees_new_events_on_the_first_page_only(reader, journey):
    first = reader.get(timeline_url(journey.pk), {"limit": 3}).json()
    touchpoints_ingest(source="client:1", events=[event("late", minutes=55)])

    second = reader.get(first["next"]).json()

    assert [r["event_id"] for r in second["results"]] == ["p1", "s1", "a1"]
    fresh = reader.get(timeline_url(journey.pk), {"limit": 1}).json()["results"]
    assert [r["event_id"] for r in fresh] == ["late"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"channel": "pos"}, ["p1", "s1"]),
        ({"kind": "product_view"}, ["v2", "v1"]),
        ({"since": "2026-03-02T09:20:00Z"}, ["v2", "m1", "c1", "p1", "s1"]),
        ({"until": "2026-03-02T09:20:00Z"}, ["a1", "v1"]),
        ({"since": "2026-03-02T09:10:00Z", "until": "2026-03-02T09:30:00Z", "channel": "web"}, []),
        ({"channel": "nowhere"}, []),
    ],
)
def test_timeline_filters(reader, journey, params, expected):
    response = reader.get(timeline_url(journey.pk), params)

    assert response.status_code == 200, response.content
    assert [r["event_id"] for r in response.json()["results"]] == expected


def test_timeline_refuses_bad_filters_and_cursors(reader, journey):
    body = assert_error(
        reader.get(timeline_url(journey.pk), {"kind": "nap"}), 400, "validation_error"
    )
    assert body["details"] == {
        "kind": ["Select a valid choice. nap is not one of the available choices."]
    }
    body = assert_error(
        reader.get(timeline_url(journey.pk), {"since": "yesterday"}), 400, "validation_error"
    )
    assert body["details"] == {"since": ["Enter a valid date/time."]}
    assert_error(reader.get(timeline_url(journey.pk), {"cursor": "bogus"}), 404, "not_found")


def cursors(api, url) -> tuple[str, str]:
    """The ``next`` cursor of ``url``'s first page and the ``previous`` one of its second."""
    following = api.get(url).json()["next"]
    back = api.get(following).json()["previous"]
    return (
        parse_qs(urlparse(following).query)["cursor"][0],
        parse_qs(urlparse(back).query)["cursor"][0],
    )


@pytest.mark.parametrize("limit", [None, 3])  # the prepared page, and the ORM's
def test_a_valid_cursor_on_an_unknown_or_merged_id_is_404(reader, journey, make_customer, limit):
    params = {} if limit is None else {"limit": limit}
    url = timeline_url(journey.pk) + ("" if limit is None else f"?limit={limit}")
    if limit is None:
        touchpoints_ingest(
            source="client:1", events=[event(f"x{i}", minutes=60 + i) for i in range(60)]
        )
    forward, backward = cursors(reader, url)
    carl = make_customer(("email", "carl@example.com"), created_at=at(days=-1))
    customer_merge(customers=[carl, journey], reason="same")  # her events move to carl

    for cursor in (forward, backward):
        body = assert_error(
            reader.get(timeline_url(999), {**params, "cursor": cursor}), 404, "not_found"
        )
        assert (body["message"], body["details"]) == ("No customer 999.", {})
        body = assert_error(
            reader.get(timeline_url(journey.pk), {**params, "cursor": cursor}),
            404,
            "customer_merged",
        )
        assert body["details"] == {"survivor": carl.pk}
        assert (
            body["message"]
            == f"Customer {journey.pk} was merged into customer {carl.pk}; use that id."
        )
        page = reader.get(timeline_url(carl.pk), {**params, "cursor": cursor})
        assert page.status_code == 200, page.content
        assert page.json()["results"]


def test_a_cursor_past_the_end_of_a_known_timeline_is_an_empty_page(reader, journey, bob):
    forward, _ = cursors(reader, timeline_url(journey.pk) + "?limit=2")

    response = reader.get(timeline_url(bob.pk), {"limit": 2, "cursor": forward})

    assert response.status_code == 200, response.content
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_an_empty_timeline_of_a_known_customer_is_an_empty_page(reader, ana):
    response = reader.get(timeline_url(ana.pk))

    assert response.json() == {"next": None, "previous": None, "results": []}


def test_timeline_page_is_one_query(reader, journey, django_assert_num_queries):
    reader.get(timeline_url(journey.pk))

    # token, the page (channel and location codes joined)
    with django_assert_num_queries(2):
        response = reader.get(timeline_url(journey.pk), {"limit": 500})
    assert len(response.json()["results"]) == 7

    following = reader.get(timeline_url(journey.pk), {"limit": 3}).json()["next"]
    with django_assert_num_queries(2):
        response = reader.get(following)
    assert [r["event_id"] for r in response.json()["results"]] == ["p1", "s1", "a1"]


# --- Touchpoint batches -----------------------------------------------------------------------


def test_batch_records_events_and_resolves_customers(writer, channels, ana, paris):
    events = [
        event("e0", minutes=1),
        {
            **event("e1", kind="store_visit", channel="pos", minutes=2, location="paris"),
            "identifiers": [{"kind": "loyalty_card", "value": "CARD 1"}],
        },
        {**event("e2", minutes=3), "identifiers": None, "customer": ana.pk},
    ]

    response = writer.post(BATCH, {"events": events})

    assert response.status_code == 201, response.content
    card = Customer.objects.get(identities__value="CARD1")
    assert response.json() == {
        "received": 3,
        "created": 3,
        "duplicates": 0,
        "new_customers": 1,
        "merges": 0,
        "customers": [ana.pk, card.pk, ana.pk],
    }
    assert sorted(Touchpoint.objects.values_list("event_id", "source", "customer_id")) == [
        ("e0", source_of(writer), ana.pk),
        ("e1", source_of(writer), card.pk),
        ("e2", source_of(writer), ana.pk),
    ]


def test_batch_sent_again_records_nothing_more(writer, channels):
    events = [event(f"e{i}", minutes=i) for i in range(5)]

    first = writer.post(BATCH, {"events": events})
    again = writer.post(BATCH, {"events": events})

    assert first.json()["created"] == 5
    assert again.status_code == 201
    assert again.json() == {
        "received": 5,
        "created": 0,
        "duplicates": 5,
        "new_customers": 0,
        "merges": 0,
        "customers": [None] * 5,
    }
    assert Touchpoint.objects.count() == 5
    assert Customer.objects.get().lifetime_orders == 0
    assert CustomerChannelStat.objects.get().touchpoints == 5


def test_batch_with_one_bad_event_records_nothing(writer, channels, ana):
    events = [event(f"e{i}", minutes=i) for i in range(5)]
    events[3]["kind"] = "teleport"
    before = snapshot()

    response = writer.post(BATCH, {"events": events})

    body = assert_error(response, 400, "invalid_batch")
    assert body["message"] == "1 of 5 events are invalid; nothing was recorded."
    assert list(body["details"]["events"]) == ["3"]
    assert list(body["details"]["events"]["3"]) == ["kind"]
    assert body["details"]["events"]["3"]["kind"][0].startswith("Unknown kind 'teleport'")
    assert snapshot() == before


def test_batch_reports_every_bad_event_by_index(writer, channels):
    future = iso(timezone.now() + timedelta(hours=1))
    events = [
        event("ok"),
        {"kind": "search", "channel": "nowhere", "identifiers": []},
        {**event("t"), "occurred_at": future, "location": "moon"},
        "not an event",
        {**event("ok"), "properties": {"amount": -1}},
    ]

    body = assert_error(writer.post(BATCH, {"events": events}), 400, "invalid_batch")

    assert body["details"] == {
        "events": {
            "1": {
                "event_id": ["Required: your id of this event."],
                "channel": ["Unknown channel nowhere."],
                "identifiers": ["At least one identifier ({kind, value})."],
            },
            "2": {"occurred_at": ["Lies in the future."], "location": ["Unknown location moon."]},
            "3": {"event": ["Must be an object."]},
            "4": {
                "event_id": ["Repeats event 0 of this batch."],
                "properties": ["properties.amount must be a positive number below 10^12."],
            },
        }
    }
    assert Touchpoint.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "code", "details"),
    [
        ({}, "validation_error", {"events": ["At least one event."]}),
        ({"events": []}, "validation_error", {"events": ["At least one event."]}),
        ({"events": {"e": 1}}, "validation_error", {"events": ["At least one event."]}),
        (
            [{"event_id": "e"}],
            "validation_error",
            {"non_field_errors": ["Expected a JSON object."]},
        ),
    ],
)
def test_batch_envelope_errors(writer, channels, payload, code, details):
    body = assert_error(writer.post(BATCH, payload), 400, code)

    assert body["details"] == details


def test_batch_of_more_than_1000_events_is_refused(writer, channels):
    events = [event(f"e{i}") for i in range(1001)]

    body = assert_error(writer.post(BATCH, {"events": events}), 400, "batch_too_large")

    assert body["details"] == {"events": ["At most 1000."]}
    assert Touchpoint.objects.count() == 0


def test_batch_sent_by_staff_is_recorded_as_theirs(staff_api, staff_user, channels):
    response = staff_api.post(BATCH, {"events": [event("e1")]})

    assert response.status_code == 201, response.content
    assert Touchpoint.objects.get().source == f"user:{staff_user.pk}"


def test_batch_path_without_trailing_slash(writer, channels):
    response = writer.post(BATCH.rstrip("/"), {"events": [event("e1")]})

    assert response.status_code == 201


# --- Consents ---------------------------------------------------------------------------------


def test_consents_show_the_current_answer_and_the_history(reader, ana, channels):
    for status, minutes, channel in (
        ("opted_in", 0, "email"),
        ("opted_out", 30, "email"),
        ("opted_in", 10, "sms"),
        ("opted_in", 20, "email"),  # older than the opt-out: history only
    ):
        consent_record(
            customer=ana,
            channel=channels[channel],
            status=status,
            source="web form",
            occurred_at=at(minutes=minutes),
        )
    ids = {(c.channel.code, c.occurred_at): c.pk for c in Consent.objects.all()}

    response = reader.get(consents_url(ana.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["customer"] == ana.pk
    assert body["current"] == [
        {"channel": "email", "status": "opted_out", "occurred_at": "2026-03-02T09:30:00Z"},
        {"channel": "sms", "status": "opted_in", "occurred_at": "2026-03-02T09:10:00Z"},
    ]
    assert [(h["channel"], h["status"], h["occurred_at"]) for h in body["history"]] == [
        ("email", "opted_out", "2026-03-02T09:30:00Z"),
        ("email", "opted_in", "2026-03-02T09:20:00Z"),
        ("sms", "opted_in", "2026-03-02T09:10:00Z"),
        ("email", "opted_in", "2026-03-02T09:00:00Z"),
    ]
    consent = Consent.objects.get(pk=ids[("email", at(minutes=30))])
    assert body["history"][0] == {
        "id": consent.pk,
        "channel": "email",
        "status": "opted_out",
        "source": "web form",
        "occurred_at": "2026-03-02T09:30:00Z",
        "proof": "",
        "recorded_at": iso(consent.recorded_at),
    }


def test_record_a_consent(writer, ana, channels):
    response = writer.post(
        consents_url(ana.pk),
        {"channel": "sms", "status": "opted_in", "occurred_at": "2026-03-02T10:00:00+01:00"},
    )

    assert response.status_code == 201, response.content
    consent = Consent.objects.get()
    assert (consent.source, consent.proof, consent.recorded_by) == (source_of(writer), "", None)
    assert response.json()["current"] == [
        {"channel": "sms", "status": "opted_in", "occurred_at": "2026-03-02T09:00:00Z"}
    ]
    assert [h["id"] for h in response.json()["history"]] == [consent.pk]
    assert ConsentState.objects.get(customer=ana).status == "opted_in"


def test_record_a_consent_with_its_source_and_proof(staff_api, staff_user, ana, channels):
    response = staff_api.post(
        consents_url(ana.pk),
        {"channel": "email", "status": "opted_out", "source": "store", "proof": "signed form"},
    )

    assert response.status_code == 201, response.content
    consent = Consent.objects.get()
    assert (consent.source, consent.proof, consent.recorded_by) == (
        "store",
        "signed form",
        staff_user,
    )
    assert response.json()["history"][0]["proof"] == "signed form"


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        (
            {"channel": "web", "status": "opted_in"},
            {"channel": ["Consent is given per messaging channel (email, SMS, push, ...)."]},
        ),
        ({"channel": "nowhere", "status": "opted_in"}, {"channel": ["Unknown channel nowhere."]}),
        ({"channel": "email", "status": "maybe"}, {"status": ["One of: opted_in, opted_out."]}),
        (
            {"channel": "email", "status": "opted_in", "occurred_at": "2026-03-02T09:00:00"},
            {"occurred_at": ["Give a time zone (e.g. 2026-11-22T10:00:00+01:00 or ...Z)."]},
        ),
        (
            {"channel": "email", "status": "opted_in", "occurred_at": "2099-01-01T00:00:00Z"},
            {"occurred_at": ["Lies in the future."]},
        ),
        ({"status": "opted_in"}, {"channel": ["This field is required."]}),
    ],
)
def test_record_a_consent_refuses_bad_input(writer, ana, channels, payload, details):
    before = snapshot()

    body = assert_error(writer.post(consents_url(ana.pk), payload), 400, "validation_error")

    assert body["details"] == details
    assert snapshot() == before


def test_record_a_consent_of_an_erased_customer_is_409(writer, ana, channels):
    customer_erase(customer=ana, source="test")
    before = snapshot()

    response = writer.post(consents_url(ana.pk), {"channel": "email", "status": "opted_in"})

    assert_error(response, 409, "customer_erased")
    assert snapshot() == before


# --- Conversations ----------------------------------------------------------------------------


def test_a_message_from_new_identifiers_starts_a_conversation(writer, channels):
    response = writer.post(
        MESSAGES,
        {
            "identifiers": [{"kind": "social_handle", "value": "instagram:@Ana"}],
            "channel": "social-dm",
            "body": "Is the blue tee back?\nSize M please",
            "external_id": "ig-1",
            "sent_at": "2026-03-02T09:00:00Z",
        },
    )

    assert response.status_code == 201, response.content
    customer = Customer.objects.get(identities__value="instagram:ana")
    conversation = Conversation.objects.get()
    message = ConversationMessage.objects.get()
    assert response.json() == {
        "created": True,
        "customer": customer.pk,
        "conversation": {
            "id": conversation.pk,
            "customer": customer.pk,
            "subject": "Is the blue tee back?",
            "status": "open",
            "assignee": None,
            "started_on": "social-dm",
            "created_at": "2026-03-02T09:00:00Z",
            "last_message_at": "2026-03-02T09:00:00Z",
            "closed_at": None,
        },
        "message": {
            "id": message.pk,
            "channel": "social-dm",
            "direction": "inbound",
            "body": "Is the blue tee back?\nSize M please",
            "author": None,
            "source": source_of(writer),
            "external_id": "ig-1",
            "sent_at": "2026-03-02T09:00:00Z",
            "created_at": iso(message.created_at),
        },
    }


def test_a_repeated_message_is_200_and_adds_nothing(writer, ana, channels):
    payload = {"customer": ana.pk, "channel": "email", "body": "Hello", "external_id": "m1"}
    first = writer.post(MESSAGES, payload)
    before = snapshot()

    again = writer.post(MESSAGES, payload)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "created": False}
    assert snapshot() == before


def test_a_replayed_message_resolves_nobody_whatever_identifiers_it_names(
    writer, ana, bob, channels
):
    payload = {
        "identifiers": [{"kind": "email", "value": "ana@example.com"}],
        "channel": "email",
        "body": "Hello",
        "external_id": "m1",
    }
    first = writer.post(MESSAGES, payload)
    assert first.status_code == 201, first.content
    before = snapshot()

    # Bob's email and a new one: no customer created, attached or merged for a replay.
    again = writer.post(
        MESSAGES,
        {
            **payload,
            "identifiers": [
                {"kind": "email", "value": "bob@example.com"},
                {"kind": "email", "value": "new@example.com"},
            ],
            "body": "Hello again",
        },
    )

    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "created": False}
    assert again.json()["customer"] == ana.pk
    assert again.json()["message"]["body"] == "Hello"
    assert Customer.objects.count() == 2
    assert snapshot() == before


def test_messages_from_other_channels_join_the_open_conversation(writer, ana, channels):
    writer.post(
        MESSAGES, {"customer": ana.pk, "channel": "social-dm", "body": "Hi", "sent_at": iso(at())}
    )
    response = writer.post(
        MESSAGES,
        {
            "identifiers": [{"kind": "email", "value": "ANA@example.com"}],
            "channel": "email",
            "body": "Me again, by email",
            "sent_at": iso(at(minutes=5)),
        },
    )

    assert response.status_code == 201
    conversation = Conversation.objects.get()
    assert response.json()["conversation"]["id"] == conversation.pk
    assert list(conversation.messages.values_list("channel__code", flat=True)) == [
        "social-dm",
        "email",
    ]


def test_an_outbound_message_by_staff_names_its_author(staff_api, staff_user, ana, channels):
    response = staff_api.post(
        MESSAGES,
        {
            "customer": ana.pk,
            "channel": "sms",
            "body": "Your order is ready",
            "direction": "outbound",
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["message"]["author"], body["message"]["direction"]) == ("merch", "outbound")
    assert (body["message"]["source"], body["conversation"]["status"]) == (
        f"user:{staff_user.pk}",
        "waiting",
    )
    assert OutboxEvent.objects.filter(type="conversation.reply").count() == 1


def test_an_inbound_message_sent_by_staff_has_no_author(staff_api, staff_user, ana, channels):
    response = staff_api.post(MESSAGES, {"customer": ana.pk, "channel": "sms", "body": "Hi"})

    assert response.status_code == 201, response.content
    body = response.json()["message"]
    assert (body["author"], body["direction"], body["source"]) == (
        None,
        "inbound",
        f"user:{staff_user.pk}",
    )
    assert ConversationMessage.objects.get().author is None
    assert OutboxEvent.objects.filter(type="conversation.reply").count() == 0


def test_a_message_for_an_erased_customer_is_409(writer, ana, channels):
    customer_erase(customer=ana, source="test")
    before = snapshot()

    response = writer.post(MESSAGES, {"customer": ana.pk, "channel": "email", "body": "Hi"})

    assert_error(response, 409, "customer_erased")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("payload", "status", "code", "details"),
    [
        (
            {"channel": "email", "body": "Hi"},
            400,
            "validation_error",
            {"identifiers": ["At least one identifier."]},
        ),
        (
            {
                "identifiers": [{"kind": "email", "value": "new@example.com"}],
                "channel": "x",
                "body": "Hi",
            },
            400,
            "validation_error",
            {"channel": ["Unknown channel x."]},
        ),
        (
            {
                "identifiers": [{"kind": "email", "value": "new@example.com"}],
                "channel": "email",
                "body": " ",
            },
            400,
            "validation_error",
            {"body": ["The message is empty."]},
        ),
        (
            {
                "identifiers": [{"kind": "email", "value": "new@example.com"}],
                "channel": "email",
                "body": "Hi",
                "direction": "sideways",
            },
            400,
            "validation_error",
            {"direction": ["inbound or outbound."]},
        ),
        (
            {
                "identifiers": [{"kind": "email", "value": "new@example.com"}],
                "channel": "email",
                "body": "Hi",
                "conversation": 999,
            },
            404,
            "not_found",
            {"conversation": ["Unknown conversation 999."]},
        ),
        (
            {"customer": 999999, "channel": "email", "body": "Hi"},
            404,
            "not_found",
            {"customer": ["Unknown customer 999999."]},
        ),
    ],
)
def test_a_refused_message_creates_no_customer(writer, channels, payload, status, code, details):
    before = snapshot()

    body = assert_error(writer.post(MESSAGES, payload), status, code)

    assert body["details"] == details
    assert snapshot() == before


@pytest.fixture
def threads(ana, bob, channels, staff_user):
    first = conversation_message_add(
        customer=ana, channel=channels["email"], body="Order?", source="c", sent_at=at()
    )[0].conversation
    second = conversation_message_add(
        customer=bob, channel=channels["sms"], body="Refund?", source="c", sent_at=at(minutes=5)
    )[0].conversation
    conversation_message_add(
        customer=ana,
        channel=channels["sms"],
        body="Still waiting",
        source="c",
        sent_at=at(minutes=10),
    )
    Conversation.objects.filter(pk=second.pk).update(
        status=ConversationStatus.CLOSED, closed_at=at(minutes=6), assignee=staff_user
    )
    return first, second


def test_list_conversations_latest_first_with_filters(reader, threads, ana, bob):
    first, second = threads

    def ids(**params):
        response = reader.get(CONVERSATIONS, params)
        assert response.status_code == 200, response.content
        return [c["id"] for c in response.json()["results"]]

    assert ids() == [first.pk, second.pk]
    assert ids(status="closed") == [second.pk]
    assert ids(customer=ana.pk) == [first.pk]
    assert ids(assignee="merch") == [second.pk]
    assert ids(assignee="nobody") == []
    assert_error(reader.get(CONVERSATIONS, {"status": "lost"}), 400, "validation_error")
    row = reader.get(CONVERSATIONS, {"status": "closed"}).json()["results"][0]
    assert row == {
        "id": second.pk,
        "customer": bob.pk,
        "subject": "Refund?",
        "status": "closed",
        "assignee": "merch",
        "started_on": "sms",
        "created_at": "2026-03-02T09:05:00Z",
        "last_message_at": "2026-03-02T09:05:00Z",
        "closed_at": "2026-03-02T09:06:00Z",
    }


def test_conversation_list_query_count_does_not_grow(
    reader, threads, ana, channels, django_assert_num_queries
):
    for i in range(5):
        Conversation.objects.create(
            customer=ana,
            subject=f"s{i}",
            started_on=channels["email"],
            created_at=at(minutes=i),
            last_message_at=at(minutes=i),
        )
    reader.get(CONVERSATIONS)

    # token, count, conversations (assignee and channel joined)
    with django_assert_num_queries(3):
        response = reader.get(CONVERSATIONS, {"limit": 500})

    assert response.json()["count"] == 7


def test_get_a_conversation_with_its_messages_oldest_first(reader, threads):
    first, _ = threads

    response = reader.get(f"{CONVERSATIONS}{first.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert [(m["channel"], m["body"], m["sent_at"]) for m in body["messages"]] == [
        ("email", "Order?", "2026-03-02T09:00:00Z"),
        ("sms", "Still waiting", "2026-03-02T09:10:00Z"),
    ]
    assert body["last_message_at"] == "2026-03-02T09:10:00Z"
    assert_error(reader.get(f"{CONVERSATIONS}999/"), 404, "not_found")


def test_close_and_assign_a_conversation(writer, threads, staff_user):
    first, _ = threads

    response = writer.post(
        f"{CONVERSATIONS}{first.pk}/status/", {"status": "closed", "assignee": "merch"}
    )

    assert response.status_code == 200, response.content
    first.refresh_from_db()
    assert (first.status, first.assignee, first.closed_at is not None) == (
        "closed",
        staff_user,
        True,
    )
    assert (response.json()["status"], response.json()["assignee"]) == ("closed", "merch")
    assert response.json()["closed_at"] == iso(first.closed_at)

    reopened = writer.post(
        f"{CONVERSATIONS}{first.pk}/status/", {"status": "open", "assignee": None}
    )
    assert (
        reopened.json()["status"],
        reopened.json()["assignee"],
        reopened.json()["closed_at"],
    ) == (
        "open",
        None,
        None,
    )


def test_conversation_status_refuses_bad_input(writer, threads, django_user_model):
    first, _ = threads
    django_user_model.objects.create_user(username="shopper", password="pw")
    url = f"{CONVERSATIONS}{first.pk}/status/"
    before = snapshot()

    body = assert_error(writer.post(url, {"status": "snoozed"}), 400, "validation_error")
    assert body["details"] == {"status": ["One of: open, waiting, closed."]}
    body = assert_error(writer.post(url, {"assignee": "ghost"}), 400, "validation_error")
    assert body["details"] == {"assignee": ["Unknown user ghost."]}
    body = assert_error(writer.post(url, {"assignee": "shopper"}), 400, "validation_error")
    assert body["details"] == {"assignee": ["Not a staff user."]}
    assert_error(writer.post(f"{CONVERSATIONS}999/status/", {"status": "open"}), 404, "not_found")

    assert snapshot() == before


def test_conversation_status_query_count(writer, threads, django_assert_num_queries):
    first, _ = threads
    url = f"{CONVERSATIONS}{first.pk}/status/"
    writer.post(url, {"status": "waiting"})  # the token's first use records last_used_at

    # token, conversation, assignee, savepoint, conversation locked, update, release, the
    # conversation again (assignee and channel joined); its messages are never read
    with django_assert_num_queries(8):
        response = writer.post(url, {"status": "closed", "assignee": "merch"})

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["assignee"]) == ("closed", "merch")


# --- Segments ---------------------------------------------------------------------------------


@pytest.fixture
def segments(ana, bob, channels, paris):
    touchpoints_ingest(source="client:1", events=[event("v1")])  # ana used the web shop
    web = Segment.objects.create(name="Web shoppers", description="Used the web shop")
    SegmentRule.objects.create(
        segment=web, kind=SegmentRuleKind.CHANNEL_USED, channel=channels["web"]
    )
    local = Segment.objects.create(name="Paris or big spenders", match=SegmentMatch.ANY)
    SegmentRule.objects.create(segment=local, kind=SegmentRuleKind.HOME_STORE, location=paris)
    SegmentRule.objects.create(
        segment=local, kind=SegmentRuleKind.REVENUE_AT_LEAST, amount="100.00", negate=True
    )
    everyone = Segment.objects.create(name="Everyone")
    Segment.objects.filter(pk=web.pk).update(member_count=1, counted_at=at())
    return web, local, everyone


def test_list_segments_with_their_rules_described(reader, segments):
    web, local, everyone = segments

    response = reader.get(SEGMENTS)

    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "id": everyone.pk,
            "name": "Everyone",
            "description": "",
            "match": "all",
            "rules": [],
            "member_count": None,
            "counted_at": None,
        },
        {
            "id": local.pk,
            "name": "Paris or big spenders",
            "description": "",
            "match": "any",
            "rules": ["home store paris", "not lifetime revenue ≥ 100.00"],
            "member_count": None,
            "counted_at": None,
        },
        {
            "id": web.pk,
            "name": "Web shoppers",
            "description": "Used the web shop",
            "match": "all",
            "rules": ["used web"],
            "member_count": 1,
            "counted_at": "2026-03-02T09:00:00Z",
        },
    ]


def test_segment_members_now_by_id(reader, segments, ana, bob, make_customer):
    web, local, everyone = segments
    erased = make_customer(("email", "gone@example.com"))
    customer_erase(customer=erased, source="test")

    def ids(segment):
        response = reader.get(f"{SEGMENTS}{segment.pk}/members/")
        assert response.status_code == 200, response.content
        return [c["id"] for c in response.json()["results"]]

    assert ids(web) == [ana.pk]
    assert ids(local) == [ana.pk, bob.pk]
    assert ids(everyone) == [ana.pk, bob.pk]
    member = reader.get(f"{SEGMENTS}{web.pk}/members/").json()["results"][0]
    assert member == customer_json(ana)
    assert_error(reader.get(f"{SEGMENTS}999/members/"), 404, "not_found")


def test_segment_members_query_count_does_not_grow(
    reader, segments, make_customer, django_assert_num_queries
):
    _, _, everyone = segments
    for i in range(6):
        make_customer(("email", f"c{i}@example.com"))
    reader.get(f"{SEGMENTS}{everyone.pk}/members/")

    # token, segment, rules, count, customers, identities
    with django_assert_num_queries(6):
        response = reader.get(f"{SEGMENTS}{everyone.pk}/members/", {"limit": 500})

    assert response.json()["count"] == 8


def test_segment_list_query_count(reader, segments, django_assert_num_queries):
    reader.get(SEGMENTS)

    # token, count, segments, rules (channel and location joined)
    with django_assert_num_queries(4):
        assert len(reader.get(SEGMENTS).json()["results"]) == 3


# --- Privacy ----------------------------------------------------------------------------------


def test_export_a_customers_data(writer, ana, channels):
    consent_record(customer=ana, channel=channels["email"], status="opted_in", source="web")

    response = writer.get(export_url(ana.pk), {"reason": "asked by email"})

    assert response.status_code == 200
    body = response.json()
    assert body["customer"]["id"] == ana.pk
    assert sorted(row["value"] for row in body["customers.identity"]) == [
        "+33612345678",
        "ana@example.com",
    ]
    assert [row["status"] for row in body["customers.consent"]] == ["opted_in"]
    request = PrivacyRequest.objects.get()
    assert (request.kind, request.customer_id_ref, request.source, request.reason) == (
        "export",
        ana.pk,
        source_of(writer),
        "asked by email",
    )
    assert request.summary == {
        "customers.identity": 2,
        "customers.touchpoint": 1,
        "customers.consent": 1,
        "customers.consentstate": 1,
        "customers.customerchannelstat": 1,
        "customers.conversation": 0,
        "customers.customermerge__survivor": 0,
        "orders.cart": 0,
        "orders.order": 0,
        "campaigns.backinstocksubscription": 0,
        "campaigns.enrolment": 0,
        "campaigns.message": 0,
    }


def test_export_by_staff_records_who(staff_api, staff_user, ana):
    assert staff_api.get(export_url(ana.pk)).status_code == 200

    assert PrivacyRequest.objects.get().actor == staff_user


def test_export_of_a_merged_or_unknown_customer_is_404(writer, ana, bob):
    customer_merge(customers=[ana, bob], reason="same")

    body = assert_error(writer.get(export_url(bob.pk)), 404, "customer_merged")
    assert body["details"] == {"survivor": ana.pk}
    assert_error(writer.get(export_url(999)), 404, "not_found")
    assert PrivacyRequest.objects.count() == 0


def test_erase_a_customer(writer, ana, channels):
    touchpoints_ingest(source="client:1", events=[event("v1")])
    consent_record(customer=ana, channel=channels["email"], status="opted_in", source="web")

    response = writer.post(erase_url(ana.pk), {"reason": "asked"})

    assert response.status_code == 200, response.content
    request = PrivacyRequest.objects.get(kind="erase")
    ana.refresh_from_db()
    assert response.json() == {
        "customer": ana.pk,
        "erased_at": iso(ana.erased_at),
        "removed": request.summary,
    }
    assert (request.source, request.reason) == (source_of(writer), "asked")
    assert request.summary == {
        "customers.Identity": 2,
        "customers.Touchpoint": 2,
        "customers.CustomerChannelStat": 2,
        "customers.Consent": 1,
        "customers.ConsentState": 1,
    }
    assert (Identity.objects.count(), Touchpoint.objects.count(), Consent.objects.count()) == (
        0,
        0,
        0,
    )
    detail = writer.get(detail_url(ana.pk)).json()
    assert (detail["erased"], detail["first_name"], detail["identities"]) == (True, "Erased", [])

    again = writer.post(erase_url(ana.pk), {"reason": "again"})
    assert_error(again, 409, "customer_erased")


def test_erase_needs_a_reason(writer, ana):
    before = snapshot()

    body = assert_error(writer.post(erase_url(ana.pk), {}), 400, "validation_error")

    assert body["details"] == {"reason": ["This field is required."]}
    assert snapshot() == before


# --- Merge ------------------------------------------------------------------------------------


def test_merge_customers_into_the_oldest(writer, ana, bob, channels):
    response = writer.post(MERGE, {"customers": [bob.pk, ana.pk], "reason": "Same person"})

    assert response.status_code == 200, response.content
    ana.refresh_from_db()
    assert response.json() == {"survivor": customer_detail_json(ana), "merged": [bob.pk]}
    assert sorted(i["value"] for i in response.json()["survivor"]["identities"]) == [
        "+33612345678",
        "ana@example.com",
        "bob@example.com",
    ]
    merge = CustomerMerge.objects.get()
    assert (merge.merged_customer_id, merge.reason, merge.source) == (
        bob.pk,
        "Same person",
        source_of(writer),
    )
    body = assert_error(writer.get(detail_url(bob.pk)), 404, "customer_merged")
    assert body["details"] == {"survivor": ana.pk}


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        (
            {"customers": [1], "reason": "x"},
            {"customers": ["Ensure this field has at least 2 elements."]},
        ),
        (
            {"customers": ["a", "b"], "reason": "x"},
            {
                "customers": {
                    "0": ["A valid integer is required."],
                    "1": ["A valid integer is required."],
                }
            },
        ),
        ({"customers": [1, 2]}, {"reason": ["This field is required."]}),
        (
            {"customers": list(range(1, MAX_MERGE + 2)), "reason": "x"},
            {"customers": [f"Ensure this field has no more than {MAX_MERGE} elements."]},
        ),
    ],
)
def test_merge_refuses_bad_input(writer, ana, bob, payload, details):
    before = snapshot()

    body = assert_error(writer.post(MERGE, payload), 400, "validation_error")

    assert body["details"] == details
    assert snapshot() == before


def test_merge_of_an_unknown_or_same_customer_changes_nothing(writer, ana, bob):
    before = snapshot()

    body = assert_error(
        writer.post(MERGE, {"customers": [ana.pk, 999], "reason": "x"}), 404, "not_found"
    )
    assert body["details"] == {"customers": ["Unknown customer 999."]}
    body = assert_error(
        writer.post(MERGE, {"customers": [ana.pk, ana.pk], "reason": "x"}), 400, "validation_error"
    )
    assert body["details"] == {"customers": ["At least two different customers."]}

    assert snapshot() == before


# --- The schema -------------------------------------------------------------------------------


CUSTOMER_OPERATIONS = [
    ("/api/v1/customers/", "get"),
    ("/api/v1/customers/", "post"),
    ("/api/v1/customers/conversations/", "get"),
    ("/api/v1/customers/conversations/messages/", "post"),
    ("/api/v1/customers/conversations/{id}/", "get"),
    ("/api/v1/customers/conversations/{id}/status/", "post"),
    ("/api/v1/customers/merge/", "post"),
    ("/api/v1/customers/resolve/", "post"),
    ("/api/v1/customers/segments/", "get"),
    ("/api/v1/customers/segments/{id}/members/", "get"),
    ("/api/v1/customers/touchpoints/batch/", "post"),
    ("/api/v1/customers/{id}/", "get"),
    ("/api/v1/customers/{id}/", "patch"),
    ("/api/v1/customers/{id}/consents/", "get"),
    ("/api/v1/customers/{id}/consents/", "post"),
    ("/api/v1/customers/{id}/erase/", "post"),
    ("/api/v1/customers/{id}/export/", "get"),
    ("/api/v1/customers/{id}/timeline/", "get"),
]


def test_schema_documents_every_customer_endpoint(schema):
    found = sorted(
        (path, method)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/customers/")
        for method in item
        if method in ("get", "post", "patch", "put", "delete")
    )
    assert found == CUSTOMER_OPERATIONS

    timeline = schema["paths"]["/api/v1/customers/{id}/timeline/"]["get"]
    ref = timeline["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert sorted(page["properties"]) == ["next", "previous", "results"]
    assert [p["name"] for p in timeline["parameters"]] == [
        "channel",
        "cursor",
        "id",
        "kind",
        "limit",
        "since",
        "until",
    ]
    batch = schema["paths"]["/api/v1/customers/touchpoints/batch/"]["post"]
    ref = batch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    events = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["events"]
    item = schema["components"]["schemas"][events["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"event_id", "kind", "channel", "occurred_at", "identifiers"} <= set(item["properties"])

    messages = schema["paths"]["/api/v1/customers/conversations/messages/"]["post"]
    responses = messages["responses"]
    assert sorted(responses) == ["201", "400", "401", "403", "404", "409", "422"]
    assert "**200**" in responses["201"]["description"]
    assert "`created: false`" in responses["201"]["description"]
    assert "`external_id_reused`" in responses["409"]["description"]
    assert "`customer_erased`" in responses["409"]["description"]
    for path in ("/api/v1/customers/resolve/", "/api/v1/customers/conversations/messages/"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        customer = schema["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
        assert customer["properties"]["customer"]["type"] == "integer", path
        assert customer["properties"]["customer"]["minimum"] == 1, path


def test_responses_match_the_schema(schema, reader, writer, journey, bob, channels):
    consent_record(customer=journey, channel=channels["email"], status="opted_in", source="web")
    thread = conversation_message_add(
        customer=journey, channel=channels["email"], body="Hi", source="c"
    )[0].conversation
    segment = Segment.objects.create(name="Everyone")
    reads = [
        CUSTOMERS,
        detail_url(journey.pk),
        detail_url(999),
        timeline_url(journey.pk),
        consents_url(journey.pk),
        CONVERSATIONS,
        f"{CONVERSATIONS}{thread.pk}/",
        SEGMENTS,
        f"{SEGMENTS}{segment.pk}/members/",
    ]
    for path in reads:
        response = reader.get(path)
        assert_matches_schema(schema, "get", path, response)
    assert_matches_schema(schema, "get", export_url(bob.pk), writer.get(export_url(bob.pk)))

    writes = [
        ("post", CUSTOMERS, {"identifiers": [{"kind": "email", "value": "x@example.com"}]}, 201),
        ("post", CUSTOMERS, {"identifiers": []}, 400),
        ("patch", detail_url(bob.pk), {"city": "Lyon"}, 200),
        ("post", RESOLVE, {"identifiers": [{"kind": "email", "value": "y@example.com"}]}, 200),
        ("post", BATCH, {"events": [event("z1")]}, 201),
        ("post", BATCH, {"events": [{"kind": "x"}]}, 400),
        ("post", consents_url(bob.pk), {"channel": "sms", "status": "opted_in"}, 201),
        ("post", MESSAGES, {"customer": bob.pk, "channel": "sms", "body": "Hi"}, 201),
        ("post", f"{CONVERSATIONS}{thread.pk}/status/", {"status": "closed"}, 200),
        ("post", MERGE, {"customers": [journey.pk, bob.pk], "reason": "same"}, 200),
        ("post", erase_url(journey.pk), {"reason": "asked"}, 200),
        ("post", erase_url(journey.pk), {"reason": "asked"}, 409),
    ]
    for method, path, payload, status in writes:
        response = getattr(writer, method)(path, payload)
        assert response.status_code == status, (path, response.content)
        assert_matches_schema(schema, method, path, response)


# --- Wiring -----------------------------------------------------------------------------------


def test_the_views_use_the_shared_helpers():
    from customers import selectors
    from customers.api import permissions, timeline, views
    from omni.api import errors as api_errors
    from omni.api import permissions as api_permissions

    for name in ("READ_ERRORS", "LIST_ERRORS", "WRITE_ERRORS", "NOT_FOUND", "IDEMPOTENCY_ERRORS"):
        assert getattr(views, name) is getattr(api_errors, name), name
    assert views.request_source is api_permissions.request_source
    assert views.request_actor is api_permissions.request_actor
    assert timeline.customer_not_found is selectors.customer_not_found
    for gone in ("caller_source", "caller_actor", "customer_not_found", "customer_or_404"):
        assert not hasattr(views, gone), gone
    assert views.CustomerPrivacyViewSet.permission_classes == [permissions.IsStaffOrWriteClient]
    assert issubclass(permissions.IsStaffOrWriteClient, api_permissions.IsStaffOrApiClient)


def test_personal_data_is_refused_to_a_non_staff_user(ana, django_user_model):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(django_user_model.objects.create_user(username="shopper", password="pw"))

    assert_error(api.get(export_url(ana.pk)), 403, "permission_denied")
    assert_error(api.post(erase_url(ana.pk), {"reason": "x"}), 403, "permission_denied")
    assert PrivacyRequest.objects.count() == 0
    assert Customer.objects.get(pk=ana.pk).erased_at is None
