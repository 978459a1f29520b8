"""'Continue the cart she left online' at the counter."""

from decimal import Decimal

import pytest

from catalog.models import ChannelListing
from customers.identifiers import Identifier
from inventory.models import StockLevel
from orders.models import Cart, CartStatus, Order, OrderStatus
from orders.services import cart_create, cart_line_add
from tests.store.conftest import url

pytestmark = pytest.mark.django_db


@pytest.fixture
def cart(channels, stores, variant):
    from inventory.services import stock_receive

    ChannelListing.objects.create(
        variant=variant,
        product=variant.product,
        channel=channels["web"],
        is_published=True,
        price=Decimal("30.00"),
        currency="EUR",
    )
    stock_receive(location=stores["a"], variant=variant, quantity=5)
    cart = cart_create(
        channel=channels["web"], identifiers=[Identifier("email", "cam@example.com")], source="t"
    )
    cart_line_add(cart=cart, sku="LINEN-M", quantity=2)
    return cart


def test_cart_becomes_a_pickup_here(client_a, stores, variant, cart):
    response = client_a.post(
        url("cart_continue", stores["a"], cart.token), {"fulfilment_method": "pickup"}
    )
    order = Order.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("pickup", stores["a"], order.number)
    assert (order.status, order.store, order.customer_id) == (
        OrderStatus.PLACED,
        stores["a"],
        cart.customer_id,
    )
    assert Cart.objects.get(pk=cart.pk).status == CartStatus.CONVERTED
    level = StockLevel.objects.get(location=stores["a"], variant=variant)
    assert (level.on_hand, level.reserved) == (5, 2)


def test_cart_becomes_an_in_store_sale(client_a, stores, variant, cart):
    client_a.post(url("cart_continue", stores["a"], cart.token), {"fulfilment_method": "in_store"})
    order = Order.objects.get()
    assert order.status == OrderStatus.COMPLETED
    level = StockLevel.objects.get(location=stores["a"], variant=variant)
    assert (level.on_hand, level.reserved) == (3, 0)


def test_bad_choice_and_converted_cart_change_nothing(client_a, stores, cart):
    response = client_a.post(
        url("cart_continue", stores["a"], cart.token), {"fulfilment_method": "ship"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Choose pickup at this store or an in-store sale."
    ]
    client_a.post(
        url("cart_continue", stores["a"], cart.token),
        {"fulfilment_method": "in_store"},
        follow=True,
    )
    response = client_a.post(
        url("cart_continue", stores["a"], cart.token), {"fulfilment_method": "pickup"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        "This cart is converted to an order; it cannot become an order. The cart is converted."
    ]
    assert Order.objects.count() == 1


def test_staff_of_another_store_is_refused(client_b, stores, cart):
    response = client_b.post(
        url("cart_continue", stores["a"], cart.token), {"fulfilment_method": "pickup"}
    )
    assert response.status_code == 403
    assert Order.objects.count() == 0
    assert Cart.objects.get(pk=cart.pk).status == CartStatus.OPEN
