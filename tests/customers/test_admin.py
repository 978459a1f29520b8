"""The customers admin: the customer list (bounded, searched by any identifier, filtered), the
add and change pages saved through the services, the timeline and consents, merges, exports
and erasures, conversations and replies, segments with their CSV, and the identifier settings.
Every write goes through a customers service; a refused one shows why and changes nothing."""

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from customers.models import (
    BlockedIdentifier,
    Consent,
    ConsentState,
    Customer,
    CustomerMerge,
    Identity,
    IdentityKindRule,
    PrivacyRequest,
    Segment,
    SegmentRule,
    Touchpoint,
)
from customers.services import (
    MAX_MERGE,
    consent_record,
    conversation_message_add,
    customer_create,
    customer_erase,
    touchpoints_ingest,
)
from omni.models import OutboxEvent
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db


# --- Helpers ----------------------------------------------------------------------------------


def url(model, view="changelist", *args):
    return reverse(f"admin:customers_{model}_{view}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def result_pks(response):
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def action(client, model, name, ids, **extra):
    data = {"action": name, ACTION_CHECKBOX_NAME: [str(pk) for pk in ids], "index": "0"}
    data.update(extra)
    return client.post(url(model), data)


def ago(**kwargs) -> str:
    return (timezone.now() - timedelta(**kwargs)).isoformat()


def inline(prefix, rows, extra=()):
    """Management form and ids of an inline's existing rows, then the extra (new) rows."""
    rows = list(rows)
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows) + len(extra)),
        f"{prefix}-INITIAL_FORMS": str(len(rows)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        data[f"{prefix}-{index}-id"] = str(row.pk)
    for offset, fields in enumerate(extra):
        for key, value in fields.items():
            data[f"{prefix}-{len(rows) + offset}-{key}"] = value
    return data


PROFILE = ("first_name", "last_name", "age_range", "gender", "city", "occupation", "language")


def change_data(customer, *, new_identities=(), delete_identities=(), **fields):
    """POST data of the customer change page as it is, with ``fields`` changed."""
    customer.refresh_from_db()
    data = {name: getattr(customer, name) for name in PROFILE}
    data["time_zone"] = customer.time_zone
    data["home_store"] = customer.home_store_id or ""
    data["preferred_channel"] = customer.preferred_channel_id or ""
    identities = list(customer.identities.order_by("kind", "value"))
    data.update(inline("identities", identities, new_identities))
    for index, identity in enumerate(identities):
        if identity in delete_identities:
            data[f"identities-{index}-DELETE"] = "on"
    data.update(inline("consents", customer.consents.order_by("-occurred_at", "-id")))
    data.update(inline("conversations", customer.conversations.order_by("-last_message_at")))
    data.update({key: "" if value is None else value for key, value in fields.items()})
    data["_save"] = "Save"
    return data


def changed_successfully(customer) -> str:
    """Django's own message after a change page saved."""
    return (
        f'The customer “<a href="{url("customer", "change", customer.pk)}">{customer}</a>” '
        "was changed successfully."
    )


def identities_of(customer):
    return set(Identity.objects.filter(customer=customer).values_list("kind", "value"))


@pytest.fixture
def stores(db):
    return {
        "north": LocationFactory(code="north", name="North store"),
        "south": LocationFactory(code="south", name="South store"),
        "wh": LocationFactory(code="wh", name="Warehouse", kind="warehouse"),
    }


@pytest.fixture
def make_customer(ident):
    def make(*, email=None, phone=None, card=None, **profile):
        identifiers = [
            ident(kind, value)
            for kind, value in (("email", email), ("phone", phone), ("loyalty_card", card))
            if value
        ]
        return customer_create(data=profile, identifiers=identifiers, source="test")

    return make


def ingest(email, *specs, prefix="e"):
    """Touchpoints of the customer known by ``email``: ``(kind, channel, hours ago, props)``."""
    events = [
        {
            "event_id": f"{prefix}-{email}-{index}",
            "kind": kind,
            "channel": channel,
            "occurred_at": ago(hours=hours),
            "identifiers": [{"kind": "email", "value": email}],
            "properties": properties,
        }
        for index, (kind, channel, hours, properties) in enumerate(specs)
    ]
    return touchpoints_ingest(source="client:test", events=events)


@pytest.fixture
def people(channels, stores, make_customer):
    """Ana (web and store, opted in by email, north store), Bruno (app), Chloé (no activity)."""
    ana = make_customer(
        email="Ana.Silva@Example.com",
        phone="06 12 34 56 78",
        card="1234 5678",
        first_name="Ana",
        last_name="Silva",
        age_range="25_34",
        gender="female",
        home_store=stores["north"],
    )
    bruno = make_customer(
        email="bruno@example.com",
        first_name="Bruno",
        last_name="Costa",
        age_range="35_44",
        gender="male",
        home_store=stores["south"],
    )
    chloe = make_customer(phone="+33 7 81 23 45 67", first_name="Chloé", last_name="Martin")
    ingest(
        "ana.silva@example.com",
        ("product_view", "web", 30, {"sku": "TEE-M"}),
        ("purchase", "pos", 20, {"amount": "49.90", "order": "S-1"}),
    )
    ingest("bruno@example.com", ("app_open", "app", 10, {}))
    consent_record(customer=ana, channel=channels["email"], status="opted_in", source="web form")
    consent_record(customer=bruno, channel=channels["email"], status="opted_out", source="web")
    return {"ana": ana, "bruno": bruno, "chloe": chloe}


# --- The customer list ------------------------------------------------------------------------


def test_changelist_shows_the_columns(admin_client, people):
    response = admin_client.get(url("customer"))

    assert result_pks(response) == sorted((c.pk for c in people.values()), reverse=True)
    content = response.content.decode()
    assert "ana.silva@example.com" in content
    assert "+33612345678" in content
    assert "north" in content.lower()
    assert "49.90" in content
    row = list(response.context["cl"].result_list)[-1]
    assert (row.main_email, row.main_phone) == ("ana.silva@example.com", "+33612345678")


def test_changelist_query_count_is_constant(
    admin_client, people, make_customer, django_assert_max_num_queries
):
    def count_queries():
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url("customer") + "?q=example.com&channel_used=web")
        assert response.status_code == 200
        with CaptureQueriesContext(connection) as listing:
            assert admin_client.get(url("customer")).status_code == 200
        return len(queries), len(listing)

    few = count_queries()
    for n in range(20):
        make_customer(email=f"extra{n}@example.com", first_name=f"Extra{n}")
    many = count_queries()

    assert few == many
    # Session, user, the three filters' choices, the bounded count (two) and the page.
    with django_assert_max_num_queries(8):
        admin_client.get(url("customer"))


@pytest.mark.parametrize(
    "term",
    [
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "0612345678",
        "ANA.SILVA@EXAMPLE.COM",
        "1234 5678",
        "1234-5678",
        "silva",
        "ana silva",
    ],
)
def test_search_finds_the_customer_by_any_identifier_or_name(admin_client, people, term):
    response = admin_client.get(url("customer"), {"q": term})

    assert result_pks(response) == [people["ana"].pk]


def test_search_by_id_and_no_match(admin_client, people):
    by_id = admin_client.get(url("customer"), {"q": f"#{people['bruno'].pk}"})
    nothing = admin_client.get(url("customer"), {"q": "nobody@example.com"})

    assert result_pks(by_id) == [people["bruno"].pk]
    assert result_pks(nothing) == []


def test_search_by_an_identifier_returns_only_its_holders_without_a_name_scan(
    admin_client, people, make_customer
):
    # "martin" is Dora's loyalty card (stored MARTIN) and Chloé Martin's last name.
    dora = make_customer(card="martin", first_name="Dora", last_name="Web")

    with CaptureQueriesContext(connection) as queries:
        by_card = admin_client.get(url("customer"), {"q": "martin"})
    by_name = admin_client.get(url("customer"), {"q": "chloé"})

    assert result_pks(by_card) == [dora.pk]
    # The identifier matched: the names were not searched (no LIKE anywhere on the page).
    assert [q["sql"] for q in queries.captured_queries if " LIKE " in q["sql"].upper()] == []
    # Nothing held "chloé" as an identifier: the names were searched.
    assert result_pks(by_name) == [people["chloe"].pk]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("channel_used=web", ["ana"]),
        ("channel_used=app", ["bruno"]),
        ("opted_in_on=email", ["ana"]),
        ("home_store__id__exact={south}", ["bruno"]),
        ("age_range__exact=25_34", ["ana"]),
        ("gender__exact=male", ["bruno"]),
        ("erased=no", ["chloe", "bruno", "ana"]),
        ("erased=yes", []),
    ],
)
def test_filters(admin_client, people, stores, query, expected):
    response = admin_client.get(url("customer") + "?" + query.format(south=stores["south"].pk))

    assert result_pks(response) == [people[name].pk for name in expected]


# --- Adding and changing a customer -----------------------------------------------------------


def test_add_page_creates_the_customer_with_identities_through_the_service(
    admin_client, channels, stores
):
    page = admin_client.get(url("customer", "add"))
    response = admin_client.post(
        url("customer", "add"),
        {
            "email": " Zoe@Example.COM ",
            "phone": "06 98 76 54 32",
            "loyalty_card": "",
            "first_name": "Zoé",
            "last_name": "Durand",
            "age_range": "18_24",
            "gender": "",
            "city": "Lyon",
            "occupation": "",
            "language": "fr",
            "time_zone": "",
            "home_store": stores["north"].pk,
            "preferred_channel": channels["sms"].pk,
            "_save": "Save",
        },
    )

    assert page.status_code == 200
    assert response.status_code == 302
    customer = Customer.objects.get()
    assert identities_of(customer) == {("email", "zoe@example.com"), ("phone", "+33698765432")}
    assert set(Identity.objects.values_list("source", flat=True)) == {"admin"}
    assert (customer.first_name, customer.city, customer.home_store) == (
        "Zoé",
        "Lyon",
        stores["north"],
    )
    assert customer.preferred_channel == channels["sms"]
    assert customer.preferred_channel_source == "customer"
    assert set(customer.field_times) == {
        "first_name",
        "last_name",
        "age_range",
        "city",
        "language",
        "home_store",
        "preferred_channel",
    }
    assert (
        "success",
        f"Customer #{customer.pk} created with zoe@example.com, +33698765432.",
    ) in messages_of(response)


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"email": "not-an-email"}, {"email": ["'not-an-email' is not an email address."]}),
        ({"phone": "12"}, {"phone": ["'12' is not a valid phone number."]}),
        # Taken: customer_create's refusal, shown on the form as typed (the form no longer
        # checks owners itself).
        (
            {"email": "ANA.silva@example.com", "phone": "0698765432"},
            {
                "__all__": [
                    "Already known: email ana.silva@example.com. Open that customer instead."
                ]
            },
        ),
        (
            {},
            {
                "__all__": [
                    "Give at least one identifier: an email, a phone number or a loyalty card."
                ]
            },
        ),
    ],
)
def test_add_page_refuses_bad_identifiers_and_creates_nothing(admin_client, people, fields, errors):
    data = {"email": "", "phone": "", "loyalty_card": "", "first_name": "X", "_save": "Save"}
    data.update(fields)

    response = admin_client.post(url("customer", "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == errors
    assert messages_of(response) == []
    assert Customer.objects.count() == 3
    assert Identity.objects.count() == 5


def test_add_leaves_out_a_blocked_identifier_and_says_so(admin_client, channels):
    BlockedIdentifier.objects.create(kind="email", value="shop@example.com")

    response = admin_client.post(
        url("customer", "add"),
        {"email": "shop@example.com", "phone": "0698765432", "loyalty_card": "", "_save": "Save"},
    )

    customer = Customer.objects.get()
    assert identities_of(customer) == {("phone", "+33698765432")}
    assert messages_of(response)[:2] == [
        ("success", f"Customer #{customer.pk} created with +33698765432."),
        ("warning", "Blocked, so not attached: shop@example.com."),
    ]


def test_add_with_only_blocked_identifiers_shows_the_service_error(admin_client, channels):
    BlockedIdentifier.objects.create(kind="email", value="shop@example.com")

    response = admin_client.post(
        url("customer", "add"),
        {"email": "shop@example.com", "phone": "", "loyalty_card": "", "_save": "Save"},
    )

    # Changed on purpose: customer_create's refusal is shown on the add form, as typed
    # (it used to redirect to an empty add page with the error as a message).
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors == {"__all__": ["Every identifier given is blocked."]}
    assert form["email"].value() == "shop@example.com"
    assert messages_of(response) == []
    assert Customer.objects.count() == 0


def test_change_page_shows_the_timeline_and_consents(admin_client, people, channels):
    ana = people["ana"]

    response = admin_client.get(url("customer", "change", ana.pk))

    assert response.status_code == 200
    rows = response.context["timeline_rows"]
    # Newest first: the consent recorded last, the store purchase, the web view.
    assert [(r["kind"], r["channel"].code) for r in rows] == [
        ("Consent changed", "email"),
        ("Purchase", "pos"),
        ("Product view", "web"),
    ]
    assert rows[1]["properties"] == "amount: 49.90, order: S-1"  # keys in alphabetical order
    consents = {row["channel"].code: row["state"] for row in response.context["consents"]}
    assert consents["email"].status == "opted_in"
    assert consents["sms"] is None
    content = response.content.decode()
    assert "Timeline across channels" in content
    assert "Opted in" in content
    assert "No decision recorded" in content
    assert url("customer", "export", ana.pk) in content
    assert url("customer", "erase", ana.pk) in content


def test_timeline_is_paginated(admin_client, channels, make_customer):
    customer = make_customer(email="busy@example.com")
    ingest("busy@example.com", *[("product_view", "web", n + 1, {"n": n}) for n in range(60)])

    first = admin_client.get(url("customer", "change", customer.pk))
    second = admin_client.get(url("customer", "change", customer.pk), {"timeline_page": 2})

    assert [r["properties"] for r in first.context["timeline_rows"]] == [
        f"n: {n}" for n in range(50)
    ]
    assert [r["properties"] for r in second.context["timeline_rows"]] == [
        f"n: {n}" for n in range(50, 60)
    ]
    assert "Page 2 of 2" in second.content.decode()


def test_profile_edit_goes_through_customer_update(admin_client, people, stores, channels):
    ana = people["ana"]
    times_before = dict(ana.field_times)

    response = admin_client.post(
        url("customer", "change", ana.pk),
        change_data(ana, city="Lille", home_store=stores["south"].pk),
    )

    assert response.status_code == 302
    ana.refresh_from_db()
    assert (ana.city, ana.home_store, ana.first_name) == ("Lille", stores["south"], "Ana")
    # Only the changed fields are stamped (merges keep the newest value per field).
    assert {k for k in ana.field_times if ana.field_times[k] != times_before.get(k)} == {
        "city",
        "home_store",
    }
    assert ("success", "Profile changed: city, home_store.") in messages_of(response)
    assert identities_of(ana) == {
        ("email", "ana.silva@example.com"),
        ("phone", "+33612345678"),
        ("loyalty_card", "12345678"),
    }


def test_profile_edit_refused_by_the_service_changes_nothing(admin_client, people, stores):
    ana = people["ana"]

    response = admin_client.post(
        url("customer", "change", ana.pk),
        change_data(
            ana,
            city="Lille",
            home_store=stores["wh"].pk,
            new_identities=[{"kind": "phone", "value": "07 82 11 22 33", "verified": ""}],
        ),
    )

    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "error",
            "Nothing was saved. The profile was not changed: home_store: wh is a warehouse, "
            "not a store. (home_store: wh is a warehouse, not a store.)",
        )
    ]
    ana.refresh_from_db()
    assert (ana.city, ana.home_store) == ("", stores["north"])
    assert len(identities_of(ana)) == 3


def test_identities_are_added_and_removed_through_the_services(admin_client, people):
    ana = people["ana"]
    card = ana.identities.get(kind="loyalty_card")

    response = admin_client.post(
        url("customer", "change", ana.pk),
        change_data(
            ana,
            new_identities=[{"kind": "phone", "value": "07 82 11 22 33", "verified": "on"}],
            delete_identities=[card],
        ),
    )

    assert response.status_code == 302
    assert identities_of(ana) == {
        ("email", "ana.silva@example.com"),
        ("phone", "+33612345678"),
        ("phone", "+33782112233"),
    }
    added = Identity.objects.get(value="+33782112233")
    assert (added.verified, added.source) == (True, "admin")
    assert ("success", "Added Phone: +33782112233.") in messages_of(response)
    assert ("success", "Removed Loyalty card: 12345678.") in messages_of(response)


def test_an_identifier_of_another_customer_is_refused_and_nothing_changes(admin_client, people):
    ana, bruno = people["ana"], people["bruno"]

    response = admin_client.post(
        url("customer", "change", ana.pk),
        change_data(
            ana,
            city="Lille",
            new_identities=[{"kind": "email", "value": "BRUNO@example.com", "verified": ""}],
        ),
    )

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    # Changed on purpose: identity_add's message (the form no longer checks owners itself).
    assert formset.forms[3].errors == {
        "value": [f"email bruno@example.com belongs to customer {bruno.pk}; merge them instead."]
    }
    assert messages_of(response) == []
    ana.refresh_from_db()
    assert ana.city == ""
    assert len(identities_of(ana)) == 3
    assert identities_of(bruno) == {("email", "bruno@example.com")}


def test_a_blocked_identifier_typed_in_the_inline_is_refused_and_nothing_changes(
    admin_client, people
):
    ana = people["ana"]
    ana.refresh_from_db()
    times = dict(ana.field_times)
    BlockedIdentifier.objects.create(kind="email", value="shop@example.com")

    response = admin_client.post(
        url("customer", "change", ana.pk),
        change_data(
            ana,
            city="Lille",
            new_identities=[{"kind": "email", "value": "Shop@Example.com", "verified": ""}],
        ),
    )

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.forms[3].errors == {"value": ["email shop@example.com is blocked."]}
    assert response.context["adminform"].form["city"].value() == "Lille"  # kept as typed
    # The profile change was rolled back with the refused identifier: no "Profile changed".
    assert messages_of(response) == []
    ana.refresh_from_db()
    assert (ana.city, ana.field_times) == ("", times)
    assert identities_of(ana) == {
        ("email", "ana.silva@example.com"),
        ("phone", "+33612345678"),
        ("loyalty_card", "12345678"),
    }
    assert not Identity.objects.filter(value="shop@example.com").exists()


def test_an_identifier_the_customer_already_holds_is_not_added_again(admin_client, people):
    ana = people["ana"]

    response = admin_client.post(
        url("customer", "change", ana.pk),
        change_data(
            ana,
            new_identities=[{"kind": "email", "value": "ANA.SILVA@example.com", "verified": ""}],
        ),
    )

    assert response.status_code == 302
    assert messages_of(response) == [
        ("info", "Already this customer's: Email: ana.silva@example.com."),
        ("success", changed_successfully(ana)),
    ]
    assert len(identities_of(ana)) == 3


def test_saving_an_unchanged_page_stamps_no_field(admin_client, people):
    ana = people["ana"]
    ana.refresh_from_db()
    times = dict(ana.field_times)

    response = admin_client.post(url("customer", "change", ana.pk), change_data(ana))

    assert response.status_code == 302
    ana.refresh_from_db()
    assert ana.field_times == times
    assert messages_of(response) == [("success", changed_successfully(ana))]


def test_an_inferred_preferred_channel_stays_inferred_until_staff_pick_one(
    admin_client, people, channels
):
    ana = people["ana"]
    Customer.objects.filter(pk=ana.pk).update(
        preferred_channel=channels["email"], preferred_channel_source="inferred"
    )

    other_field = admin_client.post(
        url("customer", "change", ana.pk), change_data(ana, city="Lille")
    )
    ana.refresh_from_db()
    kept = (ana.city, ana.preferred_channel, ana.preferred_channel_source)
    admin_client.get(other_field["Location"])  # shows (and so consumes) its messages
    picked = admin_client.post(
        url("customer", "change", ana.pk), change_data(ana, preferred_channel=channels["sms"].pk)
    )
    ana.refresh_from_db()

    assert kept == ("Lille", channels["email"], "inferred")
    assert messages_of(other_field) == [
        ("success", "Profile changed: city."),
        ("success", changed_successfully(ana)),
    ]
    assert (ana.preferred_channel, ana.preferred_channel_source) == (channels["sms"], "customer")
    assert messages_of(picked) == [
        ("success", "Profile changed: preferred_channel."),
        ("success", changed_successfully(ana)),
    ]


def test_counters_are_read_only(admin_client, people):
    ana = people["ana"]
    ana.refresh_from_db()
    seen = (ana.first_seen_at, ana.last_seen_at, ana.last_purchase_at)

    response = admin_client.post(
        url("customer", "change", ana.pk),
        change_data(
            ana,
            lifetime_orders="99",
            lifetime_revenue="1000000",
            first_seen_at="",
            last_seen_at="",
            last_purchase_at="",
        ),
    )

    assert response.status_code == 302
    ana.refresh_from_db()
    assert (ana.lifetime_orders, ana.lifetime_revenue) == (1, Decimal("49.90"))
    assert (ana.first_seen_at, ana.last_seen_at, ana.last_purchase_at) == seen
    assert None not in seen


def test_consent_and_conversation_inlines_show_the_latest_rows_only(
    admin_client, people, channels, monkeypatch
):
    from customers.admin import ConsentInline, ConversationInline
    from customers.models import Conversation

    monkeypatch.setattr(ConsentInline, "max_rows", 2)
    monkeypatch.setattr(ConversationInline, "max_rows", 1)
    ana = people["ana"]
    opted_in = Consent.objects.get(customer=ana)
    older = consent_record(
        customer=ana,
        channel=channels["sms"],
        status="opted_in",
        source="store",
        occurred_at=ago(days=30),
    )
    newest = consent_record(customer=ana, channel=channels["sms"], status="opted_out", source="app")
    talks = [
        Conversation.objects.create(
            customer=ana,
            subject=subject,
            started_on=channels["email"],
            created_at=timezone.now() - timedelta(days=days),
            last_message_at=timezone.now() - timedelta(days=days),
        )
        for subject, days in (("Old", 9), ("Recent", 1))
    ]

    response = admin_client.get(url("customer", "change", ana.pk))

    consents, conversations = (
        list(f.formset.queryset) for f in response.context["inline_admin_formsets"][1:]
    )
    assert consents == [newest, opted_in]
    assert older not in consents
    assert conversations == [talks[1]]


def test_customers_cannot_be_deleted(admin_client, people):
    response = admin_client.get(url("customer", "delete", people["ana"].pk))

    assert response.status_code == 403
    assert "delete_selected" not in admin_client.get(url("customer")).context[
        "cl"
    ].model_admin.get_actions(response.wsgi_request)


# --- Consent ----------------------------------------------------------------------------------


def test_consent_is_recorded_with_source_admin(admin_client, admin_user, people, channels):
    bruno = people["bruno"]

    page = admin_client.get(url("customer", "consent", bruno.pk))
    response = admin_client.post(
        url("customer", "consent", bruno.pk),
        {
            "channel": channels["sms"].pk,
            "status": "opted_in",
            "occurred_at_0": "",
            "occurred_at_1": "",
            "proof": "Signed at the till",
        },
    )

    assert page.status_code == 200
    assert response.status_code == 302
    consent = Consent.objects.get(customer=bruno, channel=channels["sms"])
    assert (consent.status, consent.source, consent.proof, consent.recorded_by) == (
        "opted_in",
        "admin",
        "Signed at the till",
        admin_user,
    )
    assert ConsentState.objects.get(customer=bruno, channel=channels["sms"]).consent == consent
    assert messages_of(response) == [
        ("success", f"Recorded: {bruno} opted in on {channels['sms'].name}.")
    ]


def test_an_older_consent_goes_to_the_history_only(admin_client, people, channels):
    ana = people["ana"]
    moment = timezone.localtime(timezone.now() - timedelta(days=400))

    response = admin_client.post(
        url("customer", "consent", ana.pk),
        {
            "channel": channels["email"].pk,
            "status": "opted_out",
            "occurred_at_0": moment.strftime("%Y-%m-%d"),
            "occurred_at_1": moment.strftime("%H:%M:%S"),
            "proof": "",
        },
    )

    assert response.status_code == 302
    assert ConsentState.objects.get(customer=ana, channel=channels["email"]).status == "opted_in"
    assert Consent.objects.filter(customer=ana, status="opted_out").count() == 1
    assert messages_of(response) == [
        (
            "success",
            f"Recorded in the history: {ana} opted out on {channels['email'].name}; a later "
            f"decision on {channels['email'].name} stays the current one.",
        )
    ]


def test_consent_refused_by_the_service_records_nothing(admin_client, people, channels):
    bruno = people["bruno"]
    future = timezone.localtime(timezone.now() + timedelta(days=2))
    before = Consent.objects.count()

    response = admin_client.post(
        url("customer", "consent", bruno.pk),
        {
            "channel": channels["sms"].pk,
            "status": "opted_in",
            "occurred_at_0": future.strftime("%Y-%m-%d"),
            "occurred_at_1": future.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 200
    assert messages_of(response) == [
        (
            "error",
            "Nothing was recorded. The consent was not recorded: Lies in the future. "
            "(occurred_at: Lies in the future.)",
        )
    ]
    assert Consent.objects.count() == before


def test_consent_on_a_sales_channel_is_not_offered(admin_client, people, channels):
    response = admin_client.post(
        url("customer", "consent", people["bruno"].pk),
        {"channel": channels["web"].pk, "status": "opted_in"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "channel": ["Select a valid choice. That choice is not one of the available choices."]
    }
    assert not Consent.objects.filter(channel=channels["web"]).exists()


# --- Merge ------------------------------------------------------------------------------------


def test_merge_action_confirms_then_merges_into_the_oldest(admin_client, admin_user, people):
    ana, bruno, chloe = people["ana"], people["bruno"], people["chloe"]

    confirm = action(admin_client, "customer", "merge_customers", [chloe.pk, ana.pk])
    assert Customer.objects.filter(pk=chloe.pk).exists()  # nothing merged before confirming
    response = admin_client.post(
        url("customer"),
        {
            "action": "merge_customers",
            ACTION_CHECKBOX_NAME: [str(chloe.pk), str(ana.pk)],
            "reason": "Same person, checked by phone",
            "confirm": "Merge",
        },
    )

    assert confirm.status_code == 200
    assert confirm.context["survivor"] == ana
    assert [row["survives"] for row in confirm.context["customers"]] == [True, False]
    assert response.status_code == 302
    assert response["Location"] == url("customer", "change", ana.pk)
    assert messages_of(response) == [
        ("success", f"Merged 2 customers into #{ana.pk} (#{chloe.pk} folded in).")
    ]
    assert not Customer.objects.filter(pk=chloe.pk).exists()
    assert identities_of(ana) == {
        ("email", "ana.silva@example.com"),
        ("phone", "+33612345678"),
        ("loyalty_card", "12345678"),
        ("phone", "+33781234567"),
    }
    merge = CustomerMerge.objects.get()
    assert (merge.survivor, merge.merged_customer_id, merge.source, merge.actor) == (
        ana,
        chloe.pk,
        "admin",
        admin_user,
    )
    assert merge.reason == "Same person, checked by phone"
    assert identities_of(bruno) == {("email", "bruno@example.com")}


def test_merge_refused_by_the_service_changes_nothing(admin_client, people):
    ana, bruno = people["ana"], people["bruno"]
    customer_erase(customer=bruno, source="test")

    response = admin_client.post(
        url("customer"),
        {
            "action": "merge_customers",
            ACTION_CHECKBOX_NAME: [str(ana.pk), str(bruno.pk)],
            "reason": "",
            "confirm": "Merge",
        },
    )

    assert messages_of(response) == [
        (
            "error",
            f"Nothing changed. Customer {bruno.pk} was erased and cannot be merged. "
            f"(customers: Customer {bruno.pk} was erased.)",
        )
    ]
    assert Customer.objects.filter(pk__in=[ana.pk, bruno.pk]).count() == 2
    assert len(identities_of(ana)) == 3
    assert CustomerMerge.objects.count() == 0


def test_merge_of_more_customers_than_the_service_takes_is_refused_before_confirming(
    admin_client, people, make_customer
):
    extra = [make_customer(email=f"m{n}@example.com") for n in range(MAX_MERGE - 2)]
    ids = [c.pk for c in (*people.values(), *extra)]
    assert len(ids) == MAX_MERGE + 1

    refused = action(admin_client, "customer", "merge_customers", ids)
    confirm = action(admin_client, "customer", "merge_customers", ids[:MAX_MERGE])

    assert messages_of(refused) == [
        ("error", f"A merge takes at most {MAX_MERGE} customers. Nothing changed.")
    ]
    assert confirm.status_code == 200
    assert len(confirm.context["customers"]) == MAX_MERGE
    assert Customer.objects.count() == MAX_MERGE + 1
    assert CustomerMerge.objects.count() == 0


def test_merge_confirmation_names_the_survivor_the_service_keeps(admin_client, people, monkeypatch):
    import customers.admin

    ana, bruno, chloe = people["ana"], people["bruno"], people["chloe"]
    picked = []

    def survivor(customers):
        picked.append(sorted(c.pk for c in customers))
        return max(customers, key=lambda c: c.pk)

    monkeypatch.setattr(customers.admin, "merge_survivor", survivor)

    confirm = action(admin_client, "customer", "merge_customers", [ana.pk, bruno.pk, chloe.pk])

    assert picked == [sorted([ana.pk, bruno.pk, chloe.pk])]
    assert confirm.context["survivor"] == chloe
    assert [row["survives"] for row in confirm.context["customers"]] == [False, False, True]
    assert f"into #{chloe.pk}" in confirm.content.decode()


def test_merge_needs_two_customers(admin_client, people):
    response = action(admin_client, "customer", "merge_customers", [people["ana"].pk])

    assert messages_of(response) == [
        ("error", "Select at least two customers to merge. Nothing changed.")
    ]
    assert Customer.objects.count() == 3


# --- Export and erasure -----------------------------------------------------------------------


def test_export_downloads_the_data_as_json(admin_client, admin_user, people):
    ana = people["ana"]

    page = admin_client.get(url("customer", "export", ana.pk))
    response = admin_client.post(url("customer", "export", ana.pk), {"reason": "Access request"})

    assert page.status_code == 200
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="customer-{ana.pk}.json"'
    data = json.loads(response.content)
    assert data["customer"]["id"] == ana.pk
    assert sorted((i["kind"], i["value"]) for i in data["customers.identity"]) == [
        ("email", "ana.silva@example.com"),
        ("loyalty_card", "12345678"),
        ("phone", "+33612345678"),
    ]
    assert len(data["customers.touchpoint"]) == 3
    request = PrivacyRequest.objects.get()
    assert (request.kind, request.customer_id_ref, request.source, request.actor) == (
        "export",
        ana.pk,
        "admin",
        admin_user,
    )
    assert request.reason == "Access request"


def test_erase_confirms_then_anonymises(admin_client, admin_user, people):
    ana = people["ana"]

    page = admin_client.get(url("customer", "erase", ana.pk))
    without_reason = admin_client.post(url("customer", "erase", ana.pk), {"reason": ""})
    response = admin_client.post(url("customer", "erase", ana.pk), {"reason": "Erasure request"})

    assert page.status_code == 200
    assert dict(page.context["held"])["identities"] == 3
    assert without_reason.status_code == 200
    assert without_reason.context["form"].errors == {"reason": ["This field is required."]}
    assert response.status_code == 302
    ana.refresh_from_db()
    assert ana.erased_at is not None
    assert (ana.first_name, ana.last_name, ana.home_store, ana.age_range) == (
        "Erased",
        "",
        None,
        "",
    )
    assert not Identity.objects.filter(customer=ana).exists()
    assert not Touchpoint.objects.filter(customer=ana).exists()
    assert not Consent.objects.filter(customer=ana).exists()
    request = PrivacyRequest.objects.get()
    assert (request.kind, request.source, request.actor, request.reason) == (
        "erase",
        "admin",
        admin_user,
        "Erasure request",
    )
    ((level, text),) = messages_of(response)
    assert level == "success"
    assert text.startswith(f"Erased the personal data of customer #{ana.pk}: removed ")
    assert "3 identities" in text
    assert "3 touchpoints" in text


def test_an_erased_customer_is_read_only(admin_client, people):
    ana = people["ana"]
    customer_erase(customer=ana, source="test")

    page = admin_client.get(url("customer", "change", ana.pk))
    again = admin_client.post(url("customer", "erase", ana.pk), {"reason": "twice"})

    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert page.context["customer_tools"]["erase_url"] is None
    assert messages_of(again) == [("error", "This customer was erased; nothing changed.")]
    assert PrivacyRequest.objects.count() == 1


@pytest.mark.parametrize("view", ["consent", "export", "erase"])
def test_tool_pages_of_a_merged_customer_lead_to_the_survivor(admin_client, people, view):
    from customers.services import customer_merge

    ana, chloe = people["ana"], people["chloe"]
    customer_merge(customers=[ana, chloe], source="test")

    page = admin_client.get(url("customer", view, chloe.pk))
    admin_client.get(page["Location"])  # shows (and so consumes) its message
    posted = admin_client.post(url("customer", view, chloe.pk), {"reason": "Request"})

    for response in (page, posted):
        assert response.status_code == 302
        assert response["Location"] == url("customer", "change", ana.pk)
        assert messages_of(response) == [
            (
                "warning",
                f"Customer #{chloe.pk} was merged into customer #{ana.pk}, shown here; "
                "nothing was done.",
            )
        ]
    assert PrivacyRequest.objects.count() == 0
    ana.refresh_from_db()
    assert ana.erased_at is None


@pytest.mark.parametrize("view", ["consent", "export", "erase"])
@pytest.mark.parametrize("object_id", ["999999", "abc"])
def test_tool_pages_of_an_unknown_customer_are_not_found(admin_client, people, view, object_id):
    assert admin_client.get(url("customer", view, object_id)).status_code == 404


# --- Conversations ----------------------------------------------------------------------------


@pytest.fixture
def thread(people, channels):
    """Ana wrote on the social commerce page, then by email."""
    message, _ = conversation_message_add(
        customer=people["ana"],
        channel=channels["social"],
        body="Is the linen shirt back in M?",
        source="client:social",
        external_id="dm-1",
        sent_at=ago(hours=3),
    )
    conversation_message_add(
        customer=people["ana"],
        channel=channels["email"],
        body="Following up by email.",
        source="client:mail",
        sent_at=ago(hours=1),
    )
    return message.conversation


def conversation_data(conversation, **fields):
    data = {
        "status": conversation.status,
        "assignee": conversation.assignee_id or "",
        "_save": "Save",
    }
    data.update(inline("messages", conversation.messages.order_by("sent_at", "id")))
    data.update(fields)
    return data


def test_conversation_list_and_page(admin_client, thread, people):
    listing = admin_client.get(url("conversation"))
    searched = admin_client.get(url("conversation"), {"q": "06 12 34 56 78"})
    page = admin_client.get(url("conversation", "change", thread.pk))

    assert result_pks(listing) == [thread.pk]
    assert result_pks(searched) == [thread.pk]
    assert "[email] Following up by email." in listing.content.decode()
    messages = page.context["inline_admin_formsets"][0].formset.queryset
    assert [(m.channel.code, m.direction) for m in messages] == [
        ("social", "inbound"),
        ("email", "inbound"),
    ]
    assert page.context["reply_form"].initial["channel"] == thread.messages.last().channel_id


def test_reply_appends_an_outbound_message(admin_client, admin_user, thread, channels):
    response = admin_client.post(
        url("conversation", "reply", thread.pk),
        {"channel": channels["email"].pk, "body": "Yes, it is back in stock."},
    )

    assert response.status_code == 302
    last = thread.messages.order_by("sent_at", "id").last()
    assert (last.direction, last.channel, last.body, last.author) == (
        "outbound",
        channels["email"],
        "Yes, it is back in stock.",
        admin_user,
    )
    assert thread.messages.count() == 3
    thread.refresh_from_db()
    assert thread.status == "waiting"
    assert OutboxEvent.objects.filter(type="conversation.reply").count() == 1
    assert messages_of(response) == [
        (
            "success",
            f"Reply sent on {channels['email'].name}; the conversation waits for the customer.",
        )
    ]


def test_an_empty_reply_is_refused(admin_client, thread, channels):
    response = admin_client.post(
        url("conversation", "reply", thread.pk), {"channel": channels["email"].pk, "body": "  "}
    )

    assert messages_of(response) == [
        (
            "error",
            "Nothing was sent. The message was not added: The message is empty. "
            "(body: The message is empty.)",
        )
    ]
    assert thread.messages.count() == 2


def test_status_and_assignee_change_through_the_service(admin_client, admin_user, thread):
    response = admin_client.post(
        url("conversation", "change", thread.pk),
        conversation_data(thread, status="closed", assignee=admin_user.pk),
    )

    assert response.status_code == 302
    thread.refresh_from_db()
    assert (thread.status, thread.assignee) == ("closed", admin_user)
    assert thread.closed_at is not None
    assert (
        "success",
        f"Conversation #{thread.pk}: assignee, status changed.",
    ) in messages_of(response)


def test_a_conversation_goes_only_to_staff(admin_client, thread, django_user_model):
    customer_user = django_user_model.objects.create_user(username="shopper")

    response = admin_client.post(
        url("conversation", "change", thread.pk),
        conversation_data(thread, assignee=customer_user.pk),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "assignee": ["Select a valid choice. That choice is not one of the available choices."]
    }
    thread.refresh_from_db()
    assert thread.assignee is None


@pytest.mark.parametrize(
    "query", ["status__exact=open", "assignee=none", "started_on__id__exact={social}"]
)
def test_conversation_filters(admin_client, thread, channels, query):
    response = admin_client.get(
        url("conversation") + "?" + query.format(social=channels["social"].pk)
    )

    assert result_pks(response) == [thread.pk]


# --- Segments ---------------------------------------------------------------------------------


@pytest.fixture
def web_segment(people, channels, make_customer):
    """Customers who used the web shop: Ana and Dora (Bruno used the app, Chloé nothing)."""
    make_customer(email="=dora@example.com", first_name="Dora", last_name="Web")
    ingest("=dora@example.com", ("product_view", "web", 5, {}), prefix="d")
    segment = Segment.objects.create(name="Web users")
    SegmentRule.objects.create(segment=segment, kind="channel_used", channel=channels["web"])
    return segment


def csv_rows(response):
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_segment_page_shows_the_exact_count_and_members(admin_client, web_segment, people):
    response = admin_client.get(url("segment", "change", web_segment.pk))

    assert response.status_code == 200
    assert response.context["live_count"] == 2
    dora = Customer.objects.get(first_name="Dora")
    assert [c.pk for c in response.context["sample"]] == [dora.pk, people["ana"].pk]
    assert 'id="segment-live-count">2<' in response.content.decode()


def test_segment_csv_export_has_exact_rows(admin_client, web_segment, people):
    ana = people["ana"]
    ana.refresh_from_db()
    dora = Customer.objects.get(first_name="Dora")

    response = admin_client.get(url("segment", "export", web_segment.pk))
    by_action = action(admin_client, "segment", "export_members", [web_segment.pk])

    assert response["Content-Disposition"] == f'attachment; filename="segment-{web_segment.pk}.csv"'
    expected = [
        ["id", "name", "email", "phone", "home_store", "lifetime_revenue", "last_seen_at"],
        [
            str(ana.pk),
            "Ana Silva",
            "ana.silva@example.com",
            "+33612345678",
            "north",
            "49.90",
            ana.last_seen_at.isoformat().replace("+00:00", "Z"),
        ],
        [
            str(dora.pk),
            "Dora Web",
            "'=dora@example.com",  # a spreadsheet would run it as a formula
            "",
            "",
            "0.00",
            dora.last_seen_at.isoformat().replace("+00:00", "Z"),
        ],
    ]
    assert csv_rows(response) == expected
    assert csv_rows(by_action) == expected


def test_segment_members_need_the_permission_to_view_customers(
    client, django_user_model, web_segment
):
    from django.contrib.auth.models import Permission

    marketer = django_user_model.objects.create_user(username="marketer", is_staff=True)
    marketer.user_permissions.set(Permission.objects.filter(codename="view_segment"))
    client.force_login(marketer)

    page = client.get(url("segment", "change", web_segment.pk))
    export = client.get(url("segment", "export", web_segment.pk))
    by_action = action(client, "segment", "export_members", [web_segment.pk])

    assert page.status_code == 200
    assert (page.context["live_count"], page.context["sample"]) == (2, None)
    assert page.context["export_url"] is None
    assert "ana.silva@example.com" not in page.content.decode()
    assert export.status_code == 403
    assert by_action.status_code == 200
    assert by_action["Content-Type"] == "text/html; charset=utf-8"
    assert by_action.context["action_form"] is None  # no action offered

    marketer.user_permissions.add(Permission.objects.get(codename="view_customer"))
    allowed = client.get(url("segment", "export", web_segment.pk))

    assert allowed.status_code == 200
    members = Customer.objects.filter(first_name__in=["Ana", "Dora"]).order_by("pk")
    assert [row[0] for row in csv_rows(allowed)] == ["id", *(str(c.pk) for c in members)]


def test_refresh_counts_action(admin_client, web_segment):
    response = action(admin_client, "segment", "refresh_counts", [web_segment.pk])

    web_segment.refresh_from_db()
    assert (web_segment.member_count, web_segment.counted_at is not None) == (2, True)
    assert messages_of(response) == [("info", "Counted the members of 1 segment.")]
    listing = admin_client.get(url("segment"), {"q": "web"})
    assert result_pks(listing) == [web_segment.pk]
    assert "used web" in listing.content.decode()


def test_a_rule_with_missing_fields_is_refused(admin_client, channels):
    response = admin_client.post(
        url("segment", "add"),
        {
            "name": "Opted in",
            "description": "",
            "match": "all",
            **inline("rules", [], [{"kind": "consent", "channel": "", "days": "3"}]),
            "_save": "Save",
        },
    )

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.forms[0].errors
    assert errors == {
        "channel": ["Required for 'Has opted in on channel'."],
        "days": ["Not used by 'Has opted in on channel'; leave it empty."],
    }
    assert Segment.objects.count() == 0


# --- Identifier settings and records ----------------------------------------------------------


def test_blocked_identifier_add_normalises_and_unlinks(admin_client, people):
    ana = people["ana"]

    response = admin_client.post(
        url("blockedidentifier", "add"),
        {"kind": "phone", "value": "06 12 34 56 78", "reason": "Store phone", "_save": "Save"},
    )

    assert response.status_code == 302
    blocked = BlockedIdentifier.objects.get()
    assert (blocked.kind, blocked.value, blocked.reason) == ("phone", "+33612345678", "Store phone")
    assert ("phone", "+33612345678") not in identities_of(ana)
    assert (
        "success",
        f"Blocked phone +33612345678. It was removed from customer #{ana.pk}.",
    ) in messages_of(response)
    searched = admin_client.get(url("blockedidentifier"), {"q": "+33 6 12 34 56 78"})
    assert result_pks(searched) == [blocked.pk]


def test_blocking_a_value_nobody_holds_says_just_that(admin_client, people):
    response = admin_client.post(
        url("blockedidentifier", "add"),
        {"kind": "email", "value": "Front.Desk@Example.com", "reason": "Shared", "_save": "Save"},
    )

    blocked = BlockedIdentifier.objects.get()
    assert response.status_code == 302
    assert messages_of(response) == [
        ("success", "Blocked email front.desk@example.com."),
        (
            "success",
            f"The blocked identifier “{blocked}” was added successfully.",
        ),
    ]
    assert blocked.value == "front.desk@example.com"
    assert Identity.objects.count() == 5


def test_blocked_identifier_invalid_value_adds_nothing(admin_client, channels):
    response = admin_client.post(
        url("blockedidentifier", "add"),
        {"kind": "email", "value": "nobody", "reason": "", "_save": "Save"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["value"] == [
        "'nobody' is not an email address."
    ]
    assert BlockedIdentifier.objects.count() == 0


def test_identity_kind_rules_are_edited_not_added(admin_client, channels):
    rule = IdentityKindRule.objects.get(kind="loyalty_card")

    add = admin_client.get(url("identitykindrule", "add"))
    response = admin_client.post(
        url("identitykindrule", "change", rule.pk), {"may_merge": "", "_save": "Save"}
    )

    assert add.status_code == 403
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.may_merge is False


@pytest.mark.parametrize(
    "model_name",
    ["touchpoint", "customermerge", "privacyrequest", "conversation", "identitykindrule"],
)
def test_records_cannot_be_added(admin_client, channels, model_name):
    assert admin_client.get(url(model_name, "add")).status_code == 403


def test_read_only_records_list_and_search(admin_client, people):
    ana, chloe = people["ana"], people["chloe"]
    from customers.services import customer_export, customer_merge

    customer_merge(customers=[ana, chloe], source="test")
    customer_export(customer=ana, source="test")

    touchpoints = admin_client.get(url("touchpoint"), {"q": "ANA.SILVA@example.com"})
    merges = admin_client.get(url("customermerge"), {"q": str(chloe.pk)})
    requests = admin_client.get(url("privacyrequest"), {"q": f"#{ana.pk}"})
    rules = admin_client.get(url("identitykindrule"))

    assert len(result_pks(touchpoints)) == Touchpoint.objects.filter(customer=ana).count() == 3
    assert result_pks(merges) == [CustomerMerge.objects.get().pk]
    assert result_pks(requests) == [PrivacyRequest.objects.get().pk]
    assert len(result_pks(rules)) == 7
    merge_page = admin_client.get(url("customermerge", "change", CustomerMerge.objects.get().pk))
    assert merge_page.status_code == 200
    assert merge_page.context["has_change_permission"] is False


def test_touchpoint_list_query_count_is_constant(admin_client, people):
    def count():
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url("touchpoint")).status_code == 200
        return len(queries)

    few = count()
    ingest("bruno@example.com", *[("app_open", "app", n + 1, {}) for n in range(15)], prefix="x")
    assert count() == few


def test_view_only_staff_cannot_export_erase_merge_or_reply(client, django_user_model, thread):
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user(username="clerk", is_staff=True)
    clerk.user_permissions.set(
        Permission.objects.filter(codename__in=["view_customer", "view_conversation"])
    )
    client.force_login(clerk)
    ana = Customer.objects.get(first_name="Ana")

    page = client.get(url("customer", "change", ana.pk))
    export = client.post(url("customer", "export", ana.pk), {"reason": ""})
    erase = client.post(url("customer", "erase", ana.pk), {"reason": "x"})
    consent = client.get(url("customer", "consent", ana.pk))
    reply = client.post(url("conversation", "reply", thread.pk), {"body": "Hi"})
    merge = action(client, "customer", "merge_customers", [ana.pk, thread.customer_id])

    assert page.status_code == 200
    assert page.context["customer_tools"] == {
        "consent_url": None,
        "export_url": None,
        "erase_url": None,
    }
    assert [export.status_code, erase.status_code, consent.status_code, reply.status_code] == [
        403,
        403,
        403,
        403,
    ]
    assert merge.status_code == 200  # no action for this user: the list again
    assert merge.context["action_form"] is None
    assert not CustomerMerge.objects.exists()
    assert PrivacyRequest.objects.count() == 0
    assert thread.messages.count() == 2
    ana.refresh_from_db()
    assert ana.erased_at is None
