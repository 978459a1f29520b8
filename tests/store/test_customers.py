"""Customer lookup at the counter and the customer page: profile, consent, timeline,
conversation, orders and carts."""

import secrets
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import (
    Consent,
    ConsentState,
    Conversation,
    ConversationMessage,
    ConversationStatus,
    MessageDirection,
    Touchpoint,
)
from customers.services import consent_record, customer_erase, customer_merge
from orders.models import Cart, CartLine, CartStatus, FulfilmentMethod, OrderStatus
from tests.store.conftest import T0, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(make_customer, stores):
    return make_customer(
        ("email", "Ana.Dupont@example.com"),
        ("phone", "+33 6 12 34 56 78"),
        ("loyalty_card", "LC-0042-7788"),
        first_name="Ana",
        last_name="Dupont",
        city="Paris",
        home_store=stores["a"],
    )


def _state():
    return (
        Consent.objects.count(),
        list(ConsentState.objects.values_list("customer_id", "channel_id", "status")),
        ConversationMessage.objects.count(),
        Conversation.objects.count(),
        Touchpoint.objects.count(),
    )


# --- Search ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["ana.dupont@EXAMPLE.com", "06 12 34 56 78", "+33612345678", "lc 0042 7788", "ana dupont"],
)
def test_search_by_any_identifier_or_name(client_a, stores, ana, make_customer, text):
    make_customer(("email", "bob@example.com"), first_name="Bob", last_name="Martin")
    response = client_a.get(url("customers", stores["a"]), {"q": text})
    assert response.status_code == 200
    assert [c.pk for c in response.context["customers"]] == [ana.pk]
    html = response.content.decode()
    assert f'href="{url("customer", stores["a"], ana.pk)}"' in html
    assert "ana.dupont@example.com" in html
    assert "+33612345678" in html


def test_search_from_any_store_finds_shared_customers(client_b, stores, ana):
    response = client_b.get(url("customers", stores["b"]), {"q": "ana.dupont@example.com"})
    assert [c.pk for c in response.context["customers"]] == [ana.pk]


def test_search_nothing_found(client_a, stores, ana):
    response = client_a.get(url("customers", stores["a"]), {"q": "zoe@example.com"})
    assert response.context["customers"] == []
    assert b"No customer matches" in response.content


def test_search_by_name_is_bounded(client_a, stores, make_customer, django_assert_max_num_queries):
    for n in range(25):
        make_customer(("email", f"m{n}@example.com"), first_name="Marie", last_name=f"Curie{n:02d}")
    with django_assert_max_num_queries(9):
        response = client_a.get(url("customers", stores["a"]), {"q": "marie"})
    customers = response.context["customers"]
    assert len(customers) == 20
    assert customers[0].last_name == "Curie00"
    assert response.context["more"] is True
    assert b"The first 20 matches" in response.content


# --- The customer page ----------------------------------------------------------------------


@pytest.fixture
def history(ana, channels, stores, make_order, variant):
    """60 touchpoints, a conversation, orders on two channels, an open and a converted cart."""
    Touchpoint.objects.bulk_create(
        Touchpoint(
            customer=ana,
            channel=channels["web"],
            kind="product_view",
            occurred_at=T0 + timedelta(hours=n),
            source="test",
            event_id=f"e{n}",
            received_at=T0,
        )
        for n in range(60)
    )
    conversation = Conversation.objects.create(
        customer=ana,
        subject="Where is my parcel?",
        started_on=channels["email"],
        created_at=T0,
        last_message_at=T0,
    )
    ConversationMessage.objects.create(
        conversation=conversation,
        channel=channels["email"],
        direction=MessageDirection.INBOUND,
        body="Where is my parcel?",
        source="test",
        sent_at=T0,
        created_at=T0,
    )
    web_order = make_order(None, OrderStatus.SHIPPED, customer=ana, fulfilment_method="ship")
    store_order = make_order(
        stores["b"],
        OrderStatus.COMPLETED,
        customer=ana,
        fulfilment_method=FulfilmentMethod.IN_STORE,
    )
    store_order.channel = channels["store"]
    store_order.save()
    carts = []
    for status in (CartStatus.OPEN, CartStatus.CONVERTED):
        cart = Cart.objects.create(
            token=secrets.token_hex(16),
            channel=channels["web"],
            customer=ana,
            status=status,
            currency="EUR",
            created_at=T0,
            last_activity_at=T0,
            closed_at=None if status == CartStatus.OPEN else T0,
        )
        CartLine.objects.create(
            cart=cart,
            variant=variant,
            quantity=2,
            unit_price=Decimal("39.00"),
            added_at=T0,
            updated_at=T0,
        )
        carts.append(cart)
    return {"orders": [web_order, store_order], "carts": carts, "conversation": conversation}


def test_customer_page(client_a, stores, ana, history, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):
        response = client_a.get(url("customer", stores["a"], ana.pk))
    assert response.status_code == 200
    context = response.context
    assert context["customer"] == ana
    assert [i.value for i in context["identities"]] == [
        "ana.dupont@example.com",
        "LC00427788",
        "+33612345678",
    ]
    # Consent: one row per active messaging channel, none asked yet.
    rows = {row["channel"].code: row["state"] for row in context["consent_rows"]}
    assert set(rows) == {"ads-audience", "email", "push", "sms", "social-dm"}
    assert set(rows.values()) == {None}
    # The timeline: the newest 50, then a link to the older ones.
    timeline = context["timeline"]
    assert len(timeline) == 50
    assert timeline[0].event_id == "e59" and timeline[-1].event_id == "e10"
    assert context["next_cursor"] is not None
    assert b'data-testid="timeline-more"' in response.content
    # Orders from every channel, open carts only, the conversation.
    assert {o.number for o in context["orders"]} == {o.number for o in history["orders"]}
    assert [c.pk for c in context["carts"]] == [history["carts"][0].pk]
    assert [c.pk for c in context["conversations"]] == [history["conversation"].pk]
    html = response.content.decode()
    assert "Where is my parcel?" in html
    assert "2 × Linen Shirt" in html
    assert "Stores (POS)" in html and "Web shop" in html


def test_older_timeline_events(client_a, stores, ana, history):
    page = client_a.get(url("customer", stores["a"], ana.pk))
    cursor = page.context["next_cursor"]
    response = client_a.get(url("customer_timeline", stores["a"], ana.pk), {"cursor": cursor})
    assert response.status_code == 200
    assert [e.event_id for e in response.context["timeline"]] == [f"e{n}" for n in range(9, -1, -1)]
    assert response.context["next_cursor"] is None


def test_broken_timeline_cursor_shows_the_newest(client_a, stores, ana, history):
    response = client_a.get(
        url("customer_timeline", stores["a"], ana.pk), {"cursor": "yesterday~x"}
    )
    assert response.status_code == 200
    assert response.context["timeline"][0].event_id == "e59"
    assert [str(m) for m in response.context["messages"]] == [
        "That timeline link is broken; showing the newest events."
    ]


def test_unknown_customer(client_a, stores):
    response = client_a.get(url("customer", stores["a"], 999999))
    assert response.status_code == 404
    assert b"No customer 999999." in response.content


def test_merged_customer_leads_to_the_survivor(client_a, stores, ana, make_customer):
    twin = make_customer(("email", "ana.d@example.org"), first_name="Ana")
    survivor, _ = customer_merge(customers=[ana, twin])
    assert survivor == ana
    response = client_a.get(url("customer", stores["a"], twin.pk))
    assert response.status_code == 302
    assert response["Location"] == url("customer", stores["a"], ana.pk)


# --- Consent at the counter -----------------------------------------------------------------


def test_record_an_opt_in_at_the_counter(client_a, stores, ana, staff_a, channels):
    response = client_a.post(
        url("customer_consent", stores["a"], ana.pk),
        {"channel": "sms", "status": "opted_in"},
        follow=True,
    )
    assert response.redirect_chain == [(url("customer", stores["a"], ana.pk) + "#consent", 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "Recorded Ana Dupont's opt-in to SMS."
    ]
    consent = Consent.objects.get()
    assert (consent.customer, consent.channel, consent.status) == (ana, channels["sms"], "opted_in")
    assert consent.source == "store:paris-01"
    assert consent.proof == "At the counter, Anna (Paris Rivoli)"
    assert consent.recorded_by == staff_a
    state = ConsentState.objects.get()
    assert (state.channel, state.status) == (channels["sms"], "opted_in")
    rows = {row["channel"].code: row["state"] for row in response.context["consent_rows"]}
    assert rows["sms"].status == "opted_in"
    # And later she opts out.
    client_a.post(
        url("customer_consent", stores["a"], ana.pk), {"channel": "sms", "status": "opted_out"}
    )
    assert ConsentState.objects.get().status == "opted_out"
    assert Consent.objects.count() == 2


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"channel": "web", "status": "opted_in"},
            "The consent was not recorded: Consent is given per messaging channel",
        ),
        ({"channel": "nope", "status": "opted_in"}, "Consent is given per messaging channel"),
        ({"channel": "sms", "status": "maybe"}, "One of: opted_in, opted_out."),
        ({"channel": "sms"}, "Nothing was recorded. status: This field is required."),
    ],
)
def test_bad_consent_is_refused(client_a, stores, ana, channels, data, error):
    before = _state()
    response = client_a.post(url("customer_consent", stores["a"], ana.pk), data)
    assert response.status_code == 400
    assert error in response.context["consent_error"]
    assert error in response.content.decode()
    assert _state() == before


def test_consent_of_an_erased_customer_is_refused(client_a, stores, ana, channels):
    customer_erase(customer=ana, source="test")
    before = _state()
    response = client_a.post(
        url("customer_consent", stores["a"], ana.pk), {"channel": "sms", "status": "opted_in"}
    )
    assert response.status_code == 400
    assert response.context["consent_error"] == "This customer was erased."
    assert _state() == before


def test_get_on_a_write_url_is_not_allowed(client_a, stores, ana):
    assert client_a.get(url("customer_consent", stores["a"], ana.pk)).status_code == 405
    assert client_a.get(url("customer_note", stores["a"], ana.pk)).status_code == 405


# --- Notes from the counter -----------------------------------------------------------------


def test_add_a_note_to_her_conversation(client_a, stores, ana, history, staff_a, channels):
    response = client_a.post(
        url("customer_note", stores["a"], ana.pk),
        {"channel": "store", "body": "Came in about the parcel; wants it delivered here."},
        follow=True,
    )
    assert response.redirect_chain == [
        (url("customer", stores["a"], ana.pk) + "#conversation", 302)
    ]
    assert [str(m) for m in response.context["messages"]] == ["Note added to the conversation."]
    message = ConversationMessage.objects.get(author=staff_a)
    assert message.conversation == history["conversation"]  # joins her open conversation
    assert message.channel == channels["store"]
    assert message.direction == MessageDirection.INBOUND
    assert message.source == "store:paris-01"
    assert message.body == "Came in about the parcel; wants it delivered here."
    assert history["conversation"].messages.count() == 2
    conversation = Conversation.objects.get()
    assert conversation.status == ConversationStatus.OPEN
    assert b"recorded by anna" in response.content


@pytest.mark.parametrize(
    ("data", "field", "error"),
    [
        ({"channel": "store", "body": "   "}, "body", "The message is empty."),
        ({"channel": "web", "body": "Hello"}, "channel", "Choose a store channel."),
        ({"body": "Hello"}, "channel", "This field is required."),
    ],
)
def test_bad_note_is_refused(client_a, stores, ana, channels, data, field, error):
    before = _state()
    response = client_a.post(url("customer_note", stores["a"], ana.pk), data)
    assert response.status_code == 400
    assert response.context["note_form"].errors[field] == [error]
    assert error in response.content.decode()
    assert _state() == before


def test_consent_and_notes_from_another_store_page(client_b, stores, ana, channels):
    """Customers are shared: staff of B record consent from B's pages, with B as source."""
    client_b.post(
        url("customer_consent", stores["b"], ana.pk), {"channel": "email", "status": "opted_in"}
    )
    assert Consent.objects.get().source == "store:lyon-01"


def test_consent_recorded_elsewhere_shows(client_a, stores, ana, channels):
    consent_record(
        customer=ana,
        channel=channels["email"],
        status="opted_out",
        source="web form",
        occurred_at=timezone.now() - timedelta(days=1),
    )
    response = client_a.get(url("customer", stores["a"], ana.pk))
    rows = {row["channel"].code: row["state"] for row in response.context["consent_rows"]}
    assert rows["email"].status == "opted_out"
    assert b"web form" in response.content
