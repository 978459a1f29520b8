"""Till sales through the API: an in-store order on a POS channel, a sale at the store, the
purchase on the customer's timeline, and a replayed receipt refused."""

import pytest

from customers.models import Customer, Touchpoint
from inventory.models import StockMovement
from omni.models import ChannelKind
from orders.models import Order
from tests.factories import ChannelFactory
from tests.orders.api_fixtures import (
    POS_SALES,
    assert_error,
    iso,
    snapshot,
    source_of,
    till_client_fixture,  # noqa: F401
)

pytestmark = pytest.mark.django_db


def sale(**extra) -> dict:
    return {
        "store": "paris",
        "lines": [
            {"sku": "SKU-A", "quantity": 2},
            {"sku": "sku-b", "quantity": 1, "unit_price": "20.00"},
        ],
        "receipt": "PARIS-T1-0001",
        **extra,
    }


def test_a_till_records_a_sale(till_client, shop, stock):
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.paris, shop.b, 5)

    response = till_client.post(
        POS_SALES, sale(identifiers=[{"kind": "phone", "value": "06 12 34 56 78"}])
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    customer = Customer.objects.get()
    body = response.json()
    source = source_of(till_client)
    assert {k: body[k] for k in ("number", "channel", "customer", "external_reference")} == {
        "number": order.number,
        "channel": "store",
        "customer": customer.pk,
        "external_reference": "PARIS-T1-0001",
    }
    assert (body["status"], body["fulfilment_method"], body["store"]) == (
        "completed",
        "in_store",
        "paris",
    )
    assert (body["subtotal"], body["total"], body["currency"]) == ("42.00", "42.00", "EUR")
    assert [(line["sku"], line["quantity"], line["unit_price"]) for line in body["lines"]] == [
        ("SKU-A", 2, "11.00"),
        ("SKU-B", 1, "20.00"),
    ]
    assert (body["pickup_code"], body["confirmation_url"], body["closed_at"]) == (
        None,
        None,
        iso(order.placed_at),
    )
    assert body["fulfilments"] == [
        {
            "method": "in_store",
            "location": "paris",
            "units": 3,
            "carrier": "",
            "tracking_number": "",
            "created_at": iso(order.placed_at),
            "actor": None,
        }
    ]
    assert body["history"] == [
        {
            "from_status": None,
            "to_status": "completed",
            "at": iso(order.placed_at),
            "source": source,
            "actor": None,
            "note": "Placed",
        }
    ]
    assert stock.row(shop.paris, shop.a) == (3, 0)
    assert stock.row(shop.paris, shop.b) == (4, 0)
    assert Touchpoint.objects.get(customer=customer).kind == "purchase"


def test_a_replayed_receipt_is_a_duplicate_naming_the_first_order(till_client, shop, stock):
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.paris, shop.b, 5)
    first = till_client.post(POS_SALES, sale()).json()["number"]
    before = snapshot()

    response = till_client.post(POS_SALES, sale())

    error = assert_error(response, 409, "duplicate_order")
    assert error["details"] == {
        "external_reference": [f"Already placed as {first}."],
        "order": first,
    }
    assert error["message"] == f"store order PARIS-T1-0001 was placed already as {first}."
    assert snapshot() == before


def test_a_sale_with_the_same_idempotency_key_is_replayed(till_client, shop, stock):
    first = till_client.post(POS_SALES, sale(), HTTP_IDEMPOTENCY_KEY="sale-1")
    again = till_client.post(POS_SALES, sale(), HTTP_IDEMPOTENCY_KEY="sale-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


def test_a_sale_on_an_empty_shelf_is_accepted(till_client, shop, stock):
    response = till_client.post(POS_SALES, sale(receipt=""))

    assert response.status_code == 201, response.content
    assert response.json()["external_reference"] is None
    assert stock.row(shop.paris, shop.a) == (-2, 0)
    assert StockMovement.objects.filter(kind="sale", location=shop.paris).count() == 2


def test_an_unbound_client_sells_on_the_pos_channel_by_default(writer, shop):
    response = writer.post(POS_SALES, sale())

    assert response.status_code == 201, response.content
    assert response.json()["channel"] == "store"


def test_an_unbound_client_may_name_another_pos_channel(writer, shop):
    ChannelFactory(code="outlet", kind=ChannelKind.STORE_POS)

    response = writer.post(
        POS_SALES,
        sale(channel="outlet", lines=[{"sku": "SKU-A", "quantity": 1, "unit_price": "5.00"}]),
    )

    assert response.status_code == 201, response.content
    assert (response.json()["channel"], response.json()["total"]) == ("outlet", "5.00")


def test_staff_record_a_sale(staff_api, staff_user, shop):
    response = staff_api.post(POS_SALES, sale())

    assert response.status_code == 201, response.content
    assert response.json()["history"][0]["actor"] == "merch"
    assert response.json()["source"] == f"user:{staff_user.pk}"


@pytest.mark.parametrize(
    ("change", "code", "details"),
    [
        ({"channel": "web"}, "not_a_pos_channel", {"channel": ["web is not a POS channel."]}),
        ({"channel": "nope"}, "validation_error", {"channel": ["Unknown channel nope."]}),
        ({"store": "nowhere"}, "validation_error", {"store": ["Unknown location nowhere."]}),
        ({"store": None}, "validation_error", {"store": ["This field may not be null."]}),
        (
            {"lines": [{"sku": "SKU-A", "quantity": 1, "unit_price": "-1.00"}]},
            "validation_error",
            {"lines": {"0": {"unit_price": ["A positive amount."]}}},
        ),
        (
            {"lines": [{"sku": "SKU-A", "quantity": 1, "unit_price": "lots"}]},
            "validation_error",
            {"lines": {"0": {"unit_price": ["A valid number is required."]}}},
        ),
        (
            {"identifiers": [{"kind": "phone", "value": "call me"}]},
            "validation_error",
            {"identifiers": {"0": ["'call me' is not a phone number."]}},
        ),
    ],
)
def test_invalid_sales_change_nothing(writer, shop, change, code, details):
    before = snapshot()

    response = writer.post(POS_SALES, sale(**change))

    assert assert_error(response, 400, code)["details"] == details
    assert snapshot() == before
