"""Carts and orders with the customer services: merges move them, erasure keeps orders without
personal data, exports include them, and the "has an open cart" segment rule counts them."""

from datetime import timedelta
from decimal import Decimal

import pytest

from customers.identifiers import Identifier
from customers.models import Segment, SegmentRule, Touchpoint
from customers.segments import segment_queryset
from customers.services import customer_erase, customer_export, customer_merge, customer_resolve
from orders.models import Cart, Order
from orders.selectors import open_carts_for_customer, orders_for_customer
from orders.services import (
    LineInput,
    ReturnLineInput,
    cart_create,
    cart_line_add,
    carts_abandon,
    order_collect,
    order_mark_ready,
    order_place,
    order_place_from_cart,
    return_create,
)
from tests.factories import ChannelFactory, ListingFactory
from tests.orders.conftest import lines
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
)

pytestmark = pytest.mark.django_db


def person(email, later=None):
    """A customer known by ``email``; ``later`` (the clock) moves a minute on after her."""
    customer, _ = customer_resolve(identifiers=[Identifier("email", email)], source="test")
    if later is not None:
        later.advance(minutes=1)
    return customer


def pickup_for(shop, stock, customer, quantity=1, **kwargs):
    stock.put(shop.paris, shop.a, quantity)
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", quantity)),
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        customer=customer,
        **kwargs,
    )


def test_a_merge_moves_carts_and_orders_to_the_survivor(shop, stock, clock):
    older = person("old@example.com", clock)
    newer = person("new@example.com", clock)
    old_order = pickup_for(shop, stock, older)
    new_order = pickup_for(shop, stock, newer, quantity=2)
    old_cart = cart_create(channel=shop.web, source="test", customer=older)
    new_cart = cart_create(
        channel=shop.web, source="test", customer=newer, lines=[LineInput("SKU-B", 1)]
    )
    anonymous = cart_create(channel=shop.web, source="test")
    survivor, records = customer_merge(customers=[newer, older], source="test")
    assert survivor == older
    assert records[0].moved["orders.Order"] == 1
    assert records[0].moved["orders.Cart"] == 1
    assert dict(Order.objects.values_list("pk", "customer")) == {
        old_order.pk: older.pk,
        new_order.pk: older.pk,
    }
    assert dict(Cart.objects.values_list("pk", "customer")) == {
        old_cart.pk: older.pk,
        new_cart.pk: older.pk,
        anonymous.pk: None,
    }
    assert [o.pk for o in orders_for_customer(older.pk)] == [new_order.pk, old_order.pk]
    assert {c.pk for c in open_carts_for_customer(older.pk)} == {old_cart.pk, new_cart.pk}
    survivor.refresh_from_db()
    assert (survivor.lifetime_orders, survivor.lifetime_revenue) == (2, Decimal("30.00"))
    # The moved order and cart carry on under the survivor.
    order_mark_ready(order=new_order, source="test")
    order_collect(order=new_order, code=new_order.pickup_code, source="test")
    cart_line_add(cart=new_cart, sku="SKU-C")
    assert list(
        Touchpoint.objects.filter(customer=older, kind__in=["pickup", "add_to_cart"])
        .order_by("pk")
        .values_list("kind", flat=True)
    ) == ["add_to_cart", "pickup", "add_to_cart"]


def test_erase_keeps_orders_without_personal_data(shop, stock, clock):
    customer = person("camille@example.com")
    stock.put(shop.paris, shop.a, 3)
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 1)),
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        customer=customer,
        contact_name="Camille Martin",
        contact_email="camille@example.com",
        contact_phone="+33612345678",
        shipping_address="1 rue X",
        note="Call me",
    )
    cart = cart_create(
        channel=shop.web, source="test", customer=customer, lines=[LineInput("SKU-A", 1)]
    )
    anonymous = cart_create(channel=shop.web, source="test")
    summary = customer_erase(customer=customer, source="test")
    assert summary["orders.Order"] == 1
    assert summary["orders.Cart"] == 1
    order.refresh_from_db()
    assert (order.customer, order.status, order.total) == (customer, "placed", Decimal("10.00"))
    assert (
        order.contact_name,
        order.contact_email,
        order.contact_phone,
        order.shipping_address,
        order.note,
    ) == ("", "", "", "", "")
    assert order.lines.get().sku == "SKU-A"
    assert not Cart.objects.filter(pk=cart.pk).exists()
    assert Cart.objects.filter(pk=anonymous.pk).exists()
    assert Touchpoint.objects.filter(customer=customer).count() == 0
    # The business goes on with the order, without her timeline growing back.
    order_mark_ready(order=order, source="test")
    order_collect(order=order, code=order.pickup_code, source="test")
    return_create(order=order, location=shop.lyon, lines=[ReturnLineInput("1", 1)], source="t")
    order.refresh_from_db()
    assert order.status == "returned"
    assert Touchpoint.objects.filter(customer=customer).count() == 0


def test_export_includes_orders_and_carts(shop, stock, clock):
    customer = person("camille@example.com")
    stock.put(shop.paris, shop.a, 5)
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 2)),
        fulfilment_method="pickup",
        store=shop.paris,
        source="test",
        customer=customer,
        contact_name="Camille",
    )
    cart = cart_create(
        channel=shop.web, source="test", customer=customer, lines=[LineInput("SKU-B", 1)]
    )
    other = person("other@example.com")
    pickup_for(shop, stock, other)
    data = customer_export(customer=customer, source="test")
    assert data["orders.order"] == [
        {
            "number": order.number,
            "channel": "web",
            "status": "placed",
            "fulfilment_method": "pickup",
            "store": "paris",
            "placed_at": T0.isoformat().replace("+00:00", "Z"),
            "currency": "EUR",
            "total": "20.00",
            "refunded_total": "0.00",
            "contact_name": "Camille",
            "contact_email": "",
            "contact_phone": "",
            "shipping_address": "",
            "lines": [
                {
                    "sku": "SKU-A",
                    "title": order.lines.get().title,
                    "quantity": 2,
                    "unit_price": "10.00",
                    "returned_quantity": 0,
                }
            ],
        }
    ]
    assert [row["token"] for row in data["orders.cart"]] == [cart.token]


@pytest.fixture
def cart_people(shop, clock):
    """Ana: open web carts; Bob: open app carts; Cleo: a converted cart; Dan: an abandoned
    cart; Eve: no cart; and an anonymous cart."""
    app = ChannelFactory(code="app", kind="app")
    ListingFactory(variant=shop.a, channel=app, price=Decimal("9.00"))
    people = {name: person(f"{name}@example.com") for name in ("ana", "bob", "cleo", "dan", "eve")}
    cart_create(channel=shop.web, source="t", customer=people["ana"])
    cart_create(channel=shop.web, source="t", customer=people["ana"])  # two open: counted once
    cart_create(channel=app, source="t", customer=people["bob"])
    converted = cart_create(channel=shop.web, source="t", customer=people["cleo"])
    Cart.objects.filter(pk=converted.pk).update(status="converted", closed_at=clock.now)
    cart_create(channel=shop.web, source="t", customer=people["dan"])
    cart_create(channel=app, source="t", customer=people["bob"])
    cart_create(channel=shop.web, source="t")  # anonymous
    Cart.objects.filter(customer=people["dan"]).update(last_activity_at=T0 - timedelta(days=60))
    assert carts_abandon() == 1
    assert set(Cart.objects.filter(customer=people["dan"]).values_list("status", flat=True)) == {
        "abandoned"
    }
    people["app"] = app
    return people


def _members(rule_kwargs):
    segment = Segment.objects.create(name=f"s-{Segment.objects.count()}")
    SegmentRule.objects.create(segment=segment, kind="has_open_cart", **rule_kwargs)
    return set(segment_queryset(segment).values_list("pk", flat=True))


def test_has_open_cart_segment_rule(shop, cart_people):
    p = cart_people
    ids = {name: c.pk for name, c in p.items() if name != "app"}
    assert _members({}) == {ids["ana"], ids["bob"]}
    assert _members({"channel": shop.web}) == {ids["ana"]}
    assert _members({"channel": p["app"]}) == {ids["bob"]}
    assert _members({"negate": True}) == {ids["cleo"], ids["dan"], ids["eve"]}
    assert _members({"channel": shop.web, "negate": True}) == {
        ids["bob"],
        ids["cleo"],
        ids["dan"],
        ids["eve"],
    }
    segment = Segment.objects.create(name="count")
    SegmentRule.objects.create(segment=segment, kind="has_open_cart")
    assert segment_queryset(segment).count() == 2


def test_has_open_cart_follows_checkout_merges_and_erasure(shop, stock, cart_people, clock):
    p = cart_people
    web_rule = {"channel": shop.web}
    # Ana checks one cart out: her other open web cart keeps her in.
    stock.put(shop.paris, shop.a, 5)
    first, second = Cart.objects.filter(customer=p["ana"], status="open").order_by("pk")
    cart_line_add(cart=first, sku="SKU-A")
    order_place_from_cart(cart=first, fulfilment_method="pickup", store=shop.paris, source="t")
    assert _members(web_rule) == {p["ana"].pk}
    cart_line_add(cart=second, sku="SKU-A")
    order_place_from_cart(cart=second, fulfilment_method="pickup", store=shop.paris, source="t")
    assert _members(web_rule) == set()
    # Dan comes back to his abandoned cart.
    cart_line_add(cart=Cart.objects.get(customer=p["dan"]), sku="SKU-B")
    assert _members(web_rule) == {p["dan"].pk}
    # Eve turns out to be Dan (she is newer): his cart stays his, and she is gone.
    survivor, _ = customer_merge(customers=[p["eve"], p["dan"]], source="t")
    assert survivor == p["dan"]
    assert _members({"negate": True}) == {p["ana"].pk, p["cleo"].pk}
    # Bob is erased: his carts go with his data, and erased customers match no segment.
    customer_erase(customer=p["bob"], source="t")
    assert _members({}) == {p["dan"].pk}
    assert _members({"negate": True}) == {p["ana"].pk, p["cleo"].pk}
    assert Cart.objects.filter(customer__isnull=True, status="open").count() == 1
