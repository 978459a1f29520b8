"""Carts: anonymous and identified, their changes on the timeline, abandonment, and checkout."""

from datetime import timedelta
from decimal import Decimal

import pytest

from catalog.models import ChannelListing
from customers.identifiers import Identifier
from customers.models import Customer, CustomerMerge, Touchpoint
from customers.services import customer_resolve
from omni.exceptions import Conflict, NotFound, ValidationFailed
from orders.models import Cart, CartLine, Order
from orders.services import (
    LineInput,
    cart_create,
    cart_identify,
    cart_line_add,
    cart_line_remove,
    cart_line_update,
    carts_abandon,
    order_place_from_cart,
)
from tests.factories import ChannelFactory, ListingFactory, VariantFactory
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
    snapshot,
)

pytestmark = pytest.mark.django_db

EMAIL = Identifier("email", "camille@example.com")


def cart_lines(cart):
    return list(
        CartLine.objects.filter(cart=cart)
        .order_by("variant__sku")
        .values_list("variant__sku", "quantity", "unit_price")
    )


def timeline(customer):
    return list(
        Touchpoint.objects.filter(customer=customer)
        .order_by("occurred_at", "pk")
        .values_list("kind", "properties__sku", "properties__quantity")
    )


def test_create_anonymous_cart(shop, clock):
    cart = cart_create(channel=shop.web, source="client:2", external_reference=" web-77 ")
    cart.refresh_from_db()
    assert (cart.status, cart.customer, cart.currency, cart.external_reference) == (
        "open",
        None,
        "EUR",
        "web-77",
    )
    assert (cart.created_at, cart.last_activity_at, cart.closed_at) == (T0, T0, None)
    assert len(cart.token) == 32
    assert Customer.objects.count() == 0
    assert Touchpoint.objects.count() == 0


def test_create_identified_cart_with_lines(shop, clock):
    cart = cart_create(
        channel=shop.web,
        source="test",
        identifiers=[EMAIL],
        lines=[LineInput("SKU-A", 2), LineInput("sku-b", 1), LineInput("SKU-A", 1)],
    )
    customer = Customer.objects.get()
    assert cart.customer == customer
    assert cart_lines(cart) == [("SKU-A", 3, Decimal("10.00")), ("SKU-B", 1, Decimal("25.50"))]
    assert timeline(customer) == [("add_to_cart", "SKU-A", 3), ("add_to_cart", "SKU-B", 1)]
    touchpoint = Touchpoint.objects.filter(customer=customer).first()
    assert (touchpoint.channel, touchpoint.source, touchpoint.occurred_at) == (
        shop.web,
        "orders",
        T0,
    )
    assert touchpoint.properties["cart"] == cart.token


def test_create_refuses_bad_lines_and_non_sales_channels(shop):
    before = snapshot()
    with pytest.raises(ValidationFailed) as refused:
        cart_create(
            channel=shop.web, source="test", identifiers=[EMAIL], lines=[LineInput("NOPE", 1)]
        )
    assert refused.value.extra == {"lines": {"0": {"sku": ["Unknown SKU NOPE."]}}}
    email = ChannelFactory(code="email", kind="email", currency="")
    with pytest.raises(ValidationFailed) as refused:
        cart_create(channel=email, source="test")
    assert refused.value.code == "not_a_sales_channel"
    assert snapshot() == before


def test_add_update_remove_on_an_identified_cart(shop, clock):
    cart = cart_create(channel=shop.web, source="test", identifiers=[EMAIL])
    customer = cart.customer
    clock.advance(minutes=1)
    line = cart_line_add(cart=cart, sku="SKU-A", quantity=2)
    assert (line.quantity, line.unit_price, line.added_at) == (2, Decimal("10.00"), clock.now)
    clock.advance(minutes=1)
    line = cart_line_add(cart=cart, sku="sku-a")
    assert line.quantity == 3
    cart_line_add(cart=cart, sku="SKU-C", quantity=5)
    clock.advance(minutes=1)
    line = cart_line_update(cart=cart, sku="SKU-A", quantity=1)
    assert line.quantity == 1
    assert cart_line_update(cart=cart, sku="SKU-C", quantity=5).quantity == 5  # no change
    clock.advance(minutes=1)
    assert cart_line_update(cart=cart, sku="SKU-C", quantity=0) is None
    cart_line_add(cart=cart, sku="SKU-B")
    cart_line_remove(cart=cart, sku="SKU-B")
    assert cart_lines(cart) == [("SKU-A", 1, Decimal("10.00"))]
    assert timeline(customer) == [
        ("add_to_cart", "SKU-A", 2),
        ("add_to_cart", "SKU-A", 1),
        ("add_to_cart", "SKU-C", 5),
        ("remove_from_cart", "SKU-A", 2),
        ("remove_from_cart", "SKU-C", 5),
        ("add_to_cart", "SKU-B", 1),
        ("remove_from_cart", "SKU-B", 1),
    ]
    cart.refresh_from_db()
    assert cart.last_activity_at == T0 + timedelta(minutes=4)


def test_anonymous_cart_changes_leave_no_touchpoints(shop):
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 1)])
    cart_line_add(cart=cart, sku="SKU-B", quantity=2)
    cart_line_update(cart=cart, sku="SKU-B", quantity=3)
    cart_line_remove(cart=cart, sku="SKU-A")
    assert cart_lines(cart) == [("SKU-B", 3, Decimal("25.50"))]
    assert Touchpoint.objects.count() == 0
    assert Customer.objects.count() == 0


def test_line_errors(shop):
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 1)])
    before = snapshot()
    with pytest.raises(NotFound) as missing:
        cart_line_update(cart=cart, sku="SKU-B", quantity=2)
    assert missing.value.extra == {"sku": ["SKU-B is not in it."]}
    with pytest.raises(NotFound):
        cart_line_remove(cart=cart, sku="SKU-C")
    with pytest.raises(NotFound):
        cart_line_remove(cart=cart, sku="NOPE")
    for bad in (-1, "x", 1_000_001):
        with pytest.raises(ValidationFailed):
            cart_line_update(cart=cart, sku="SKU-A", quantity=bad)
        with pytest.raises(ValidationFailed):
            cart_line_add(cart=cart, sku="SKU-A", quantity=bad)
    with pytest.raises(ValidationFailed) as zero:
        cart_line_add(cart=cart, sku="SKU-A", quantity=0)
    assert zero.value.extra == {"lines": {"0": {"quantity": ["Must be at least 1."]}}}
    unlisted = VariantFactory(sku="SKU-POS-ONLY")
    ListingFactory(variant=unlisted, channel=shop.pos)
    with pytest.raises(ValidationFailed) as not_listed:
        cart_line_add(cart=cart, sku="SKU-POS-ONLY")
    assert not_listed.value.extra == {"lines": {"0": {"sku": ["SKU-POS-ONLY is not sold on web."]}}}
    dollars = VariantFactory(sku="SKU-USD")
    ListingFactory(variant=dollars, channel=shop.web, currency="USD")
    with pytest.raises(ValidationFailed) as mixed:
        cart_line_add(cart=cart, sku="SKU-USD")
    assert mixed.value.code == "mixed_currencies"
    assert snapshot() == before


def test_identify_brings_the_anonymous_lines_to_the_timeline_once(shop, clock):
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 2)])
    clock.advance(minutes=5)
    cart_line_add(cart=cart, sku="SKU-B")
    clock.advance(minutes=5)
    identified = cart_identify(cart=cart, source="test", identifiers=[EMAIL])
    customer = Customer.objects.get()
    assert identified.customer == customer
    assert list(
        Touchpoint.objects.filter(customer=customer)
        .order_by("occurred_at", "pk")
        .values_list("kind", "properties__sku", "properties__quantity", "occurred_at")
    ) == [
        ("add_to_cart", "SKU-A", 2, T0),
        ("add_to_cart", "SKU-B", 1, T0 + timedelta(minutes=5)),
    ]
    before = snapshot()
    cart_identify(cart=cart, source="test", identifiers=[EMAIL])
    after = snapshot()
    assert after["customers.Touchpoint"] == before["customers.Touchpoint"]
    assert after["customers.Customer"][0]["lifetime_orders"] == 0
    # From now on her changes are on her timeline.
    cart_line_add(cart=cart, sku="SKU-C")
    assert Touchpoint.objects.filter(customer=customer).count() == 3


def test_identify_needs_someone(shop):
    cart = cart_create(channel=shop.web, source="test")
    with pytest.raises(ValidationFailed) as refused:
        cart_identify(cart=cart, source="test", identifiers=[])
    assert refused.value.extra == {"identifiers": ["At least one identifier."]}


def test_a_cart_of_one_customer_does_not_pass_to_another(shop):
    cart = cart_create(channel=shop.web, source="test", identifiers=[EMAIL])
    other = Identifier("email", "someone@example.com")
    customer_resolve(identifiers=[other], source="test")
    before = snapshot()
    with pytest.raises(Conflict) as refused:
        cart_identify(cart=cart, source="test", identifiers=[other])
    assert refused.value.code == "cart_owned"
    assert snapshot() == before


def test_identifiers_naming_the_cart_owner_and_another_merge_them(shop, clock):
    newer_phone = Identifier("phone", "+33612345678")
    older, _ = customer_resolve(identifiers=[newer_phone], source="test")
    clock.advance(hours=1)
    cart = cart_create(channel=shop.web, source="test", identifiers=[EMAIL])
    owner = cart.customer
    assert owner != older
    identified = cart_identify(cart=cart, source="test", identifiers=[EMAIL, newer_phone])
    assert identified.customer == older
    cart.refresh_from_db()
    assert cart.customer == older
    assert CustomerMerge.objects.get().merged_customer_id == owner.pk


def test_a_converted_cart_refuses_changes(shop, stock):
    stock.put(shop.paris, shop.a, 5)
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 1)])
    order_place_from_cart(cart=cart, fulfilment_method="pickup", store=shop.paris, source="t")
    before = snapshot()
    for change in (
        lambda: cart_line_add(cart=cart, sku="SKU-B"),
        lambda: cart_line_update(cart=cart, sku="SKU-A", quantity=3),
        lambda: cart_line_remove(cart=cart, sku="SKU-A"),
        lambda: cart_identify(cart=cart, source="test", identifiers=[EMAIL]),
    ):
        with pytest.raises(Conflict) as refused:
            change()
        assert refused.value.code == "cart_closed"
        assert refused.value.extra == {"cart": ["The cart was converted to an order."]}
    assert snapshot() == before


def test_an_abandoned_cart_reopens_on_change(shop, clock):
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 1)])
    clock.advance(days=31)
    assert carts_abandon() == 1
    cart.refresh_from_db()
    assert (cart.status, cart.closed_at) == ("abandoned", T0 + timedelta(days=31))
    clock.advance(days=1)
    cart_line_add(cart=cart, sku="SKU-B")
    cart.refresh_from_db()
    assert (cart.status, cart.closed_at, cart.last_activity_at) == (
        "open",
        None,
        T0 + timedelta(days=32),
    )
    # Each kind of change reopens it.
    for change in (
        lambda: cart_line_update(cart=cart, sku="SKU-B", quantity=2),
        lambda: cart_line_remove(cart=cart, sku="SKU-B"),
        lambda: cart_identify(cart=cart, source="test", identifiers=[EMAIL]),
    ):
        Cart.objects.filter(pk=cart.pk).update(status="abandoned", closed_at=clock.now)
        change()
        cart.refresh_from_db()
        assert (cart.status, cart.closed_at) == ("open", None)


def test_carts_abandon_uses_the_idle_days_setting_and_is_idempotent(shop, clock, settings):
    settings.OMNI_CART_ABANDON_DAYS = 7
    idle = cart_create(channel=shop.web, source="test")
    clock.advance(days=2)
    recent = cart_create(channel=shop.web, source="test")
    clock.advance(days=5)  # idle: 7 days exactly, not more
    assert carts_abandon() == 0
    clock.advance(seconds=1)
    assert carts_abandon() == 1
    assert carts_abandon() == 0
    assert dict(Cart.objects.values_list("pk", "status")) == {
        idle.pk: "abandoned",
        recent.pk: "open",
    }
    assert carts_abandon(idle_days=1) == 1
    assert carts_abandon(idle_days=1) == 0
    assert Cart.objects.get(pk=recent.pk).closed_at == clock.now
    # A converted cart is never abandoned.
    converted = cart_create(channel=shop.web, source="test")
    Cart.objects.filter(pk=converted.pk).update(status="converted", closed_at=clock.now)
    clock.advance(days=100)
    assert carts_abandon() == 0


def test_carts_abandon_works_in_batches(shop, clock):
    for _ in range(5):
        cart_create(channel=shop.web, source="test")
    clock.advance(days=40)
    assert carts_abandon(limit=2) == 2
    assert carts_abandon(limit=2) == 2
    assert carts_abandon(limit=2) == 1
    assert carts_abandon(limit=2) == 0


def test_checkout_converts_the_cart(shop, stock, clock):
    stock.put(shop.warehouse, shop.a, 5)
    cart = cart_create(channel=shop.web, source="test", identifiers=[EMAIL])
    cart_line_add(cart=cart, sku="SKU-A", quantity=2)
    # The listing price changed since: the order takes the price of the day.
    ChannelListing.objects.filter(variant=shop.a, channel=shop.web).update(price=Decimal("12.00"))
    clock.advance(hours=1)
    order = order_place_from_cart(
        cart=cart, fulfilment_method="ship", shipping_address="1 rue X", source="client:1"
    )
    assert (order.cart, order.customer, order.total) == (cart, cart.customer, Decimal("24.00"))
    cart.refresh_from_db()
    assert (cart.status, cart.closed_at, cart.last_activity_at) == (
        "converted",
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=1),
    )
    before = snapshot()
    with pytest.raises(Conflict) as closed:
        order_place_from_cart(
            cart=cart, fulfilment_method="ship", shipping_address="1 rue X", source="client:1"
        )
    assert closed.value.code == "cart_closed"
    assert closed.value.extra == {"cart": ["The cart is converted."]}
    assert snapshot() == before


def test_checkout_of_an_anonymous_cart_with_identifiers_names_the_cart_customer(shop, stock):
    stock.put(shop.warehouse, shop.a, 5)
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 1)])
    order = order_place_from_cart(
        cart=cart,
        fulfilment_method="ship",
        shipping_address="1 rue X",
        source="test",
        identifiers=[EMAIL],
    )
    cart.refresh_from_db()
    assert order.customer is not None
    assert cart.customer == order.customer


def test_checkout_of_an_empty_cart_is_refused(shop):
    cart = cart_create(channel=shop.web, source="test")
    before = snapshot()
    with pytest.raises(ValidationFailed) as empty:
        order_place_from_cart(cart=cart, fulfilment_method="pickup", store=shop.paris, source="t")
    assert (empty.value.code, empty.value.extra) == ("cart_empty", {"lines": ["Empty."]})
    assert snapshot() == before


def test_checkout_of_an_abandoned_cart_is_refused(shop, clock):
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 1)])
    clock.advance(days=60)
    carts_abandon()
    with pytest.raises(Conflict) as closed:
        order_place_from_cart(cart=cart, fulfilment_method="pickup", store=shop.paris, source="t")
    assert closed.value.code == "cart_closed"
    assert Order.objects.count() == 0


def test_a_refused_checkout_keeps_the_cart_open(shop, stock):
    cart = cart_create(channel=shop.web, source="test", lines=[LineInput("SKU-A", 3)])
    before = snapshot()
    with pytest.raises(Conflict) as short:
        order_place_from_cart(cart=cart, fulfilment_method="pickup", store=shop.paris, source="t")
    assert short.value.code == "insufficient_stock"
    assert snapshot() == before
    assert Cart.objects.get(pk=cart.pk).status == "open"
