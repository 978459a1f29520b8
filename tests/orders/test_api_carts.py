"""The carts API as a contract: open, read, add, set, remove, identify and check out, with
exact bodies and exact errors."""

import pytest

from catalog.models import ChannelListing
from customers.models import Customer, Touchpoint
from omni.models import OutboxEvent
from orders.models import Cart, CartStatus, Order
from orders.services import cart_create
from tests.orders.api_fixtures import (
    CARTS,
    a_customer,
    assert_error,
    cart_url,
    iso,
    order_url,
    snapshot,
    source_of,
    web_client_fixture,  # noqa: F401
)
from tests.orders.conftest import lines

pytestmark = pytest.mark.django_db


def title(variant) -> str:
    return f"{variant.product.title} (size: M)"


def cart_line_json(line, variant, quantity, unit_price) -> dict:
    return {
        "sku": variant.sku,
        "title": title(variant),
        "quantity": quantity,
        "unit_price": unit_price,
        "line_total": f"{float(unit_price) * quantity:.2f}",
        "added_at": iso(line.added_at),
        "updated_at": iso(line.updated_at),
    }


def a_cart(shop, *pairs, **kwargs) -> Cart:
    return cart_create(channel=shop.web, source="test", lines=lines(*pairs), **kwargs)


def kinds(customer) -> list[tuple[str, str, int]]:
    return [
        (t.kind, t.properties["sku"], t.properties["quantity"])
        for t in Touchpoint.objects.filter(customer=customer).order_by("occurred_at", "pk")
    ]


# --- Open and read ----------------------------------------------------------------------------


def test_open_an_anonymous_cart_with_lines(web_client, shop):
    response = web_client.post(
        CARTS,
        {
            "lines": [{"sku": "sku-a", "quantity": 2}, {"sku": "SKU-C", "quantity": 3}],
            "external_reference": "sess-42",
        },
    )

    assert response.status_code == 201, response.content
    cart = Cart.objects.get()
    line_a, line_c = cart.lines.order_by("added_at", "pk")
    assert response.json() == {
        "token": cart.token,
        "channel": "web",
        "customer": None,
        "status": "open",
        "currency": "EUR",
        "external_reference": "sess-42",
        "lines": [
            cart_line_json(line_a, shop.a, 2, "10.00"),
            cart_line_json(line_c, shop.c, 3, "4.00"),
        ],
        "item_count": 5,
        "total": "32.00",
        "order": None,
        "created_at": iso(cart.created_at),
        "last_activity_at": iso(cart.last_activity_at),
        "closed_at": None,
    }
    assert cart.source == source_of(web_client)


def test_open_a_cart_for_a_customer(writer, shop):
    response = writer.post(
        CARTS,
        {
            "channel": "web",
            "identifiers": [{"kind": "email", "value": "Camille@Example.com"}],
            "lines": [{"sku": "SKU-A", "quantity": 1}],
        },
    )

    assert response.status_code == 201, response.content
    customer = Customer.objects.get()
    assert response.json()["customer"] == customer.pk
    assert kinds(customer) == [("add_to_cart", "SKU-A", 1)]


def test_open_an_empty_cart_for_a_customer_id(writer, shop):
    customer = a_customer()

    response = writer.post(CARTS, {"channel": "app", "customer": customer.pk})

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["channel"], body["customer"], body["lines"], body["total"]) == (
        "app",
        customer.pk,
        [],
        "0.00",
    )


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        (
            {},
            "validation_error",
            {"channel": ["Required: your API client is bound to no channel."]},
        ),
        ({"channel": "nope"}, "validation_error", {"channel": ["Unknown channel nope."]}),
        (
            {"channel": "sms"},
            "not_a_sales_channel",
            {"channel": ["sms is not an active sales channel."]},
        ),
        (
            {"channel": "web", "lines": [{"sku": "NOPE", "quantity": 1}]},
            "validation_error",
            {"lines": {"0": {"sku": ["Unknown SKU NOPE."]}}},
        ),
        (
            {"channel": "web", "lines": [{"sku": "SKU-A", "quantity": -1}]},
            "validation_error",
            {"lines": {"0": {"quantity": ["Ensure this value is greater than or equal to 1."]}}},
        ),
        (
            {"channel": "web", "identifiers": [{"kind": "fax", "value": "1"}]},
            "validation_error",
            {
                "identifiers": {
                    "0": [
                        "Unknown identifier kind 'fax'; one of: email, phone, loyalty_card, "
                        "pos_customer_id, app_device, social_handle, web_cookie."
                    ]
                }
            },
        ),
        (
            {"channel": "web", "identifiers": "camille@example.com"},
            "validation_error",
            {"identifiers": ['Expected a list of items but got type "str".']},
        ),
    ],
)
def test_invalid_carts_are_refused(writer, shop, body, code, details):
    before = snapshot()

    response = writer.post(CARTS, body)

    assert assert_error(response, 400, code)["details"] == details
    assert snapshot() == before


def test_get_a_cart_by_token(reader, shop, django_assert_num_queries):
    cart = a_cart(shop, ("SKU-A", 1), ("SKU-B", 2))
    ChannelListing.objects.filter(variant=shop.b, channel=shop.web).update(title="Rain jacket")
    reader.get(cart_url(cart.token))

    # token, cart (channel and order joined), lines (variant and product), listing titles
    with django_assert_num_queries(4):
        response = reader.get(cart_url(cart.token))

    assert response.status_code == 200, response.content
    body = response.json()
    assert [(line["sku"], line["title"]) for line in body["lines"]] == [
        ("SKU-A", title(shop.a)),
        ("SKU-B", "Rain jacket (size: M)"),
    ]
    assert (body["item_count"], body["total"]) == (3, "61.00")


def test_an_unknown_cart_is_not_found(reader, shop):
    error = assert_error(reader.get(cart_url("0" * 32)), 404, "not_found")
    assert error["message"] == f"No cart {'0' * 32}."


# --- Lines ------------------------------------------------------------------------------------


def test_add_units_to_a_cart(writer, shop):
    customer = a_customer()
    cart = a_cart(shop, ("SKU-A", 1), customer=customer)

    response = writer.post(cart_url(cart.token, "lines"), {"sku": "sku-a", "quantity": 2})
    assert response.status_code == 200, response.content
    assert [(line["sku"], line["quantity"]) for line in response.json()["lines"]] == [("SKU-A", 3)]

    response = writer.post(cart_url(cart.token, "lines"), {"sku": "SKU-B"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(line["sku"], line["quantity"]) for line in body["lines"]] == [
        ("SKU-A", 3),
        ("SKU-B", 1),
    ]
    assert body["total"] == "55.50"
    assert kinds(customer) == [
        ("add_to_cart", "SKU-A", 1),
        ("add_to_cart", "SKU-A", 2),
        ("add_to_cart", "SKU-B", 1),
    ]


def test_set_the_quantity_of_a_line(writer, shop):
    customer = a_customer()
    cart = a_cart(shop, ("SKU-A", 3), ("SKU-B", 1), customer=customer)

    response = writer.put(cart_url(cart.token, "lines/sku-a"), {"quantity": 1})
    assert response.status_code == 200, response.content
    assert [(line["sku"], line["quantity"]) for line in response.json()["lines"]] == [
        ("SKU-A", 1),
        ("SKU-B", 1),
    ]

    response = writer.put(cart_url(cart.token, "lines/SKU-B"), {"quantity": 0})
    assert response.status_code == 200, response.content
    assert [line["sku"] for line in response.json()["lines"]] == ["SKU-A"]
    assert kinds(customer)[2:] == [
        ("remove_from_cart", "SKU-A", 2),
        ("remove_from_cart", "SKU-B", 1),
    ]


def test_remove_a_line(writer, shop):
    cart = a_cart(shop, ("SKU-A", 3), ("SKU-B", 1))

    response = writer.delete(cart_url(cart.token, "lines/SKU-A"))

    assert response.status_code == 200, response.content
    assert [line["sku"] for line in response.json()["lines"]] == ["SKU-B"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "details"),
    [
        (
            "post",
            "lines",
            {"sku": "NOPE"},
            400,
            "validation_error",
            {"lines": {"0": {"sku": ["Unknown SKU NOPE."]}}},
        ),
        (
            "post",
            "lines",
            {"quantity": 1},
            400,
            "validation_error",
            {"sku": ["This field is required."]},
        ),
        (
            "post",
            "lines",
            {"sku": "SKU-A", "quantity": 0},
            400,
            "validation_error",
            {"quantity": ["Ensure this value is greater than or equal to 1."]},
        ),
        ("put", "lines/SKU-C", {"quantity": 2}, 404, "not_found", {"sku": ["SKU-C is not in it."]}),
        ("put", "lines/NOPE", {"quantity": 2}, 404, "not_found", {"sku": ["Unknown SKU NOPE."]}),
        (
            "put",
            "lines/SKU-A",
            {"quantity": -1},
            400,
            "validation_error",
            {"quantity": ["Ensure this value is greater than or equal to 0."]},
        ),
        (
            "put",
            "lines/SKU-A",
            {},
            400,
            "validation_error",
            {"quantity": ["This field is required."]},
        ),
        ("delete", "lines/SKU-C", None, 404, "not_found", {"sku": ["SKU-C is not in it."]}),
    ],
)
def test_invalid_line_changes_change_nothing(
    writer, shop, method, path, body, status, code, details
):
    cart = a_cart(shop, ("SKU-A", 1))
    before = snapshot()

    response = getattr(writer, method)(cart_url(cart.token, path), body)

    assert assert_error(response, status, code)["details"] == details
    assert snapshot() == before


# --- Identify ---------------------------------------------------------------------------------


def test_identify_an_anonymous_cart(writer, shop):
    cart = a_cart(shop, ("SKU-A", 2))

    response = writer.post(
        cart_url(cart.token, "identify"),
        {"identifiers": [{"kind": "phone", "value": "06 12 34 56 78"}]},
    )

    assert response.status_code == 200, response.content
    customer = Customer.objects.get()
    assert response.json()["customer"] == customer.pk
    assert customer.identities.get().value == "+33612345678"
    assert kinds(customer) == [("add_to_cart", "SKU-A", 2)]


def test_identify_by_customer_id(writer, shop):
    customer = a_customer()
    cart = a_cart(shop, ("SKU-A", 2))

    response = writer.post(cart_url(cart.token, "identify"), {"customer": customer.pk})

    assert response.status_code == 200, response.content
    assert response.json()["customer"] == customer.pk


def test_a_cart_of_one_customer_cannot_pass_to_another(writer, shop):
    cart = a_cart(shop, ("SKU-A", 2), customer=a_customer("ana@example.com"))
    before = snapshot()

    response = writer.post(
        cart_url(cart.token, "identify"),
        {"identifiers": [{"kind": "email", "value": "bob@example.com"}]},
    )

    error = assert_error(response, 409, "cart_owned")
    assert error["details"] == {
        "identifiers": ["These identifiers name another customer than the cart's."]
    }
    assert snapshot() == before


def test_identify_needs_someone(writer, shop):
    cart = a_cart(shop, ("SKU-A", 2))
    before = snapshot()

    response = writer.post(cart_url(cart.token, "identify"), {})

    error = assert_error(response, 400, "validation_error")
    assert error["details"] == {"identifiers": ["At least one identifier."]}
    assert snapshot() == before


# --- Checkout ---------------------------------------------------------------------------------


def checkout_body(**extra) -> dict:
    return {
        "fulfilment_method": "ship",
        "shipping_address": "1 rue de Rivoli, 75001 Paris",
        "contact_name": "Camille Martin",
        **extra,
    }


def test_check_a_cart_out(web_client, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    customer = a_customer()
    cart = a_cart(shop, ("SKU-A", 2), customer=customer)

    response = web_client.post(
        cart_url(cart.token, "checkout"),
        checkout_body(external_reference="WEB-9"),
        HTTP_IDEMPOTENCY_KEY="checkout-1",
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    body = response.json()
    assert (body["number"], body["cart"], body["customer"], body["channel"]) == (
        order.number,
        cart.token,
        customer.pk,
        "web",
    )
    assert (body["status"], body["total"], body["contact_name"], body["external_reference"]) == (
        "placed",
        "20.00",
        "Camille Martin",
        "WEB-9",
    )
    assert stock.row(shop.warehouse, shop.a) == (10, 2)
    cart.refresh_from_db()
    assert cart.status == CartStatus.CONVERTED

    again = web_client.post(
        cart_url(cart.token, "checkout"),
        checkout_body(external_reference="WEB-9"),
        HTTP_IDEMPOTENCY_KEY="checkout-1",
    )
    assert again.status_code == 201
    assert again.json() == body
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1

    shown = web_client.get(cart_url(cart.token)).json()
    assert (shown["status"], shown["order"]) == ("converted", order.number)
    assert shown["closed_at"] is not None


def test_checkout_for_pickup(writer, shop, stock):
    stock.put(shop.lyon, shop.a, 5)
    cart = a_cart(shop, ("SKU-A", 2))

    response = writer.post(
        cart_url(cart.token, "checkout"), {"fulfilment_method": "pickup", "store": "lyon"}
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    assert (response.json()["store"], response.json()["pickup_code"]) == ("lyon", order.pickup_code)
    assert stock.row(shop.lyon, shop.a) == (5, 2)


def test_a_checked_out_order_is_shown_as_it_reads_back(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    cart = a_cart(shop, ("SKU-A", 2))

    response = writer.post(cart_url(cart.token, "checkout"), checkout_body())

    assert response.status_code == 201, response.content
    assert response.json()["cart"] == cart.token
    assert response.json() == writer.get(order_url(response.json()["number"])).json()


def test_a_converted_cart_changes_no_more(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    cart = a_cart(shop, ("SKU-A", 2))
    writer.post(cart_url(cart.token, "checkout"), checkout_body())
    before = snapshot()

    again = writer.post(cart_url(cart.token, "checkout"), checkout_body())
    added = writer.post(cart_url(cart.token, "lines"), {"sku": "SKU-B"})

    assert assert_error(again, 409, "cart_closed")["details"] == {
        "cart": ["The cart is converted."]
    }
    assert assert_error(added, 409, "cart_closed")["details"] == {
        "cart": ["The cart was converted to an order."]
    }
    assert snapshot() == before


def test_checkout_with_short_stock_keeps_the_cart_open(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 1)
    cart = a_cart(shop, ("SKU-A", 2))
    before = snapshot()

    response = writer.post(cart_url(cart.token, "checkout"), checkout_body())

    error = assert_error(response, 409, "insufficient_stock")
    assert error["details"] == {
        "lines": [{"index": 0, "sku": "SKU-A", "requested": 2, "available": 1}]
    }
    assert snapshot() == before
    assert OutboxEvent.objects.filter(type="order.placed").count() == 0


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        ({}, "validation_error", {"fulfilment_method": ["This field is required."]}),
        (
            {"fulfilment_method": "ship"},
            "validation_error",
            {"shipping_address": ["Required to ship."]},
        ),
        (
            {"fulfilment_method": "pickup", "store": "nowhere"},
            "validation_error",
            {"store": ["Unknown location nowhere."]},
        ),
    ],
)
def test_invalid_checkouts_change_nothing(writer, shop, stock, body, code, details):
    stock.put(shop.warehouse, shop.a, 10)
    cart = a_cart(shop, ("SKU-A", 2))
    before = snapshot()

    response = writer.post(cart_url(cart.token, "checkout"), body)

    assert assert_error(response, 400, code)["details"] == details
    assert snapshot() == before


def test_an_empty_cart_cannot_be_checked_out(writer, shop):
    cart = cart_create(channel=shop.web, source="test")

    response = writer.post(cart_url(cart.token, "checkout"), checkout_body())

    assert assert_error(response, 400, "cart_empty")["details"] == {"lines": ["Empty."]}
    assert Order.objects.count() == 0
