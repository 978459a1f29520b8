"""API plumbing as a contract: authentication, permissions, one error shape, pagination, 404/500."""

import hashlib
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.test import Client
from rest_framework.test import APIClient

from catalog.models import Brand, Category, ChannelListing, Product, Variant
from omni.api.errors import exception_handler
from omni.api.views import ChannelViewSet
from omni.models import ApiClient, ApiClientAccess, Channel, IdempotencyKey, OutboxEvent
from omni.services import api_client_create, api_client_issue_token
from tests.factories import ListingFactory, ProductFactory, VariantFactory

pytestmark = pytest.mark.django_db

CHANNELS = "/api/v1/channels/"
PRODUCTS = "/api/v1/catalog/products/"
VARIANTS = "/api/v1/catalog/variants/"


def assert_error(response, status: int, code: str) -> dict:
    """The one error shape: exact status, JSON, exactly ``code``, ``message`` and ``details``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


def token_api(token: str, keyword: str = "Token") -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"{keyword} {token}")
    return api


def catalog_counts() -> dict:
    return {
        model.__name__: model.objects.count()
        for model in (
            Product,
            Variant,
            ChannelListing,
            Brand,
            Category,
            IdempotencyKey,
            OutboxEvent,
        )
    }


# --- Authentication -------------------------------------------------------------------------


def test_no_credentials_is_401_not_authenticated(api):
    response = api.get(CHANNELS)

    body = assert_error(response, 401, "not_authenticated")
    assert body == {
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
        "details": {},
    }
    assert response["WWW-Authenticate"] == 'Token realm="api"'


@pytest.mark.parametrize(
    "header",
    [
        "Token nonsense",
        "Token omni_deadbeef_notarealtoken",
        "Token omni_",
        "Token a b",
        "Token",
        "Bearer omni_deadbeef_notarealtoken",
    ],
)
def test_bad_token_is_401_authentication_failed(api, header):
    api_client_create(name="pos", access=ApiClientAccess.WRITE)
    api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get(CHANNELS)

    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == 'Token realm="api"'


@pytest.mark.parametrize("header", ["Tökén omni_x_y", "Basic dXNlcjpwYXNz", "Bearer"])
def test_other_schemes_are_401_not_authenticated(api, header):
    api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get(CHANNELS)

    expected = "authentication_failed" if header == "Bearer" else "not_authenticated"
    assert_error(response, 401, expected)


def test_token_with_non_ascii_characters_is_401(api, db):
    api.credentials(HTTP_AUTHORIZATION="Token omni_ö_x")

    body = assert_error(api.get(CHANNELS), 401, "authentication_failed")
    assert body["message"] == "Invalid token characters."


def test_right_prefix_wrong_secret_is_401(db):
    client, token = api_client_create(name="pos", access=ApiClientAccess.READ)
    forged = f"omni_{client.token_prefix}_{'x' * 43}"

    assert token_api(token).get(CHANNELS).status_code == 200
    assert_error(token_api(forged).get(CHANNELS), 401, "authentication_failed")


def test_revoked_token_is_401_and_new_token_works(db):
    client, old = api_client_create(name="pos", access=ApiClientAccess.READ)
    new = api_client_issue_token(client=client)

    body = assert_error(token_api(old).get(CHANNELS), 401, "authentication_failed")
    assert body["message"] == "Invalid or revoked API token."
    assert token_api(new).get(CHANNELS).status_code == 200


def test_inactive_client_is_401(db):
    client, token = api_client_create(name="pos", access=ApiClientAccess.WRITE)
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)

    assert_error(token_api(token).get(CHANNELS), 401, "authentication_failed")


def test_bearer_keyword_is_accepted(db):
    _client, token = api_client_create(name="pos", access=ApiClientAccess.READ)

    response = token_api(token, keyword="Bearer").get(CHANNELS)

    assert response.status_code == 200
    assert response.json()["count"] == Channel.objects.count()


def test_token_is_stored_hashed_never_raw(db):
    client, token = api_client_create(name="pos", access=ApiClientAccess.READ)

    client.refresh_from_db()
    assert client.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(f"omni_{client.token_prefix}_")
    secret = token.split("_", 2)[2]
    stored = [str(v) for v in ApiClient.objects.values_list(flat=False).get(pk=client.pk)]
    assert not any(token in v or secret in v for v in stored)


def test_token_use_records_last_used_at_at_most_every_5_minutes(db):
    client, token = api_client_create(name="pos", access=ApiClientAccess.READ)
    api = token_api(token)
    assert client.last_used_at is None

    assert api.get(CHANNELS).status_code == 200
    client.refresh_from_db()
    first = client.last_used_at
    assert first is not None

    assert api.get(CHANNELS).status_code == 200
    client.refresh_from_db()
    assert client.last_used_at == first

    ApiClient.objects.filter(pk=client.pk).update(last_used_at=first - timedelta(minutes=6))
    assert api.get(CHANNELS).status_code == 200
    client.refresh_from_db()
    assert client.last_used_at > first


# --- Permissions ----------------------------------------------------------------------------


@pytest.fixture
def listed_variant(db):
    variant = VariantFactory(sku="TEE-M", product__handle="tee", product__title="Tee")
    ListingFactory(variant=variant, price=Decimal("20.00"))
    return variant


READ_ONLY_REFUSALS = [
    ("post", PRODUCTS, {"title": "New", "brand": "Acme", "category": "Apparel"}),
    ("patch", f"{PRODUCTS}tee/", {"title": "Changed"}),
    ("put", f"{PRODUCTS}tee/", {"title": "Changed"}),
    ("post", VARIANTS, {"product": "tee", "sku": "TEE-L", "base_price": "20.00"}),
    ("patch", f"{VARIANTS}TEE-M/", {"base_price": "1.00"}),
    ("put", f"{VARIANTS}TEE-M/listings/web/", {"price": "1.00"}),
    ("put", f"{VARIANTS}TEE-M/listings/app/", {"price": "1.00"}),
    ("delete", f"{PRODUCTS}tee/", None),
]


@pytest.mark.parametrize(("method", "url", "payload"), READ_ONLY_REFUSALS)
def test_read_only_client_cannot_write_and_nothing_changes(
    reader, listed_variant, method, url, payload
):
    before = catalog_counts()

    response = getattr(reader, method)(url, payload, HTTP_IDEMPOTENCY_KEY="k-1")

    body = assert_error(response, 403, "permission_denied")
    assert body["message"] == "This API client has read-only access."
    assert catalog_counts() == before
    product = Product.objects.get(handle="tee")
    assert product.title == "Tee"
    variant = Variant.objects.get(sku="TEE-M")
    assert variant.base_price == Decimal("19.99")
    assert ChannelListing.objects.get(variant=variant).price == Decimal("20.00")


def test_read_only_client_may_read(reader, listed_variant):
    assert reader.get(f"{PRODUCTS}tee/").status_code == 200
    assert reader.get(f"{VARIANTS}TEE-M/").status_code == 200


@pytest.fixture
def shopper_api(django_user_model):
    user = django_user_model.objects.create_user(username="shopper", password="pw")
    api = APIClient()
    api.force_login(user)
    return api


def test_non_staff_session_user_is_403(shopper_api, listed_variant):
    before = catalog_counts()

    read = shopper_api.get(CHANNELS)
    write = shopper_api.post(PRODUCTS, {"title": "New", "brand": "Acme", "category": "Apparel"})

    for response in (read, write):
        body = assert_error(response, 403, "permission_denied")
        assert body["message"] == "Only staff and API clients may use the API."
    assert catalog_counts() == before


def test_staff_session_reads_and_writes(staff_api):
    assert staff_api.get(CHANNELS).status_code == 200

    response = staff_api.post(
        PRODUCTS,
        {"handle": "mug", "title": "Mug", "brand": "Acme", "category": "Home"},
        HTTP_IDEMPOTENCY_KEY="staff-1",
    )

    assert response.status_code == 201, response.content
    assert Product.objects.get(handle="mug").title == "Mug"
    assert IdempotencyKey.objects.get(key="staff-1").principal.startswith("user:")


def test_session_writes_need_csrf(staff_user):
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(staff_user)

    response = api.post(PRODUCTS, {"title": "Mug", "brand": "Acme", "category": "Home"})

    body = assert_error(response, 403, "permission_denied")
    assert "CSRF" in body["message"]
    assert Product.objects.count() == 0


# --- Error shape ----------------------------------------------------------------------------


def test_validation_error_lists_fields(writer):
    before = catalog_counts()

    response = writer.post(PRODUCTS, {"variants": [{"sku": "A-1"}]})

    body = assert_error(response, 400, "validation_error")
    assert body["message"] == "The request has invalid fields."
    assert body["details"] == {
        "title": ["This field is required."],
        "brand": ["This field is required."],
        "category": ["This field is required."],
        "variants": {"0": {"base_price": ["This field is required."]}},
    }
    assert catalog_counts() == before


def test_malformed_json_is_400_parse_error(writer):
    response = writer.post(PRODUCTS, data="{not json", content_type="application/json")

    body = assert_error(response, 400, "parse_error")
    assert body["message"].startswith("JSON parse error")
    assert Product.objects.count() == 0


def test_unsupported_media_type_is_415(writer):
    response = writer.post(PRODUCTS, data="title=x", content_type="text/plain")

    assert_error(response, 415, "unsupported_media_type")
    assert Product.objects.count() == 0


def test_unknown_object_is_404_json(reader):
    body = assert_error(reader.get(f"{PRODUCTS}no-such-product/"), 404, "not_found")
    assert body["message"] == "No Product matches the given query."


def test_method_not_allowed_is_405(writer, listed_variant):
    response = writer.delete(f"{PRODUCTS}tee/")

    body = assert_error(response, 405, "method_not_allowed")
    assert body["message"] == 'Method "DELETE" not allowed.'
    assert Product.objects.filter(handle="tee").count() == 1


def test_not_acceptable_is_406_json(reader):
    response = reader.get(CHANNELS, HTTP_ACCEPT="text/csv")

    assert_error(response, 406, "not_acceptable")


def test_server_error_in_api_view_is_500_json(reader, monkeypatch, caplog):
    def explode(self, request, *args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(ChannelViewSet, "list", explode)

    with caplog.at_level(logging.ERROR, logger="omni.api"):
        response = reader.get(CHANNELS)

    body = assert_error(response, 500, "server_error")
    assert body == {
        "code": "server_error",
        "message": "An unexpected error occurred; it has been logged.",
        "details": {},
    }
    assert "kaboom" not in response.content.decode()
    assert [r.exc_info[1].args for r in caplog.records if r.name == "omni.api"] == [("kaboom",)]


def test_integrity_error_is_409_conflict(writer, monkeypatch):
    from catalog.api import views

    def clash(**kwargs):
        raise IntegrityError('duplicate key value violates unique constraint "x"')

    monkeypatch.setattr(views, "product_create", clash)
    before = catalog_counts()

    response = writer.post(PRODUCTS, {"title": "Mug", "brand": "Acme", "category": "Home"})

    body = assert_error(response, 409, "conflict")
    assert body["message"] == "The request conflicts with a concurrent change; retry it."
    assert catalog_counts() == before


def test_integrity_error_names_the_constraint(db):
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT probe")
        try:
            cursor.execute(
                "INSERT INTO catalog_brand (name, created_at) VALUES ('Acme', now()), "
                "('Acme', now())"
            )
        except IntegrityError as exc:
            error = exc
        cursor.execute("ROLLBACK TO SAVEPOINT probe")

    response = exception_handler(error, {})

    assert response.status_code == 409
    assert response.data["code"] == "conflict"
    assert response.data["details"] == {"constraint": "catalog_brand_name_key"}


@pytest.mark.urls("tests.omni.urls_slow")
def test_server_error_outside_drf_under_api_is_500_json():
    client = Client(raise_request_exception=False)

    api_response = client.get("/api/v1/test/boom/")
    page_response = client.get("/boom/")

    assert_error(api_response, 500, "server_error")
    assert page_response.status_code == 500
    assert page_response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/api/v1/nope/", "/api/v2/catalog/products/", "/api/"]
)
def test_unknown_api_path_is_404_json(reader, path):
    body = assert_error(reader.get(path), 404, "not_found")
    assert body["message"] == f"No API endpoint at {path}."


def test_unknown_non_api_path_is_404_html(client, db):
    response = client.get("/nope/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- Pagination -----------------------------------------------------------------------------


def test_limit_offset_pagination(reader):
    codes = list(Channel.objects.order_by("code").values_list("code", flat=True))

    response = reader.get(CHANNELS, {"limit": 3, "offset": 3})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(codes) == 10
    assert [c["code"] for c in body["results"]] == codes[3:6]
    assert body["next"] == "http://testserver/api/v1/channels/?limit=3&offset=6"
    assert body["previous"] == "http://testserver/api/v1/channels/?limit=3"


def test_default_page_size_is_50(reader):
    product = ProductFactory()
    Variant.objects.bulk_create(
        Variant(product=product, sku=f"BULK-{i:04d}", base_price=Decimal("1.00")) for i in range(60)
    )

    body = reader.get(VARIANTS).json()

    assert body["count"] == 60
    assert len(body["results"]) == 50
    assert body["next"] == "http://testserver/api/v1/catalog/variants/?limit=50&offset=50"


def test_max_page_size_is_enforced(reader, settings, django_assert_max_num_queries):
    assert settings.API_MAX_PAGE_SIZE == 500
    product = ProductFactory()
    Variant.objects.bulk_create(
        Variant(product=product, sku=f"BULK-{i:04d}", base_price=Decimal("1.00"))
        for i in range(501)
    )
    reader.get(CHANNELS)  # the token's first use records last_used_at

    with django_assert_max_num_queries(4):
        response = reader.get(VARIANTS, {"limit": 1000})

    body = response.json()
    assert body["count"] == 501
    assert len(body["results"]) == 500
    assert body["results"][-1]["sku"] == "BULK-0499"
    assert body["next"] == "http://testserver/api/v1/catalog/variants/?limit=500&offset=500"


@pytest.mark.django_db
def test_a_body_over_the_upload_limit_is_413_with_the_error_shape(staff_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = staff_api.post(
        "/api/v1/inventory/movements/batches/",
        {"batch_id": "big", "movements": [{"id": str(i), "sku": "X"} for i in range(200)]},
        format="json",
    )
    assert response.status_code == 413
    assert response.json() == {
        "code": "request_too_large",
        "message": "The request body is larger than 1,000 bytes; send it in smaller parts.",
        "details": {"max_bytes": 1000},
    }
