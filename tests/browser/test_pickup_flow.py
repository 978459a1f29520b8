"""The click-and-collect promise in a real browser: an order placed through the API appears in
the store's pickup queue, is marked ready, handed over with the customer's code, and the stock
and the customer's timeline show it; and a cart left online becomes a pickup at the counter."""

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from catalog.models import ChannelListing
from customers.models import Touchpoint
from inventory.models import StockLevel
from inventory.services import stock_receive
from omni.services import api_client_create
from orders.models import Order, OrderStatus
from orders.services import cart_create, cart_line_add
from tests.store.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listed(channels, stores, variant):
    ChannelListing.objects.create(
        variant=variant,
        product=variant.product,
        channel=channels["web"],
        is_published=True,
        price=Decimal("39.00"),
        currency="EUR",
    )
    stock_receive(location=stores["a"], variant=variant, quantity=6)
    return variant


def _row(location, variant):
    level = StockLevel.objects.get(location=location, variant=variant)
    return level.on_hand, level.reserved


def test_api_order_is_worked_from_the_queue_to_the_hand_over(
    page, sign_in, live_server, staff_a, stores, listed, channels
):
    import json
    import urllib.request

    _client, token = api_client_create(name="web shop", access="write", channel=channels["web"])
    body = json.dumps(
        {
            "channel": "web",
            "fulfilment_method": "pickup",
            "store": "paris-01",
            "contact_name": "Camille Martin",
            "identifiers": [{"kind": "email", "value": "camille@example.com"}],
            "lines": [{"sku": "LINEN-M", "quantity": 2}],
        }
    ).encode()
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/orders/",
        data=body,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
        placed = json.loads(response.read())
    number, code = placed["number"], placed["pickup_code"]
    assert _row(stores["a"], listed) == (6, 2)

    sign_in("anna", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Pickups").click()
    row = page.get_by_test_id(f"pickup-{number}")
    expect(page.get_by_test_id("to-prepare")).to_contain_text(number)
    expect(row).to_contain_text("Camille Martin")
    expect(row).to_contain_text("2 × Linen Shirt")
    row.get_by_role("button", name="Mark ready").click()
    expect(page.get_by_role("status")).to_contain_text(f"Order {number} is ready")
    ready_row = page.get_by_test_id("ready").get_by_test_id(f"pickup-{number}")
    expect(ready_row).to_be_visible()

    wrong = "000000" if code != "000000" else "111111"
    ready_row.get_by_label(f"Pickup code of {number}").fill(wrong)
    ready_row.get_by_role("button", name="Hand over").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"That is not the pickup code of order {number}."
    )
    assert Order.objects.get(number=number).status == OrderStatus.READY

    # The customer shows the QR code of her confirmation; the scanner types it into the box.
    page.get_by_label("Scan the customer's QR code, or type the order number").fill(
        f"OMNI:{number}:{code}"
    )
    page.get_by_test_id("scan-form").get_by_role("button", name="Hand over").click()
    expect(page.get_by_role("status")).to_contain_text(f"Order {number} handed over: 2 items.")
    expect(page.get_by_test_id("count-ready")).to_have_text("0")

    order = Order.objects.get(number=number)
    assert order.status == OrderStatus.COLLECTED
    assert _row(stores["a"], listed) == (4, 0)
    kinds = list(
        Touchpoint.objects.filter(customer=order.customer)
        .order_by("occurred_at", "pk")
        .values_list("kind", flat=True)
    )
    assert kinds == ["purchase", "pickup"]

    # The stock page and the customer's timeline show it too.
    page.get_by_role("navigation").get_by_role("link", name="Stock").click()
    page.get_by_role("searchbox").fill("LINEN-M")
    page.get_by_role("searchbox").press("Enter")
    expect(page.get_by_test_id("here")).to_contain_text("4 available here")
    page.get_by_role("navigation").get_by_role("link", name="Customers").click()
    page.get_by_role("searchbox").fill("camille@example.com")
    page.get_by_role("searchbox").press("Enter")
    page.get_by_test_id("customers").get_by_role("link").first.click()
    expect(page.get_by_text("Pickup").first).to_be_visible()
    expect(page.locator("body")).to_contain_text(number)


def test_cart_left_online_becomes_a_pickup_at_the_counter(
    page, sign_in, staff_a, stores, listed, channels
):
    from customers.identifiers import Identifier

    cart = cart_create(
        channel=channels["web"],
        identifiers=[Identifier("phone", "+33612345678")],
        source="test",
    )
    cart_line_add(cart=cart, sku="LINEN-M", quantity=3)
    sign_in("anna", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Customers").click()
    page.get_by_role("searchbox").fill("06 12 34 56 78")
    page.get_by_role("searchbox").press("Enter")
    page.get_by_test_id("customers").get_by_role("link").first.click()
    carts = page.locator("#carts")
    expect(carts).to_contain_text("3 × Linen Shirt")
    carts.get_by_role("button", name="Continue as a pickup here").click()
    order = Order.objects.get()
    expect(page.get_by_role("status")).to_contain_text(f"Order {order.number} placed for pickup")
    expect(page.get_by_role("heading", name=f"Order {order.number}")).to_be_visible()
    assert (order.status, order.store_id, order.customer_id) == (
        OrderStatus.PLACED,
        stores["a"].pk,
        cart.customer_id,
    )
    assert _row(stores["a"], listed) == (6, 3)
    page.get_by_role("navigation").get_by_role("link", name="Pickups").click()
    expect(page.get_by_test_id("to-prepare")).to_contain_text(order.number)
