"""The OpenAPI schema: valid OpenAPI 3, complete, and true to what the endpoints send."""

import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from catalog.models import ChannelFeed
from omni.models import Channel
from tests.factories import ListingFactory, VariantFactory

pytestmark = pytest.mark.django_db

METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture
def schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operations(schema):
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.0.")
    validate(schema, cls=OpenAPIV30SpecValidator)
    assert schema["info"]["title"] == "Omni API"


def test_schema_lists_every_endpoint(schema):
    assert sorted((path, method) for path, method, _ in operations(schema)) == sorted(
        [
            ("/api/v1/catalog/feeds/{code}/", "get"),
            ("/api/v1/catalog/products/", "get"),
            ("/api/v1/catalog/products/", "post"),
            ("/api/v1/catalog/products/{handle}/", "get"),
            ("/api/v1/catalog/products/{handle}/", "patch"),
            ("/api/v1/catalog/variants/", "get"),
            ("/api/v1/catalog/variants/", "post"),
            ("/api/v1/catalog/variants/changes/", "get"),
            ("/api/v1/catalog/variants/{sku}/", "get"),
            ("/api/v1/catalog/variants/{sku}/", "patch"),
            ("/api/v1/catalog/variants/{sku}/listings/{channel}/", "put"),
            ("/api/v1/channels/", "get"),
            ("/api/v1/channels/{code}/", "get"),
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
            ("/api/v1/inventory/availability/{channel}/batch/", "post"),
            ("/api/v1/inventory/availability/{channel}/{sku}/", "get"),
            ("/api/v1/inventory/counts/", "get"),
            ("/api/v1/inventory/counts/", "post"),
            ("/api/v1/inventory/counts/{id}/", "get"),
            ("/api/v1/inventory/locations/", "get"),
            ("/api/v1/inventory/locations/{code}/", "get"),
            ("/api/v1/inventory/movements/batches/", "post"),
            ("/api/v1/inventory/movements/batches/{batch_id}/", "get"),
            ("/api/v1/inventory/reservations/", "get"),
            ("/api/v1/inventory/reservations/", "post"),
            ("/api/v1/inventory/reservations/consume/", "post"),
            ("/api/v1/inventory/reservations/release/", "post"),
            ("/api/v1/inventory/stock/{sku}/", "get"),
            ("/api/v1/inventory/transfers/", "get"),
            ("/api/v1/inventory/transfers/", "post"),
            ("/api/v1/inventory/transfers/{number}/", "get"),
            ("/api/v1/inventory/transfers/{number}/cancel/", "post"),
            ("/api/v1/inventory/transfers/{number}/receive/", "post"),
            ("/api/v1/inventory/transfers/{number}/ship/", "post"),
            ("/api/v1/orders/", "get"),
            ("/api/v1/orders/", "post"),
            ("/api/v1/orders/by-reference/{channel}/{external_reference}/", "get"),
            ("/api/v1/orders/carts/", "post"),
            ("/api/v1/orders/carts/{token}/", "get"),
            ("/api/v1/orders/carts/{token}/checkout/", "post"),
            ("/api/v1/orders/carts/{token}/identify/", "post"),
            ("/api/v1/orders/carts/{token}/lines/", "post"),
            ("/api/v1/orders/carts/{token}/lines/{sku}/", "delete"),
            ("/api/v1/orders/carts/{token}/lines/{sku}/", "put"),
            ("/api/v1/orders/pos-sales/", "post"),
            ("/api/v1/orders/{number}/", "get"),
            ("/api/v1/orders/{number}/cancel/", "post"),
            ("/api/v1/orders/{number}/collect/", "post"),
            ("/api/v1/orders/{number}/ready/", "post"),
            ("/api/v1/orders/{number}/returns/", "get"),
            ("/api/v1/orders/{number}/returns/", "post"),
            ("/api/v1/orders/{number}/ship/", "post"),
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
    )


# Called by the messaging gateway, signed with the gateway secret instead of a token, and
# idempotent by nature (a receipt repeated changes nothing): tested in tests/campaigns.
GATEWAY_SIGNED = {"/api/v1/campaigns/receipts/"}


def test_every_operation_declares_its_responses(schema):
    operation_ids = []
    for path, method, operation in operations(schema):
        where = f"{method.upper()} {path}"
        if path in GATEWAY_SIGNED:
            assert operation["security"] == [{"GatewaySignature": []}], where
            operation_ids.append(operation["operationId"])
            continue
        operation_ids.append(operation["operationId"])
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert len(success) == 1, where
        assert responses[success[0]]["content"], where
        for code in ("401", "403"):
            error = responses[code]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, where
        if method != "get" or "{" in path:
            assert {"400", "404"} & set(responses), where
        assert operation.get("summary"), where
        assert operation["security"] == [{"ApiClientToken": []}, {"cookieAuth": []}], where
    assert len(operation_ids) == len(set(operation_ids))


def test_posts_declare_the_idempotency_key(schema):
    for path, method, operation in operations(schema):
        if method != "post" or path in GATEWAY_SIGNED:
            continue
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [(h["name"], h.get("required", False)) for h in headers] == [
            ("Idempotency-Key", False)
        ], path
        assert {"409", "422"} <= set(operation["responses"]), path


def test_error_and_security_components(schema):
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "details", "message"]
    assert schema["components"]["securitySchemes"]["ApiClientToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <token>` of an API client created in the admin.",
    }


def test_changes_feed_is_documented_as_cursor_paginated(schema):
    operation = schema["paths"]["/api/v1/catalog/variants/changes/"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]

    assert sorted(page["properties"]) == ["next", "previous", "results"]
    assert page["required"] == ["results"]
    assert [p["name"] for p in operation["parameters"]] == ["cursor", "limit", "since"]


def test_schema_is_served_as_yaml_by_default(api):
    response = api.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.0.")


def test_docs_page(api):
    response = api.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger-ui" in response.content
    assert b"/api/schema/" in response.content


def test_spectacular_command_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    assert target.read_text().startswith("openapi: 3.0.")


# --- Responses match the schema -------------------------------------------------------------


def _resolve(node, components):
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(components[node["$ref"].rsplit("/", 1)[1]], components)
        return {k: _resolve(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, components) for v in node]
    return node


def _strict(node):
    """Refuse properties the schema does not declare, so a drifting response is caught."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _template_for(schema, path: str) -> str:
    if path in schema["paths"]:
        return path
    for template in schema["paths"]:
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} is not in the schema")


def assert_matches_schema(schema, method: str, path: str, response):
    operation = schema["paths"][_template_for(schema, path)][method]
    declared = operation["responses"][str(response.status_code)]
    body_schema = _strict(
        _resolve(declared["content"]["application/json"]["schema"], schema["components"]["schemas"])
    )
    OAS30Validator(body_schema, format_checker=oas30_format_checker).validate(response.json())


@pytest.fixture
def catalog(db):
    variant = VariantFactory(sku="TEE-M", product__handle="tee")
    VariantFactory(sku="TEE-L", product=variant.product, gtin=None, weight_grams=None)
    ListingFactory(variant=variant, price=Decimal("20.00"))
    ChannelFeed.objects.create(channel=Channel.objects.get(code="app"), format="json")


READS = [
    "/api/v1/channels/",
    "/api/v1/channels/web/",
    "/api/v1/catalog/products/",
    "/api/v1/catalog/products/tee/",
    "/api/v1/catalog/variants/",
    "/api/v1/catalog/variants/TEE-M/",
    "/api/v1/catalog/variants/TEE-L/",
    "/api/v1/catalog/variants/changes/",
    "/api/v1/catalog/products/nope/",
    "/api/v1/catalog/variants/NOPE/",
    "/api/v1/catalog/variants/changes/?since=bad",
    "/api/v1/catalog/feeds/email/",
    "/api/v1/catalog/feeds/nowhere/",
]


@pytest.mark.parametrize("path", READS)
def test_read_responses_match_the_schema(schema, reader, catalog, path):
    response = reader.get(path)

    assert_matches_schema(schema, "get", path.split("?")[0], response)


def test_write_responses_match_the_schema(schema, writer, reader, api, catalog):
    product = {
        "title": "Cap",
        "brand": "B",
        "category": "C",
        "variants": [{"sku": "CAP-1", "base_price": "5.00"}],
    }
    cases = [
        ("post", "/api/v1/catalog/products/", writer, product, 201),
        ("post", "/api/v1/catalog/products/", writer, {"title": ""}, 400),
        ("post", "/api/v1/catalog/products/", reader, product, 403),
        ("post", "/api/v1/catalog/products/", api, product, 401),
        ("patch", "/api/v1/catalog/products/tee/", writer, {"title": "Tee 2"}, 200),
        (
            "post",
            "/api/v1/catalog/variants/",
            writer,
            {"product": "tee", "sku": "TEE-S", "base_price": "1"},
            201,
        ),
        ("patch", "/api/v1/catalog/variants/TEE-S/", writer, {"base_price": "2"}, 200),
        ("put", "/api/v1/catalog/variants/TEE-S/listings/web/", writer, {"price": "3"}, 200),
        ("put", "/api/v1/catalog/variants/TEE-S/listings/email/", writer, {"price": "3"}, 400),
    ]
    for method, path, client, payload, status in cases:
        response = getattr(client, method)(path, payload)
        assert response.status_code == status, (method, path, response.content)
        assert_matches_schema(schema, method, path, response)

    again = writer.post("/api/v1/catalog/products/", product, HTTP_IDEMPOTENCY_KEY="k")
    reused = writer.post(
        "/api/v1/catalog/products/", {**product, "title": "Hat"}, HTTP_IDEMPOTENCY_KEY="k"
    )
    assert (again.status_code, reused.status_code) == (400, 422)
    assert_matches_schema(schema, "post", "/api/v1/catalog/products/", reused)
