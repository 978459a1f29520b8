"""The campaigns API as a contract: back-in-stock subscriptions, the audience export, campaigns,
a customer's messages and enrolments; who may call each, exact bodies, and that a refused call
changed nothing. Receipts are in ``test_receipts.py``."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from rest_framework.test import APIClient

from campaigns.models import (
    BackInStockSubscription,
    Enrolment,
    EnrolmentStatus,
    Message,
    MessageStatus,
    Trigger,
)
from campaigns.services.subscriptions import subscription_create
from customers.models import Customer, Identity, Segment
from customers.services import customer_erase, customer_merge
from omni.models import ApiClientAccess, ChannelKind, IdempotencyKey
from omni.services import api_client_create
from tests.factories import ChannelFactory, ListingFactory, VariantFactory
from tests.omni.test_schema import assert_matches_schema, operations

pytestmark = pytest.mark.django_db

BASE = "/api/v1/campaigns"
SUBSCRIPTIONS = f"{BASE}/subscriptions/"
EXPORT = f"{BASE}/audiences/export.csv"
CAMPAIGNS = f"{BASE}/campaigns/"
MESSAGES = f"{BASE}/messages/"
ENROLMENTS = f"{BASE}/enrolments/"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def token_client(name: str, access=ApiClientAccess.WRITE, channel=None) -> APIClient:
    client, token = api_client_create(name=name, access=access, channel=channel)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    api.api_client = client
    return api


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code, body
    assert body["message"]
    return body


def snapshot() -> dict:
    return {
        model._meta.label: list(model._base_manager.order_by("pk").values())
        for model in (BackInStockSubscription, Customer, Identity, IdempotencyKey)
    }


@pytest.fixture
def app(channels):
    return ChannelFactory(code="app", name="Mobile app", kind=ChannelKind.APP)


@pytest.fixture
def item(channels, app):
    """LINEN-M, listed on the web shop and the app (not on the POS channel)."""
    variant = VariantFactory(sku="LINEN-M", product__title="Linen Shirt")
    ListingFactory(variant=variant, channel=channels.web)
    ListingFactory(variant=variant, channel=app)
    return variant


@pytest.fixture
def web_client(channels):
    return token_client("web-shop", channel=channels.web)


@pytest.fixture
def app_client(app):
    return token_client("mobile-app", channel=app)


def subscription_body(subscription) -> dict:
    return {
        "id": subscription.pk,
        "customer": subscription.customer_id,
        "sku": subscription.variant.sku,
        "channel": subscription.channel.code,
        "source": subscription.source,
        "waiting": subscription.notified_at is None,
        "created_at": iso(subscription.created_at),
        "notified_at": iso(subscription.notified_at),
    }


# --- Subscribe --------------------------------------------------------------------------------


def test_subscribe_by_customer_id(writer, make_customer, item):
    customer = make_customer()

    response = writer.post(
        SUBSCRIPTIONS, {"customer": customer.pk, "sku": "linen-m", "channel": "web"}
    )

    assert response.status_code == 201, response.content
    subscription = BackInStockSubscription.objects.get()
    assert response.json() == {
        "id": subscription.pk,
        "customer": customer.pk,
        "sku": "LINEN-M",
        "channel": "web",
        "source": f"client:{writer.api_client.pk}",
        "waiting": True,
        "created_at": iso(subscription.created_at),
        "notified_at": None,
    }


def test_subscribing_again_answers_200_with_the_open_subscription(writer, make_customer, item):
    customer = make_customer()
    payload = {"customer": customer.pk, "sku": "LINEN-M", "channel": "web"}
    first = writer.post(SUBSCRIPTIONS, payload)

    again = writer.post(SUBSCRIPTIONS, payload)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert BackInStockSubscription.objects.count() == 1


def test_subscribe_by_identifiers_creates_or_finds_the_customer(writer, make_customer, item):
    response = writer.post(
        SUBSCRIPTIONS,
        {
            "identifiers": [{"kind": "email", "value": "New.Person@Example.com"}],
            "sku": "LINEN-M",
            "channel": "app",
        },
    )

    assert response.status_code == 201, response.content
    identity = Identity.objects.get(value="new.person@example.com")
    assert response.json()["customer"] == identity.customer_id
    assert response.json()["channel"] == "app"


def test_a_bound_client_subscribes_on_its_own_channel(web_client, make_customer, item):
    customer = make_customer()

    response = web_client.post(SUBSCRIPTIONS, {"customer": customer.pk, "sku": "LINEN-M"})

    assert response.status_code == 201, response.content
    assert response.json()["channel"] == "web"


def test_a_bound_client_may_not_subscribe_on_another_channel(web_client, make_customer, item):
    customer = make_customer()
    before = snapshot()

    for code in ("app", "nowhere"):
        response = web_client.post(
            SUBSCRIPTIONS, {"customer": customer.pk, "sku": "LINEN-M", "channel": code}
        )
        assert_error(response, 403, "permission_denied")

    assert snapshot() == before


def test_who_may_not_subscribe(api, reader, make_customer, item):
    customer = make_customer()
    payload = {"customer": customer.pk, "sku": "LINEN-M", "channel": "web"}
    before = snapshot()

    assert_error(api.post(SUBSCRIPTIONS, payload), 401, "not_authenticated")
    assert_error(reader.post(SUBSCRIPTIONS, payload), 403, "permission_denied")

    assert snapshot() == before


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        ({"customer": "CUSTOMER", "channel": "web"}, {"sku": ["This field is required."]}),
        (
            {"customer": "CUSTOMER", "sku": "LINEN-M", "channel": "web", "identifiers": "x"},
            {"identifiers": ['Expected a list of items but got type "str".']},
        ),
        (
            {"customer": "12", "sku": "LINEN-M", "channel": "web"},
            {"customer": ["A customer id (a whole number)."]},
        ),
        ({"customer": "CUSTOMER", "sku": "NOPE", "channel": "web"}, {"sku": ["Unknown SKU NOPE."]}),
        (
            {"customer": "CUSTOMER", "sku": "LINEN-M", "channel": "mars"},
            {"channel": ["Unknown channel mars."]},
        ),
        (
            {"customer": "CUSTOMER", "sku": "LINEN-M"},
            {"channel": ["Required: your API client is bound to no channel."]},
        ),
        (
            {"sku": "LINEN-M", "channel": "web"},
            {"customer": ["Give a customer id or identifiers."]},
        ),
        (
            {"sku": "LINEN-M", "channel": "web", "identifiers": [{"kind": "email", "value": "x"}]},
            {"identifiers": {"0": ["'x' is not an email address."]}},
        ),
        # PostgreSQL text cannot hold NUL: refused as input, never sent to the database.
        (
            {
                "sku": "LINEN-M",
                "channel": "web",
                "identifiers": [
                    {"kind": "email", "value": "ana@example.com"},
                    {"kind": "pos_customer_id", "value": "P\u0000"},
                ],
            },
            {"identifiers": {"1": ["The value contains a NUL character."]}},
        ),
        (
            {"customer": "CUSTOMER", "sku": "LINEN-M\u0000", "channel": "web"},
            {"sku": ["Null characters are not allowed."]},
        ),
        (
            {"customer": "CUSTOMER", "sku": "LINEN-M", "channel": "web\u0000"},
            {"channel": ["Null characters are not allowed."]},
        ),
    ],
)
def test_invalid_input_is_400_with_field_errors(writer, make_customer, item, payload, details):
    customer = make_customer()
    payload = {k: (customer.pk if v == "CUSTOMER" else v) for k, v in payload.items()}
    code = "customer_required" if "customer" in details and "customer" not in payload else None
    before = snapshot()

    body = assert_error(writer.post(SUBSCRIPTIONS, payload), 400, code or "validation_error")

    assert body["details"] == details
    assert snapshot() == before


@pytest.mark.parametrize(
    ("channel", "code", "details"),
    [
        ("email", "not_a_sales_channel", {"channel": ["Choose a sales channel."]}),
        ("store", "not_listed", {"sku": ["LINEN-M is not listed on store."]}),
    ],
)
def test_rules_of_the_service_are_400(writer, make_customer, item, channel, code, details):
    customer = make_customer()
    before = snapshot()

    body = assert_error(
        writer.post(SUBSCRIPTIONS, {"customer": customer.pk, "sku": "LINEN-M", "channel": channel}),
        400,
        code,
    )

    assert body["details"] == details
    assert snapshot() == before


def test_an_unknown_or_merged_customer_is_404(writer, make_customer, item):
    older, newer = make_customer(), make_customer()
    customer_merge(customers=[older.pk, newer.pk], reason="same person", source="test")

    assert_error(
        writer.post(SUBSCRIPTIONS, {"customer": 999_999, "sku": "LINEN-M", "channel": "web"}),
        404,
        "not_found",
    )
    body = assert_error(
        writer.post(SUBSCRIPTIONS, {"customer": newer.pk, "sku": "LINEN-M", "channel": "web"}),
        404,
        "customer_merged",
    )
    assert body["details"] == {"survivor": older.pk}
    assert BackInStockSubscription.objects.count() == 0


def test_an_erased_customer_is_409(writer, make_customer, item):
    customer = make_customer()
    customer_erase(customer=customer, source="test", reason="asked")
    before = snapshot()

    body = assert_error(
        writer.post(SUBSCRIPTIONS, {"customer": customer.pk, "sku": "LINEN-M", "channel": "web"}),
        409,
        "customer_erased",
    )

    assert body["details"] == {"customer": [f"Customer {customer.pk} was erased."]}
    assert snapshot() == before


def test_an_idempotency_key_replays_the_first_answer(writer, make_customer, item):
    customer = make_customer()
    payload = {"customer": customer.pk, "sku": "LINEN-M", "channel": "web"}

    first = writer.post(SUBSCRIPTIONS, payload, HTTP_IDEMPOTENCY_KEY="sub-1")
    again = writer.post(SUBSCRIPTIONS, payload, HTTP_IDEMPOTENCY_KEY="sub-1")
    reused = writer.post(SUBSCRIPTIONS, {**payload, "channel": "app"}, HTTP_IDEMPOTENCY_KEY="sub-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert_error(reused, 422, reused.json()["code"])
    assert BackInStockSubscription.objects.count() == 1


# --- List and cancel --------------------------------------------------------------------------


@pytest.fixture
def waiting(channels, app, make_customer, item):
    """Ana waits for LINEN-M on the web and the app, Bob on the web (used already), and for
    WOOL-S on the web."""
    wool = VariantFactory(sku="WOOL-S")
    ListingFactory(variant=wool, channel=channels.web)
    ana, bob = make_customer(), make_customer()
    rows = {
        "ana_web": subscription_create(
            customer=ana, variant=item, channel=channels.web, source="t"
        ),
        "ana_app": subscription_create(customer=ana, variant=item, channel=app, source="t"),
        "bob_web": subscription_create(
            customer=bob, variant=item, channel=channels.web, source="t"
        ),
        "bob_wool": subscription_create(
            customer=bob, variant=wool, channel=channels.web, source="t"
        ),
    }
    BackInStockSubscription.objects.filter(pk=rows["bob_web"].pk).update(notified_at=T0)
    rows["bob_web"].refresh_from_db()
    rows["ana"], rows["bob"] = ana, bob
    return rows


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_list_is_newest_first_with_exact_rows(reader, waiting):
    response = reader.get(SUBSCRIPTIONS)

    assert response.json()["count"] == 4
    assert response.json()["results"][0] == subscription_body(waiting["bob_wool"])
    assert response.json()["results"][2] == subscription_body(waiting["ana_app"])
    assert _ids(response) == [waiting[k].pk for k in ("bob_wool", "bob_web", "ana_app", "ana_web")]


def test_list_filters(reader, waiting):
    w = waiting

    def ids(**params):
        return _ids(reader.get(SUBSCRIPTIONS, params))

    assert ids(customer=w["ana"].pk) == [w["ana_app"].pk, w["ana_web"].pk]
    assert ids(sku="linen-m", channel="web") == [w["bob_web"].pk, w["ana_web"].pk]
    assert ids(waiting="true", sku="LINEN-M") == [w["ana_app"].pk, w["ana_web"].pk]
    assert ids(waiting="false") == [w["bob_web"].pk]
    assert ids(channel="store") == []
    body = assert_error(reader.get(SUBSCRIPTIONS, {"waiting": "maybe"}), 400, "validation_error")
    assert body["details"] == {"waiting": ["Enter true or false."]}


def test_a_bound_client_lists_its_channel_only(app_client, waiting):
    assert _ids(app_client.get(SUBSCRIPTIONS)) == [waiting["ana_app"].pk]


def test_list_query_count_does_not_grow(reader, waiting, django_assert_num_queries):
    reader.get(SUBSCRIPTIONS)  # the token's first use records last_used_at
    # token, count, subscriptions with variant and channel joined
    with django_assert_num_queries(3):
        assert len(_ids(reader.get(SUBSCRIPTIONS))) == 4


def test_cancel_answers_the_subscription_and_removes_it(writer, waiting):
    subscription = waiting["ana_web"]

    response = writer.delete(f"{SUBSCRIPTIONS}{subscription.pk}/")

    assert response.status_code == 200, response.content
    assert response.json() == subscription_body(subscription)
    assert not BackInStockSubscription.objects.filter(pk=subscription.pk).exists()
    assert_error(writer.delete(f"{SUBSCRIPTIONS}{subscription.pk}/"), 404, "not_found")


def test_who_may_not_cancel(api, reader, web_client, waiting):
    before = snapshot()
    path = f"{SUBSCRIPTIONS}{waiting['ana_app'].pk}/"

    assert_error(api.delete(path), 401, "not_authenticated")
    assert_error(reader.delete(path), 403, "permission_denied")
    assert_error(web_client.delete(path), 404, "not_found")  # another channel's
    assert_error(web_client.delete(f"{SUBSCRIPTIONS}99999999999999999999/"), 404, "not_found")
    body = assert_error(
        web_client.delete(f"{SUBSCRIPTIONS}{waiting['bob_web'].pk}/"), 409, "subscription_used"
    )
    assert body["details"] == {}

    assert snapshot() == before


# --- Audience export --------------------------------------------------------------------------

ANA_HASH = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11"  # ana@example.com


@pytest.fixture
def audience(channels, make_customer):
    ChannelFactory(code="ads-audience", kind=ChannelKind.ADS_AUDIENCE, currency="")
    make_customer(email="ana@example.com", opt_in=("ads-audience",))
    make_customer(email="bob@example.com", opt_in=("email",))
    return Segment.objects.create(name="Everyone")


def test_export_a_segment(writer, audience):
    response = writer.get(EXPORT, {"segment": audience.pk})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="audience-segment-{audience.pk}.csv"'
    )
    assert response.streaming
    assert b"".join(response.streaming_content).decode() == (
        f"email_sha256,phone_sha256\n{ANA_HASH},\n"
    )


def test_export_the_abandoned_cart_audience(writer, audience):
    response = writer.get(EXPORT, {"abandoned_carts": "1", "min_idle_minutes": "30"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="audience-abandoned-carts.csv"'
    assert b"".join(response.streaming_content) == b"email_sha256,phone_sha256\n"


@pytest.mark.parametrize(
    ("params", "code", "details"),
    [
        ({}, "audience_choice", {"non_field_errors": ["Give a segment or abandoned carts."]}),
        (
            {"segment": "SEGMENT", "abandoned_carts": "true"},
            "audience_choice",
            {"non_field_errors": ["Give a segment or abandoned carts, not both."]},
        ),
        ({"abandoned_carts": "0"}, "audience_choice", None),
        ({"segment": "x"}, "validation_error", {"segment": ["A whole number."]}),
        (
            {"abandoned_carts": "yes"},
            "validation_error",
            {"abandoned_carts": ["Enter true or false."]},
        ),
        (
            {"abandoned_carts": "1", "min_idle_minutes": "-5"},
            "validation_error",
            {"min_idle_minutes": ["A whole number."]},
        ),
    ],
)
def test_export_refuses_a_bad_request_with_400(writer, audience, params, code, details):
    params = {k: (audience.pk if v == "SEGMENT" else v) for k, v in params.items()}

    body = assert_error(writer.get(EXPORT, params), 400, code)

    if details is not None:
        assert body["details"] == details


def test_export_of_an_unknown_segment_is_404(writer, audience):
    assert_error(writer.get(EXPORT, {"segment": 999_999}), 404, "not_found")


def test_export_needs_a_caller(api, audience):
    assert_error(api.get(EXPORT, {"segment": audience.pk}), 401, "not_authenticated")


def staff_session(django_user_model, *codenames) -> APIClient:
    user = django_user_model.objects.create_user(
        username=f"staff-{'-'.join(codenames) or 'none'}", password="pw", is_staff=True
    )
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    api = APIClient()
    api.force_login(user)
    return api


def test_who_may_export_an_audience(
    django_user_model, staff_api, writer, reader, web_client, audience
):
    """Hashed emails and phones of any segment: staff who may view customers (as the admin's
    export), or a read-and-write API client bound to no channel."""
    params = {"segment": audience.pk}
    for allowed in (writer, staff_api, staff_session(django_user_model, "view_customer")):
        response = allowed.get(EXPORT, params)
        assert response.status_code == 200
        assert b"".join(response.streaming_content).decode() == (
            f"email_sha256,phone_sha256\n{ANA_HASH},\n"
        )

    refused = [
        (
            reader,
            "Exporting an audience hands out personal data: it needs a read-and-write API client.",
        ),
        (
            web_client,
            "This API client speaks for channel web; an audience spans every channel: export "
            "it with a client bound to no channel.",
        ),
        (
            staff_session(django_user_model, "view_campaign"),
            "Exporting an audience takes the permission to view customers.",
        ),
    ]
    for caller, message in refused:
        body = assert_error(caller.get(EXPORT, params), 403, "permission_denied")
        assert body["message"] == message
    # Refused before the parameters are read: a bad request is still a 403.
    assert_error(reader.get(EXPORT, {"segment": "x"}), 403, "permission_denied")


# --- Campaigns, messages, enrolments ----------------------------------------------------------


@pytest.fixture
def history(make_campaign, make_customer, channels):
    """A two-step cart campaign; Ana enrolled for her cart, one message delivered and clicked
    and one suppressed; Bob in the holdout of another campaign."""
    cart = make_campaign(
        name="Cart reminder", steps=((60, "email, sms"), (1440, "sms")), holdout_percent=10
    )
    winback = make_campaign(name="Win-back", trigger=Trigger.WIN_BACK)
    ana, bob = make_customer(), make_customer()
    enrolment = Enrolment.objects.create(
        campaign=cart,
        customer=ana,
        subject_key="cart:812",
        sales_channel=channels.web,
        status=EnrolmentStatus.COMPLETED,
        next_position=3,
        enrolled_at=T0,
        finished_at=datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
    )
    held = Enrolment.objects.create(
        campaign=winback,
        customer=bob,
        subject_key="winback:2026-03",
        holdout=True,
        due_at=T0,
        enrolled_at=T0,
    )
    first, second = cart.steps.order_by("position")
    delivered = Message.objects.create(
        enrolment=enrolment,
        campaign=cart,
        step=first,
        customer=ana,
        channel=channels.email,
        status=MessageStatus.DELIVERED,
        to="ana@example.com",
        created_at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        sent_at=datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC),
        delivered_at=datetime(2026, 3, 2, 10, 0, 2, tzinfo=UTC),
        clicked_at=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        clicks=2,
    )
    suppressed = Message.objects.create(
        enrolment=enrolment,
        campaign=cart,
        step=second,
        customer=ana,
        channel=None,
        status=MessageStatus.SUPPRESSED,
        reason="no_consent",
        created_at=datetime(2026, 3, 3, 10, 0, tzinfo=UTC),
    )
    return {
        "cart": cart,
        "winback": winback,
        "ana": ana,
        "bob": bob,
        "enrolment": enrolment,
        "held": held,
        "delivered": delivered,
        "suppressed": suppressed,
    }


def test_campaign_list_and_detail_with_steps(reader, history):
    cart = history["cart"]

    response = reader.get(CAMPAIGNS)

    assert response.status_code == 200
    assert [c["name"] for c in response.json()["results"]] == ["Cart reminder", "Win-back"]
    expected = {
        "id": cart.pk,
        "name": "Cart reminder",
        "description": "",
        "trigger": "cart_abandoned",
        "purpose": "marketing",
        "status": "active",
        "segment": None,
        "sales_channel": None,
        "holdout_percent": 10,
        "attribution_window_hours": 72,
        "starts_at": None,
        "ends_at": None,
        "steps": [
            {
                "position": 1,
                "delay_minutes": 60,
                "channels": ["email", "sms"],
                "template": "Cart reminder",
            },
            {
                "position": 2,
                "delay_minutes": 1440,
                "channels": ["sms"],
                "template": "Cart reminder",
            },
        ],
        "created_at": iso(cart.created_at),
        "updated_at": iso(cart.updated_at),
    }
    assert response.json()["results"][0] == expected
    assert reader.get(f"{CAMPAIGNS}{cart.pk}/").json() == expected
    assert [
        c["name"] for c in reader.get(CAMPAIGNS, {"trigger": "win_back"}).json()["results"]
    ] == ["Win-back"]
    assert_error(reader.get(f"{CAMPAIGNS}999999/"), 404, "not_found")
    assert_error(reader.get(CAMPAIGNS, {"status": "lost"}), 400, "validation_error")


def test_campaign_list_query_count_does_not_grow(reader, history, django_assert_num_queries):
    reader.get(CAMPAIGNS)
    # token, count, campaigns (channel and segment joined), steps with templates
    with django_assert_num_queries(4):
        assert reader.get(CAMPAIGNS).json()["count"] == 2


def test_a_customers_messages(reader, history):
    h = history

    response = reader.get(MESSAGES, {"customer": h["ana"].pk})

    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "id": h["suppressed"].pk,
            "customer": h["ana"].pk,
            "campaign": h["cart"].pk,
            "campaign_name": "Cart reminder",
            "step": 2,
            "channel": None,
            "is_marketing": True,
            "status": "suppressed",
            "reason": "no_consent",
            "created_at": "2026-03-03T10:00:00Z",
            "sent_at": None,
            "delivered_at": None,
            "failed_at": None,
            "clicked_at": None,
            "clicks": 0,
        },
        {
            "id": h["delivered"].pk,
            "customer": h["ana"].pk,
            "campaign": h["cart"].pk,
            "campaign_name": "Cart reminder",
            "step": 1,
            "channel": "email",
            "is_marketing": True,
            "status": "delivered",
            "reason": "",
            "created_at": "2026-03-02T10:00:00Z",
            "sent_at": "2026-03-02T10:00:01Z",
            "delivered_at": "2026-03-02T10:00:02Z",
            "failed_at": None,
            "clicked_at": "2026-03-02T11:00:00Z",
            "clicks": 2,
        },
    ]
    assert _ids(reader.get(MESSAGES, {"customer": h["bob"].pk})) == []
    assert _ids(reader.get(MESSAGES, {"customer": h["ana"].pk, "status": "delivered"})) == [
        h["delivered"].pk
    ]
    assert _ids(reader.get(MESSAGES, {"customer": h["ana"].pk, "channel": "sms"})) == []


def test_messages_need_a_customer(reader, history):
    body = assert_error(reader.get(MESSAGES), 400, "validation_error")
    assert body["details"] == {"customer": ["This field is required."]}
    body = assert_error(reader.get(MESSAGES, {"customer": "ana"}), 400, "validation_error")
    assert body["details"] == {"customer": ["Enter a whole number."]}


def test_messages_query_count(reader, history, django_assert_num_queries):
    reader.get(CAMPAIGNS)
    # token, count, messages with campaign, step and channel joined
    with django_assert_num_queries(3):
        assert len(_ids(reader.get(MESSAGES, {"customer": history["ana"].pk}))) == 2


def test_enrolments_of_a_customer_and_a_campaign(reader, history):
    h = history

    response = reader.get(ENROLMENTS, {"customer": h["ana"].pk, "campaign": h["cart"].pk})

    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "id": h["enrolment"].pk,
            "customer": h["ana"].pk,
            "campaign": h["cart"].pk,
            "campaign_name": "Cart reminder",
            "subject_key": "cart:812",
            "sales_channel": "web",
            "holdout": False,
            "status": "completed",
            "exit_reason": "",
            "next_position": 3,
            "due_at": None,
            "enrolled_at": "2026-03-02T09:00:00Z",
            "finished_at": "2026-03-03T09:00:00Z",
            "converted_at": None,
            "converted_order": None,
            "revenue": "0.00",
        }
    ]
    assert _ids(reader.get(ENROLMENTS, {"campaign": h["winback"].pk})) == [h["held"].pk]
    assert (
        _ids(reader.get(ENROLMENTS, {"customer": h["ana"].pk, "campaign": h["winback"].pk})) == []
    )
    assert _ids(reader.get(ENROLMENTS, {"status": "active"})) == [h["held"].pk]
    assert Decimal(reader.get(ENROLMENTS).json()["results"][0]["revenue"]) == Decimal("0")


def test_reads_need_a_caller(api, history):
    for path in (CAMPAIGNS, f"{MESSAGES}?customer=1", ENROLMENTS, SUBSCRIPTIONS):
        assert_error(api.get(path), 401, "not_authenticated")


# --- OpenAPI ----------------------------------------------------------------------------------

CAMPAIGN_OPERATIONS = [
    ("/api/v1/campaigns/audiences/export.csv", "get"),
    ("/api/v1/campaigns/campaigns/", "get"),
    ("/api/v1/campaigns/campaigns/{id}/", "get"),
    ("/api/v1/campaigns/enrolments/", "get"),
    ("/api/v1/campaigns/messages/", "get"),
    ("/api/v1/campaigns/receipts/", "post"),
    ("/api/v1/campaigns/subscriptions/", "get"),
    ("/api/v1/campaigns/subscriptions/", "post"),
    ("/api/v1/campaigns/subscriptions/{id}/", "delete"),
]


@pytest.fixture
def schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_documents_every_campaign_endpoint(schema):
    found = sorted(
        (path, method) for path, method, _ in operations(schema) if path.startswith(f"{BASE}/")
    )
    assert found == CAMPAIGN_OPERATIONS


def test_every_campaign_operation_declares_its_responses(schema):
    for path, method, operation in operations(schema):
        if not path.startswith(f"{BASE}/"):
            continue
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        expected = (
            ["201"] if operation["operationId"] == "campaigns_subscriptions_create" else ["200"]
        )
        assert success == expected, where
        for code in ("401", "403"):
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, where
        assert operation.get("summary"), where
        if path.endswith("/receipts/"):
            assert operation["security"] == [{"GatewaySignature": []}], where
        else:
            assert operation["security"] == [{"ApiClientToken": []}, {"cookieAuth": []}], where


def test_campaign_responses_match_the_schema(schema, writer, reader, api, history, waiting):
    ana = history["ana"]
    cases = [
        ("get", SUBSCRIPTIONS, reader, None, 200),
        ("get", SUBSCRIPTIONS + "?waiting=x", reader, None, 400),
        ("get", SUBSCRIPTIONS, api, None, 401),
        (
            "post",
            SUBSCRIPTIONS,
            writer,
            {"customer": ana.pk, "sku": "WOOL-S", "channel": "web"},
            201,
        ),
        ("post", SUBSCRIPTIONS, writer, {"customer": ana.pk, "channel": "web"}, 400),
        ("post", SUBSCRIPTIONS, reader, {"customer": ana.pk, "sku": "LINEN-M"}, 403),
        (
            "post",
            SUBSCRIPTIONS,
            writer,
            {"customer": 999999, "sku": "LINEN-M", "channel": "web"},
            404,
        ),
        ("delete", f"{SUBSCRIPTIONS}{waiting['ana_web'].pk}/", writer, None, 200),
        ("delete", f"{SUBSCRIPTIONS}{waiting['bob_web'].pk}/", writer, None, 409),
        ("delete", f"{SUBSCRIPTIONS}999999/", writer, None, 404),
        ("get", CAMPAIGNS, reader, None, 200),
        ("get", f"{CAMPAIGNS}{history['cart'].pk}/", reader, None, 200),
        ("get", f"{CAMPAIGNS}999999/", reader, None, 404),
        ("get", f"{MESSAGES}?customer={ana.pk}", reader, None, 200),
        ("get", MESSAGES, reader, None, 400),
        ("get", f"{ENROLMENTS}?customer={ana.pk}", reader, None, 200),
        ("get", EXPORT, writer, None, 400),
        ("get", f"{EXPORT}?segment=999999", writer, None, 404),
        ("get", f"{EXPORT}?segment=999999", reader, None, 403),
    ]
    for method, path, client, payload, status in cases:
        response = getattr(client, method)(path, payload)
        assert response.status_code == status, (method, path, response.content)
        assert_matches_schema(schema, method, path.split("?")[0], response)


def test_schema_generates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    assert "/api/v1/campaigns/receipts/" in target.read_text()
