"""The orders API in the OpenAPI schema: every endpoint documented, and what they send (happy
paths and errors) true to what the schema declares."""

import pytest

from orders.services import cart_create, order_mark_ready, order_ship
from tests.omni.test_schema import assert_matches_schema, operations
from tests.orders.api_fixtures import (
    CARTS,
    ORDERS,
    POS_SALES,
    by_reference_url,
    cart_url,
    order_url,
    place,
)
from tests.orders.conftest import lines

pytestmark = pytest.mark.django_db

ORDER_OPERATIONS = [
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
]


@pytest.fixture
def schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_documents_every_order_endpoint(schema):
    found = sorted(
        (path, method)
        for path, method, _ in operations(schema)
        if path.startswith("/api/v1/orders/")
    )

    assert found == ORDER_OPERATIONS


def test_every_order_operation_declares_its_responses(schema):
    for path, method, operation in operations(schema):
        if not path.startswith("/api/v1/orders/"):
            continue
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert success == (["201"] if operation["operationId"] in CREATES else ["200"]), where
        for code in ("401", "403"):
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, where
        assert operation.get("summary"), where
        if method == "post":
            assert {"400", "409", "422"} <= set(responses), where


CREATES = {
    "orders_create",
    "orders_carts_create",
    "orders_carts_checkout_create",
    "orders_returns_create",
    "orders_pos_sales_create",
}


def test_order_list_filters_are_documented(schema):
    parameters = schema["paths"]["/api/v1/orders/"]["get"]["parameters"]

    assert sorted(p["name"] for p in parameters) == [
        "channel",
        "customer",
        "external_reference",
        "fulfilment_method",
        "limit",
        "needs_attention",
        "offset",
        "placed_after",
        "placed_before",
        "status",
        "store",
    ]


def test_responses_match_the_schema(schema, writer, reader, api, shop, stock):
    stock.put(shop.warehouse, shop.b, 50)
    placed = place(shop, stock, external_reference="WEB-1", quantity=3)
    shipped = place(shop, stock)
    order_ship(order=shipped, source="test")
    pickup = place(shop, stock, method="pickup")
    order_mark_ready(order=pickup, source="test")
    cart = cart_create(channel=shop.web, source="test", lines=lines(("SKU-A", 1)))
    other = cart_create(channel=shop.web, source="test", lines=lines(("SKU-B", 1)))
    ship = {
        "channel": "web",
        "lines": [{"sku": "SKU-B", "quantity": 1}],
        "fulfilment_method": "ship",
        "shipping_address": "Paris",
    }
    cases = [
        ("get", ORDERS, reader, None, 200),
        ("get", ORDERS + "?status=lost", reader, None, 400),
        ("get", ORDERS, api, None, 401),
        ("get", order_url(placed.number), reader, None, 200),
        ("get", order_url(pickup.number), reader, None, 200),
        ("get", order_url("O-NOPE-NOPE"), reader, None, 404),
        ("get", by_reference_url("web", "WEB-1"), reader, None, 200),
        ("get", by_reference_url("web", "WEB-2"), reader, None, 404),
        ("get", order_url(shipped.number, "returns"), reader, None, 200),
        ("post", ORDERS, writer, ship, 201),
        ("post", ORDERS, writer, {**ship, "lines": []}, 400),
        ("post", ORDERS, reader, ship, 403),
        ("post", ORDERS, writer, {**ship, "lines": [{"sku": "SKU-C", "quantity": 1}]}, 409),
        ("post", order_url(placed.number, "ship"), writer, {"carrier": "DHL"}, 200),
        ("post", order_url(placed.number, "cancel"), writer, {}, 409),
        ("post", order_url(pickup.number, "collect"), writer, {"code": "x"}, 400),
        ("post", order_url(pickup.number, "collect"), writer, {"code": pickup.pickup_code}, 200),
        ("post", order_url(pickup.number, "ready"), writer, None, 409),
        (
            "post",
            order_url(shipped.number, "returns"),
            writer,
            {"location": "lyon", "lines": [{"line": "SKU-A", "quantity": 1}]},
            201,
        ),
        ("post", order_url("O-NOPE-NOPE", "returns"), writer, {}, 404),
        (
            "post",
            CARTS,
            writer,
            {"channel": "web", "lines": [{"sku": "SKU-A", "quantity": 1}]},
            201,
        ),
        ("get", cart_url(cart.token), reader, None, 200),
        ("get", cart_url("nope"), reader, None, 404),
        ("post", cart_url(cart.token, "lines"), writer, {"sku": "SKU-C", "quantity": 2}, 200),
        ("put", cart_url(cart.token, "lines/SKU-C"), writer, {"quantity": 1}, 200),
        ("delete", cart_url(cart.token, "lines/SKU-C"), writer, None, 200),
        ("delete", cart_url(cart.token, "lines/SKU-C"), writer, None, 404),
        (
            "post",
            cart_url(cart.token, "identify"),
            writer,
            {"identifiers": [{"kind": "email", "value": "camille@example.com"}]},
            200,
        ),
        (
            "post",
            cart_url(cart.token, "checkout"),
            writer,
            {"fulfilment_method": "pickup", "store": "paris"},
            201,
        ),
        ("post", cart_url(other.token, "checkout"), writer, {"fulfilment_method": "x"}, 400),
        (
            "post",
            POS_SALES,
            writer,
            {"store": "paris", "lines": [{"sku": "SKU-A", "quantity": 1}], "receipt": "R1"},
            201,
        ),
    ]
    stock.put(shop.paris, shop.a, 5)
    for method, path, client, payload, status in cases:
        response = getattr(client, method)(path, payload)
        assert response.status_code == status, (method, path, response.content)
        assert_matches_schema(schema, method, path.split("?")[0], response)
