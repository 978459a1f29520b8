"""The core admin: channels, API clients (tokens shown once, stored hashed), and the read-only
outbox and idempotency keys."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from omni.exceptions import ValidationFailed
from omni.models import ApiClient, Channel, IdempotencyKey, IdempotencyStatus, OutboxEvent
from omni.services import api_client_authenticate, api_client_create, outbox_emit
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db

TOKEN_RE = re.compile(r"omni_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def url(model, view="changelist", *args):
    return reverse(f"admin:omni_{model}_{view}", args=args)


def messages_of(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def result_pks(response):
    assert response.status_code == 200
    return [obj.pk for obj in response.context["cl"].result_list]


def token_in(message):
    tokens = TOKEN_RE.findall(message)
    assert len(tokens) == 1
    return tokens[0]


# --- Changelists: status and query counts -----------------------------------------------------


def _channel_row(index):
    ChannelFactory()


def _api_client_row(index):
    api_client_create(
        name=f"client-{index}", access="read", channel=Channel.objects.get(code="web")
    )


def _outbox_row(index):
    outbox_emit(type="catalog.product.created", subject_type="product", subject_id=index)


def _idempotency_row(index):
    now = timezone.now()
    IdempotencyKey.objects.create(
        principal="client:1",
        key=f"key-{index}",
        method="POST",
        path="/api/v1/catalog/products/",
        fingerprint="f" * 64,
        status=IdempotencyStatus.COMPLETED,
        response_status=201,
        response_body={"id": index},
        created_at=now,
        locked_until=now,
        expires_at=now + timedelta(hours=24),
    )


@pytest.mark.parametrize(
    ("model_name", "model", "make_row", "max_queries"),
    [
        ("channel", Channel, _channel_row, 5),
        ("apiclient", ApiClient, _api_client_row, 6),
        ("outboxevent", OutboxEvent, _outbox_row, 8),
        ("idempotencykey", IdempotencyKey, _idempotency_row, 5),
    ],
)
def test_changelist_query_count_does_not_grow_with_rows(
    staff, django_assert_max_num_queries, model_name, model, make_row, max_queries
):
    baseline = model.objects.count()
    counts = []
    made = 0
    for rows in (5, 30):
        while made < rows:
            make_row(made)
            made += 1
        with django_assert_max_num_queries(max_queries) as captured:
            response = staff.get(url(model_name))
        assert len(result_pks(response)) == model.objects.count() == baseline + rows
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]


def test_admin_index_renders_with_the_omni_header(staff):
    response = staff.get(reverse("admin:index"))

    assert response.status_code == 200
    assert response.context["site_header"] == "Omni administration"


def test_channel_search_and_filters(staff):
    closed = ChannelFactory(code="closed-shop", name="Closed shop", kind="web", is_active=False)

    assert result_pks(staff.get(url("channel") + "?q=closed")) == [closed.pk]
    assert result_pks(staff.get(url("channel") + "?is_active__exact=0")) == [closed.pk]
    assert [
        c.code for c in staff.get(url("channel") + "?kind__exact=web").context["cl"].result_list
    ] == [
        "closed-shop",
        "web",
    ]


def test_outbox_search_by_subject(staff):
    outbox_emit(type="catalog.variant.created", subject_type="variant", subject_id="TEE-1")
    wanted = outbox_emit(type="catalog.variant.created", subject_type="variant", subject_id="X-9")

    assert result_pks(staff.get(url("outboxevent") + "?q=X-9")) == [wanted.pk]


# --- Channels ---------------------------------------------------------------------------------


def test_add_channel(staff):
    page = staff.get(url("channel", "add"))
    data = {"code": "pop-up", "name": "Pop-up store", "kind": "store_pos", "currency": "EUR"}
    data["is_active"] = "on"

    response = staff.post(url("channel", "add"), data)

    assert page.status_code == 200
    assert list(page.context["adminform"].form.fields) == [
        "code",
        "name",
        "kind",
        "currency",
        "is_active",
    ]
    assert response.status_code == 302
    channel = Channel.objects.get(code="pop-up")
    assert (channel.name, channel.kind, channel.currency, channel.is_active) == (
        "Pop-up store",
        "store_pos",
        "EUR",
        True,
    )


def test_add_channel_with_a_bad_code_shows_an_error(staff):
    data = {"code": "Pop Up", "name": "Pop-up", "kind": "store_pos", "currency": "EUR"}

    response = staff.post(url("channel", "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "code": ["Use lower-case letters, digits, '-' and '_', starting with a letter or digit."]
    }
    assert not Channel.objects.filter(name="Pop-up").exists()


def test_channel_code_is_fixed_once_created(staff):
    web = Channel.objects.get(code="web")
    data = {"code": "shop", "name": "Online shop", "kind": "web", "currency": "EUR"}
    data["is_active"] = "on"

    page = staff.get(url("channel", "change", web.pk))
    response = staff.post(url("channel", "change", web.pk), data)

    assert "code" not in page.context["adminform"].form.fields
    assert response.status_code == 302
    web.refresh_from_db()
    assert (web.code, web.name) == ("web", "Online shop")


# --- API clients ------------------------------------------------------------------------------


def test_api_client_add_page_renders(staff):
    response = staff.get(url("apiclient", "add"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == ["name", "channel", "access"]
    assert "Issued when you save; shown once." in response.text


def test_add_api_client_shows_the_token_once_and_stores_its_hash(staff, staff_user):
    web = Channel.objects.get(code="web")

    response = staff.post(
        url("apiclient", "add"),
        {"name": "Web shop", "channel": str(web.pk), "access": "write"},
        follow=True,
    )

    assert response.redirect_chain == [(url("apiclient"), 302)]
    client = ApiClient.objects.get()
    warnings = [text for level, text in messages_of(response) if level == "warning"]
    assert len(warnings) == 1
    token = token_in(warnings[0])
    assert warnings[0] == (
        f"Token for <strong>Web shop</strong>: <code>{token}</code> — copy it now, it is stored "
        "hashed and will not be shown again."
    )
    assert (client.name, client.channel, client.access, client.is_active) == (
        "Web shop",
        web,
        "write",
        True,
    )
    assert client.created_by == staff_user
    assert client.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert client.token_prefix == token.split("_")[1]
    assert token not in str(list(ApiClient.objects.values()))
    assert api_client_authenticate(token) == client

    # Shown once: on the page after the save, and on no later page.
    assert f"<code>{token}</code>" in response.text
    later = staff.get(url("apiclient", "change", client.pk))
    assert list(later.context["messages"]) == []
    assert "omni_" not in later.text.replace(f"omni_{client.token_prefix}_…", "")


def test_add_api_client_with_a_taken_name_creates_nothing(staff):
    api_client_create(name="Web shop", access="read")

    response = staff.post(url("apiclient", "add"), {"name": "Web shop", "access": "read"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "name": ["API client with this Name already exists."]
    }
    assert ApiClient.objects.count() == 1


def test_refused_api_client_creation_shows_the_message_and_saves_nothing(staff, monkeypatch):
    def refuse(**kwargs):
        raise ValidationFailed("No more clients today.", extra={"name": ["Try tomorrow."]})

    monkeypatch.setattr("omni.admin.api_client_create", refuse)

    response = staff.post(url("apiclient", "add"), {"name": "Web shop", "access": "read"})

    assert response.status_code == 302
    assert response["Location"] == url("apiclient", "add")
    assert messages_of(response) == [
        ("error", "Nothing was saved. No more clients today. (name: Try tomorrow.)")
    ]
    assert ApiClient.objects.count() == 0


def test_issue_a_new_token_replaces_the_old_one(staff):
    client, old_token = api_client_create(name="POS", access="read")
    other, other_token = api_client_create(name="PIM", access="read")
    old_hash = client.token_hash

    response = staff.post(
        url("apiclient"),
        {"action": "issue_new_token", ACTION_CHECKBOX_NAME: [str(client.pk)], "index": "0"},
    )

    assert response.status_code == 302
    [(level, message)] = messages_of(response)
    assert level == "warning"
    new_token = token_in(message)
    client.refresh_from_db()
    assert client.token_hash != old_hash
    assert client.token_hash == hashlib.sha256(new_token.encode()).hexdigest()
    assert api_client_authenticate(old_token) is None
    assert api_client_authenticate(new_token) == client
    assert api_client_authenticate(other_token) == other


def test_view_only_staff_cannot_issue_tokens(client, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", is_staff=True)
    clerk.user_permissions.set(Permission.objects.filter(codename="view_apiclient"))
    client.force_login(clerk)
    api_client, token = api_client_create(name="POS", access="read")

    page = client.get(url("apiclient"))
    response = client.post(
        url("apiclient"),
        {"action": "issue_new_token", ACTION_CHECKBOX_NAME: [str(api_client.pk)], "index": "0"},
    )

    assert page.status_code == 200
    assert page.context["action_form"] is None
    assert response.status_code == 200
    assert messages_of(response) == []
    assert api_client_authenticate(token) == api_client


def test_api_client_changelist_shows_only_the_token_prefix(staff):
    client, token = api_client_create(name="POS", access="read")

    response = staff.get(url("apiclient"))

    assert f"<code>omni_{client.token_prefix}_…</code>" in response.text
    assert token not in response.text


# --- Outbox and idempotency keys are read-only ------------------------------------------------


@pytest.mark.parametrize("model_name", ["outboxevent", "idempotencykey"])
def test_read_only_admins_have_no_add_page(staff, model_name):
    assert staff.get(url(model_name, "add")).status_code == 403


@pytest.mark.parametrize("model_name", ["outboxevent", "idempotencykey"])
def test_read_only_admins_offer_no_delete(staff, model_name):
    _outbox_row(1)
    _idempotency_row(1)
    model = OutboxEvent if model_name == "outboxevent" else IdempotencyKey
    row = model.objects.get()

    page = staff.get(url(model_name))
    delete_page = staff.get(url(model_name, "delete", row.pk))
    response = staff.post(
        url(model_name),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [str(row.pk)], "post": "yes"},
    )

    assert page.context["action_form"] is None
    assert delete_page.status_code == 403
    assert response.status_code == 200
    assert model.objects.count() == 1


def test_outbox_event_page_is_read_only(staff):
    event = outbox_emit(type="catalog.product.created", subject_type="product", subject_id=1)

    response = staff.get(url("outboxevent", "change", event.pk))

    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}
    assert response.context["has_change_permission"] is False


# --- Access -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [
        "/admin/",
        "/admin/omni/channel/",
        "/admin/omni/channel/add/",
        "/admin/omni/apiclient/",
        "/admin/omni/apiclient/add/",
        "/admin/omni/outboxevent/",
        "/admin/omni/idempotencykey/",
    ],
)
@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_non_staff_are_sent_to_the_login_page(client, django_user_model, page, who):
    if who == "customer":
        client.force_login(django_user_model.objects.create_user(username="shopper"))

    response = client.get(page)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={page}"


def test_non_staff_cannot_create_api_clients(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="shopper"))

    response = client.post(url("apiclient", "add"), {"name": "Sneaky", "access": "write"})

    assert response.status_code == 302
    assert ApiClient.objects.count() == 0
