"""Placing orders: sourcing by fulfilment method and the channel's strategy, prices, totals,
customers and their timeline, and every way a placement is refused (changing nothing)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from customers.identifiers import Identifier
from customers.models import Customer, CustomerMerge, Identity, Touchpoint
from customers.services import customer_resolve
from inventory.models import (
    ChannelStockPolicy,
    Reservation,
    StockCount,
    StockMovement,
    Transfer,
)
from omni.exceptions import Conflict, InsufficientStock, ValidationFailed
from omni.models import OutboxEvent
from orders.models import Fulfilment, Order, OrderLine, OrderStatusChange
from orders.services import LineInput, order_place
from tests.factories import (
    ChannelFactory,
    ListingFactory,
    LocationFactory,
    StockRuleFactory,
    VariantFactory,
)
from tests.orders.conftest import lines
from tests.orders.service_fixtures import (
    T0,
    clock_fixture,  # noqa: F401 - the clock fixture
    counts,
    events,
    held,
    history,
    snapshot,
)

pytestmark = pytest.mark.django_db

ADDRESS = "1 rue de Rivoli, 75001 Paris"


def ship(shop, *pairs, **kwargs):
    kwargs.setdefault("shipping_address", ADDRESS)
    return order_place(
        channel=kwargs.pop("channel", shop.web),
        lines=lines(*pairs),
        fulfilment_method="ship",
        source=kwargs.pop("source", "test"),
        **kwargs,
    )


def pickup(shop, *pairs, store=None, **kwargs):
    return order_place(
        channel=kwargs.pop("channel", shop.web),
        lines=lines(*pairs),
        fulfilment_method="pickup",
        store=store or shop.paris,
        source=kwargs.pop("source", "test"),
        **kwargs,
    )


def strategy(shop, name):
    ChannelStockPolicy.objects.update_or_create(
        channel=shop.web, defaults={"allocation_strategy": name}
    )


# --- Shipping: the channel's allocation strategy ----------------------------------------------


def test_ship_by_priority_splits_over_locations(shop, stock):
    stock.put(shop.warehouse, shop.a, 3)
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.lyon, shop.a, 5)
    stock.put(shop.lyon, shop.b, 1)
    order = ship(shop, ("SKU-A", 4), ("SKU-B", 1))
    assert order.status == "placed"
    assert held(order) == [("lyon", 2, 1, False), ("paris", 1, 1, False), ("wh", 1, 3, False)]
    assert stock.row(shop.warehouse, shop.a) == (3, 3)
    assert stock.row(shop.paris, shop.a) == (5, 1)
    assert stock.row(shop.lyon, shop.a) == (5, 0)
    assert stock.row(shop.lyon, shop.b) == (1, 1)
    assert set(
        Reservation.objects.filter(reference=order.number).values_list("kind", "channel")
    ) == {("order_line", shop.web.pk)}
    assert Transfer.objects.count() == 0


def test_ship_with_an_explicit_priority_policy(shop, stock):
    strategy(shop, "priority")
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.lyon, shop.a, 5)
    order = ship(shop, ("SKU-A", 2), near=(45.76, 4.84))
    assert held(order) == [("paris", 1, 2, False)]


def test_ship_nearest_serves_from_the_closest_locations_first(shop, stock):
    strategy(shop, "nearest")
    stock.put(shop.warehouse, shop.a, 5)
    stock.put(shop.paris, shop.a, 1)
    stock.put(shop.lyon, shop.a, 2)
    # From Lyon: lyon (0 km), paris (392 km), the warehouse (395 km).
    order = ship(shop, ("SKU-A", 4), near=(45.76, 4.84))
    assert held(order) == [("lyon", 1, 2, False), ("paris", 1, 1, False), ("wh", 1, 1, False)]
    # From north of Paris: the warehouse (1.3 km) first.
    order = ship(shop, ("SKU-A", 2), near=(48.91, 2.41))
    assert held(order) == [("wh", 1, 2, False)]


def test_ship_nearest_without_a_destination_falls_back_to_priority(shop, stock):
    strategy(shop, "nearest")
    stock.put(shop.paris, shop.a, 5)
    stock.put(shop.lyon, shop.a, 5)
    order = ship(shop, ("SKU-A", 2))
    assert held(order) == [("paris", 1, 2, False)]


def test_ship_most_stock_serves_from_the_fullest_location(shop, stock):
    strategy(shop, "most_stock")
    stock.put(shop.warehouse, shop.a, 2)
    stock.put(shop.paris, shop.a, 3)
    stock.put(shop.lyon, shop.a, 6)
    order = ship(shop, ("SKU-A", 7))
    assert held(order) == [("lyon", 1, 6, False), ("paris", 1, 1, False)]


def test_ship_respects_safety_stock(shop, stock):
    shop.warehouse.safety_stock = 2
    shop.warehouse.save()
    stock.put(shop.warehouse, shop.a, 5)
    stock.put(shop.paris, shop.a, 1)
    order = ship(shop, ("SKU-A", 4))
    assert held(order) == [("paris", 1, 1, False), ("wh", 1, 3, False)]


# --- Pickup ------------------------------------------------------------------------------------


def test_pickup_with_stock_at_the_store_is_pinned_there(shop, stock, clock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.paris, shop.a, 2)
    stock.put(shop.paris, shop.b, 1)
    order = pickup(shop, ("SKU-A", 2), ("SKU-B", 1))
    assert order.status == "placed"
    assert len(order.pickup_code) == 6 and order.pickup_code.isdigit()
    assert order.qr_payload == f"OMNI:{order.number}:{order.pickup_code}"
    assert order.expected_ready_at is None
    assert held(order) == [("paris", 1, 2, True), ("paris", 2, 1, True)]
    assert stock.row(shop.warehouse, shop.a) == (10, 0)
    assert Transfer.objects.count() == 0
    assert history(order) == [("", "placed")]
    assert events(order) == ["order.placed"]


def test_pickup_partly_by_transfer_from_the_nearest_location(shop, stock, clock):
    stock.put(shop.paris, shop.a, 1)
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.lyon, shop.a, 10)
    order = pickup(shop, ("SKU-A", 3))
    assert order.status == "awaiting_transfer"
    assert order.expected_ready_at == T0 + timedelta(hours=48)
    transfer = Transfer.objects.get()
    assert (transfer.from_location, transfer.to_location, transfer.status) == (
        shop.warehouse,
        shop.paris,
        "requested",
    )
    assert (transfer.reference, transfer.expected_at) == (order.number, T0 + timedelta(hours=48))
    assert list(transfer.lines.values_list("variant__sku", "quantity")) == [("SKU-A", 2)]
    line = OrderLine.objects.get(order=order)
    assert (line.quantity, line.transfer, line.transfer_quantity) == (3, transfer, 2)
    assert held(order) == [("paris", 1, 1, True)]
    hold = Reservation.objects.get(reference=f"transfer:{transfer.number}")
    assert (hold.location, hold.quantity, hold.kind, hold.status) == (
        shop.warehouse,
        2,
        "transfer",
        "active",
    )
    assert stock.row(shop.warehouse, shop.a) == (10, 2)
    assert stock.row(shop.lyon, shop.a) == (10, 0)
    assert history(order) == [("", "awaiting_transfer")]


def test_pickup_transfer_comes_from_the_nearest_location_with_all_of_the_rest(shop, stock):
    stock.put(shop.warehouse, shop.a, 1)  # nearest, but not enough
    stock.put(shop.lyon, shop.a, 4)
    order = pickup(shop, ("SKU-A", 3))
    transfer = Transfer.objects.get()
    assert transfer.from_location == shop.lyon
    assert list(transfer.lines.values_list("quantity", flat=True)) == [3]
    assert held(order) == []
    assert stock.row(shop.lyon, shop.a) == (4, 3)
    assert stock.row(shop.warehouse, shop.a) == (1, 0)


def test_pickup_wholly_by_transfer_waits_the_store_transfer_time(shop, stock, clock):
    shop.lyon.pickup_transfer_hours = 24
    shop.lyon.save()
    stock.put(shop.warehouse, shop.a, 5)
    stock.put(shop.paris, shop.a, 5)
    order = pickup(shop, ("SKU-A", 2), store=shop.lyon)
    assert order.status == "awaiting_transfer"
    assert order.expected_ready_at == T0 + timedelta(hours=24)
    transfer = Transfer.objects.get()
    # From Lyon the Paris store (392 km) is nearer than the warehouse (395 km).
    assert (transfer.from_location, transfer.to_location) == (shop.paris, shop.lyon)
    assert held(order) == []


def test_pickup_lines_from_two_sources_make_two_transfers(shop, stock):
    stock.put(shop.paris, shop.a, 1)
    stock.put(shop.warehouse, shop.a, 5)
    stock.put(shop.lyon, shop.b, 3)
    stock.put(shop.paris, shop.c, 4)
    order = pickup(shop, ("SKU-A", 2), ("SKU-B", 3), ("SKU-C", 4))
    assert order.status == "awaiting_transfer"
    transfers = {
        t.from_location.code: list(t.lines.values_list("variant__sku", "quantity"))
        for t in Transfer.objects.all()
    }
    assert transfers == {"wh": [("SKU-A", 1)], "lyon": [("SKU-B", 3)]}
    assert held(order) == [("paris", 1, 1, True), ("paris", 3, 4, True)]
    assert list(
        OrderLine.objects.filter(order=order)
        .order_by("line_number")
        .values_list("transfer__from_location__code", "transfer_quantity")
    ) == [("wh", 1), ("lyon", 3), (None, 0)]


def test_pickup_short_says_what_one_transfer_could_bring(shop, stock):
    stock.put(shop.paris, shop.a, 1)
    stock.put(shop.warehouse, shop.a, 2)
    stock.put(shop.lyon, shop.a, 2)
    stock.put(shop.paris, shop.b, 1)
    before = snapshot()
    with pytest.raises(InsufficientStock) as short:
        pickup(shop, ("SKU-A", 5), ("SKU-B", 1), ("SKU-C", 2), identifiers=[_email()])
    assert short.value.code == "insufficient_stock"
    assert short.value.extra == {
        "lines": [
            {"index": 0, "sku": "SKU-A", "requested": 5, "available": 3},
            {"index": 2, "sku": "SKU-C", "requested": 2, "available": 0},
        ]
    }
    assert str(short.value) == (
        "Not enough stock for SKU-A to collect at paris: 5 requested, 3 available. "
        "(2 lines are short.)"
    )
    assert snapshot() == before


# --- In store ----------------------------------------------------------------------------------


def test_in_store_sells_at_once(shop, stock, staff_user, clock):
    stock.put(shop.paris, shop.a, 5)
    order = order_place(
        channel=shop.pos,
        lines=lines(("SKU-A", 2), ("SKU-B", 1)),
        fulfilment_method="in_store",
        store=shop.paris,
        source="user:1",
        actor=staff_user,
    )
    assert (order.status, order.closed_at, order.pickup_code) == ("completed", T0, "")
    assert order.total == Decimal("49.00")
    movements = list(
        StockMovement.objects.filter(reference=order.number)
        .order_by("variant__sku")
        .values_list("location__code", "variant__sku", "kind", "quantity", "channel", "source")
    )
    assert movements == [
        ("paris", "SKU-A", "sale", -2, shop.pos.pk, "store"),
        ("paris", "SKU-B", "sale", -1, shop.pos.pk, "store"),
    ]
    assert stock.row(shop.paris, shop.a) == (3, 0)
    fulfilment = Fulfilment.objects.get(order=order)
    assert (fulfilment.method, fulfilment.location, fulfilment.units, fulfilment.actor) == (
        "in_store",
        shop.paris,
        3,
        staff_user,
    )
    assert Reservation.objects.filter(reference=order.number).count() == 0
    assert history(order) == [("", "completed")]
    # SKU-B was not on the shelf by the ledger: the sale stands and the store gets a count.
    assert stock.row(shop.paris, shop.b) == (-1, 0)
    count = StockCount.objects.get()
    assert (count.location, count.status) == (shop.paris, "requested")


def test_in_store_on_zero_is_accepted_and_asks_for_a_count(shop, stock):
    order = order_place(
        channel=shop.web,
        lines=lines(("SKU-C", 3)),
        fulfilment_method="in_store",
        store=shop.lyon,
        source="client:4",
    )
    assert order.status == "completed"
    assert stock.row(shop.lyon, shop.c) == (-3, 0)
    assert StockMovement.objects.get(reference=order.number).source == "pos"
    assert StockCount.objects.get().location == shop.lyon


# --- Refused placements change nothing --------------------------------------------------------


def _email(address="camille@example.com"):
    return Identifier("email", address)


def test_ship_short_lines_write_nothing(shop, stock):
    stock.put(shop.warehouse, shop.a, 2)
    stock.put(shop.lyon, shop.a, 1)
    stock.put(shop.paris, shop.b, 1)
    before = snapshot()
    with pytest.raises(InsufficientStock) as short:
        ship(
            shop,
            ("SKU-A", 4),
            ("SKU-B", 1),
            ("SKU-C", 1),
            identifiers=[_email()],
            contact_name="Camille",
        )
    assert short.value.extra == {
        "lines": [
            {"index": 0, "sku": "SKU-A", "requested": 4, "available": 3},
            {"index": 2, "sku": "SKU-C", "requested": 1, "available": 0},
        ]
    }
    assert snapshot() == before
    assert Customer.objects.count() == 0
    assert Touchpoint.objects.count() == 0


def test_short_line_with_a_known_customer_changes_nothing_of_hers(shop, stock):
    customer, _ = customer_resolve(identifiers=[_email()], source="test")
    before = snapshot()
    with pytest.raises(InsufficientStock):
        ship(shop, ("SKU-A", 1), identifiers=[_email(), Identifier("phone", "+33612345678")])
    assert snapshot() == before
    assert list(Identity.objects.values_list("kind", flat=True)) == ["email"]


def _refused(call, error=ValidationFailed):
    before = snapshot()
    with pytest.raises(error) as refused:
        call()
    assert snapshot() == before
    return refused.value


def test_unknown_sku_not_listed_inactive_and_bad_quantities_are_reported_together(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    unlisted = VariantFactory(sku="SKU-UNLISTED")
    ListingFactory(variant=unlisted, channel=shop.pos, price=Decimal("3.00"))
    retired = VariantFactory(sku="SKU-RETIRED", is_active=False)
    ListingFactory(variant=retired, channel=shop.web)
    hidden = VariantFactory(sku="SKU-HIDDEN")
    ListingFactory(variant=hidden, channel=shop.web, is_published=False)
    error = _refused(
        lambda: order_place(
            channel=shop.web,
            lines=[
                LineInput("SKU-A", 1),
                LineInput("nope", 1),
                LineInput("SKU-UNLISTED", 1),
                LineInput("SKU-RETIRED", 1),
                LineInput("SKU-A", 0),
                LineInput("SKU-A", "two"),
                LineInput("SKU-A", -1),
                LineInput("SKU-HIDDEN", 1),
            ],
            fulfilment_method="ship",
            shipping_address=ADDRESS,
            source="test",
        )
    )
    assert error.code == "validation_error"
    assert error.extra == {
        "lines": {
            "1": {"sku": ["Unknown SKU nope."]},
            "2": {"sku": ["SKU-UNLISTED is not sold on web."]},
            "3": {"sku": ["SKU-RETIRED is not sold any more."]},
            "4": {"quantity": ["Must be at least 1."]},
            "5": {"quantity": ["A whole number is required."]},
            "6": {"quantity": ["Must be at least 1."]},
            "7": {"sku": ["SKU-HIDDEN is not sold on web."]},
        }
    }
    assert str(error) == "Some lines cannot be ordered: Unknown SKU nope. (7 lines.)"


def test_listing_outside_its_dates_is_not_sold(shop, stock, clock):
    stock.put(shop.warehouse, shop.a, 10)
    early = VariantFactory(sku="SKU-SOON")
    ListingFactory(variant=early, channel=shop.web, available_from=T0 + timedelta(days=1))
    late = VariantFactory(sku="SKU-GONE")
    ListingFactory(variant=late, channel=shop.web, available_until=T0)
    error = _refused(lambda: ship(shop, ("SKU-SOON", 1), ("SKU-GONE", 1)))
    assert error.extra == {
        "lines": {
            "0": {"sku": ["SKU-SOON is not sold on web."]},
            "1": {"sku": ["SKU-GONE is not sold on web."]},
        }
    }


def test_a_variant_of_an_inactive_product_is_not_sold(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    shop.a.product.is_active = False
    shop.a.product.save()
    error = _refused(lambda: ship(shop, ("SKU-A", 1)))
    assert error.extra == {"lines": {"0": {"sku": ["SKU-A is not sold any more."]}}}


def test_empty_and_too_many_lines(shop):
    error = _refused(lambda: ship(shop))
    assert error.extra == {"lines": ["Empty."]}
    error = _refused(lambda: ship(shop, *[("SKU-A", 1)] * 101))
    assert error.extra == {"lines": ["At most 100 lines."]}


def test_lines_priced_in_two_currencies_are_refused(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    dollars = VariantFactory(sku="SKU-USD")
    ListingFactory(variant=dollars, channel=shop.web, currency="USD")
    stock.put(shop.warehouse, dollars, 10)
    error = _refused(lambda: ship(shop, ("SKU-A", 1), ("SKU-USD", 1)))
    assert error.code == "mixed_currencies"
    assert error.extra == {"lines": {"1": {"currency": ["Priced in USD, not EUR."]}}}


@pytest.mark.parametrize(
    ("kwargs", "code", "extra"),
    [
        (
            {"fulfilment_method": "pickup", "store": "warehouse"},
            "no_pickup_here",
            {"store": ["wh does not offer pickup."]},
        ),
        (
            {"fulfilment_method": "pickup", "store": "closed"},
            "location_inactive",
            {"store": ["closed is inactive."]},
        ),
        (
            {"fulfilment_method": "in_store", "store": "closed"},
            "location_inactive",
            {"store": ["closed is inactive."]},
        ),
        (
            {"fulfilment_method": "pickup"},
            "validation_error",
            {"store": ["Required for pickup and in-store orders."]},
        ),
        (
            {"fulfilment_method": "in_store"},
            "validation_error",
            {"store": ["Required for pickup and in-store orders."]},
        ),
        (
            {"fulfilment_method": "ship"},
            "validation_error",
            {"shipping_address": ["Required to ship."]},
        ),
        (
            {"fulfilment_method": "ship", "shipping_address": "   "},
            "validation_error",
            {"shipping_address": ["Required to ship."]},
        ),
        (
            {"fulfilment_method": "ship", "shipping_address": ADDRESS, "store": "paris"},
            "validation_error",
            {"store": ["Not for shipped orders."]},
        ),
        (
            {"fulfilment_method": "drone", "shipping_address": ADDRESS},
            "validation_error",
            {"fulfilment_method": ["One of: ship, pickup, in_store."]},
        ),
        (
            {"fulfilment_method": "ship", "shipping_address": "x" * 1001},
            "validation_error",
            {"shipping_address": ["At most 1000 characters."]},
        ),
        (
            {
                "fulfilment_method": "ship",
                "shipping_address": ADDRESS,
                "contact_name": "n" * 201,
                "contact_email": "e" * 255,
                "contact_phone": "1" * 33,
                "note": "x" * 501,
                "external_reference": "r" * 121,
            },
            "validation_error",
            {
                "contact_name": ["At most 200 characters."],
                "contact_email": ["At most 254 characters."],
                "contact_phone": ["At most 32 characters."],
                "note": ["At most 500 characters."],
                "external_reference": ["At most 120 characters."],
            },
        ),
    ],
)
def test_placement_validation(shop, stock, kwargs, code, extra):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.paris, shop.a, 10)
    LocationFactory(code="closed", is_active=False, offers_pickup=True)
    kwargs = dict(kwargs)
    if "store" in kwargs:
        kwargs["store"] = {
            "warehouse": shop.warehouse,
            "paris": shop.paris,
            "closed": LocationFactory(code="closed"),
        }[kwargs["store"]]
    error = _refused(
        lambda: order_place(
            channel=shop.web,
            lines=lines(("SKU-A", 1)),
            source="test",
            identifiers=[_email()],
            **kwargs,
        )
    )
    assert (error.code, error.extra) == (code, extra)


@pytest.mark.parametrize("code", ["email", "sms"])
def test_a_messaging_channel_takes_no_orders(shop, stock, code):
    channel = ChannelFactory(code=code, kind=code, currency="")
    error = _refused(lambda: ship(shop, ("SKU-A", 1), channel=channel))
    assert (error.code, error.extra) == (
        "not_a_sales_channel",
        {"channel": [f"{code} is not an active sales channel."]},
    )


def test_an_inactive_sales_channel_takes_no_orders(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    shop.web.is_active = False
    shop.web.save()
    error = _refused(lambda: ship(shop, ("SKU-A", 1)))
    assert error.code == "not_a_sales_channel"


def test_bad_identifiers_are_refused_whole(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    error = _refused(
        lambda: ship(
            shop,
            ("SKU-A", 1),
            identifiers=[{"kind": "email", "value": "ok@example.com"}, {"kind": "email"}],
        )
    )
    assert error.extra == {"identifiers": {"1": ["The value is empty."]}}


# --- Duplicates --------------------------------------------------------------------------------


def test_duplicate_external_reference_names_the_first_order(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    first = ship(shop, ("SKU-A", 1), external_reference=" MP-1001 ")
    assert first.external_reference == "MP-1001"
    error = _refused(lambda: ship(shop, ("SKU-A", 2), external_reference="MP-1001"), Conflict)
    assert error.code == "duplicate_order"
    assert error.extra == {
        "external_reference": [f"Already placed as {first.number}."],
        "order": first.number,
    }
    assert str(error) == f"web order MP-1001 was placed already as {first.number}."
    # Another channel may use the same reference; no reference is never a duplicate.
    app = ChannelFactory(code="app", kind="app")
    StockRuleFactory(channel=app, location=shop.warehouse, priority=1)
    ListingFactory(variant=shop.a, channel=app, price=Decimal("9.00"))
    other = ship(shop, ("SKU-A", 1), channel=app, external_reference="MP-1001")
    assert other.external_reference == "MP-1001"
    assert ship(shop, ("SKU-A", 1)).external_reference is None
    assert ship(shop, ("SKU-A", 1), external_reference="").external_reference is None
    assert Order.objects.count() == 4


# --- Prices, totals, contact -------------------------------------------------------------------


def test_prices_currency_totals_and_contact(shop, stock, clock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 10)
    shop.b.product.title = "Linen shirt"
    shop.b.product.save()
    app = ChannelFactory(code="app", kind="app", currency="EUR")
    StockRuleFactory(channel=app, location=shop.warehouse, priority=1)
    ListingFactory(variant=shop.a, channel=app, price=Decimal("9.50"), title="App title")
    ListingFactory(variant=shop.b, channel=app, price=Decimal("24.00"))
    order = ship(
        shop,
        ("SKU-A", 3),
        ("sku-b", 2),
        ("SKU-A", 1),
        channel=app,
        contact_name="  Camille Martin ",
        contact_email="camille@example.com",
        contact_phone="+33 6 12 34 56 78",
        note="Leave at the door",
        source="client:12",
    )
    order.refresh_from_db()
    assert (order.channel, order.currency, order.subtotal, order.total) == (
        app,
        "EUR",
        Decimal("86.00"),
        Decimal("86.00"),
    )
    assert order.refunded_total == Decimal("0.00")
    assert list(
        order.lines.order_by("line_number").values_list(
            "line_number", "sku", "title", "quantity", "unit_price", "line_total"
        )
    ) == [
        (1, "SKU-A", "App title (size: M)", 4, Decimal("9.50"), Decimal("38.00")),
        (2, "SKU-B", "Linen shirt (size: M)", 2, Decimal("24.00"), Decimal("48.00")),
    ]
    assert (
        order.contact_name,
        order.contact_email,
        order.contact_phone,
        order.shipping_address,
        order.note,
        order.source,
        order.placed_at,
    ) == (
        "Camille Martin",
        "camille@example.com",
        "+33 6 12 34 56 78",
        ADDRESS,
        "Leave at the door",
        "client:12",
        T0,
    )
    assert order.number.startswith("O-") and len(order.number) == 11
    assert len(order.public_token) == 32
    assert order.customer is None
    assert order.pickup_code == ""
    assert order.created_by is None


def test_the_listing_currency_wins_over_the_channel(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    ListingFactory  # noqa: B018 - the fixture lists SKU-A on web in EUR
    shop.web.currency = "GBP"
    shop.web.save()
    order = ship(shop, ("SKU-A", 1))
    assert (order.currency, order.total) == ("EUR", Decimal("10.00"))


def test_created_by_is_the_staff_member(shop, stock, staff_user):
    stock.put(shop.warehouse, shop.a, 10)
    order = ship(shop, ("SKU-A", 1), actor=staff_user, source="user:1")
    assert order.created_by == staff_user
    assert OrderStatusChange.objects.get(order=order).actor == staff_user


# --- Customers and their timeline --------------------------------------------------------------


def test_identifiers_create_the_customer_once_then_find_her(shop, stock, clock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.paris, shop.b, 10)
    first = ship(shop, ("SKU-A", 2), identifiers=[_email("Camille@Example.com")])
    customer = Customer.objects.get()
    assert first.customer == customer
    assert list(customer.identities.values_list("kind", "value")) == [
        ("email", "camille@example.com")
    ]
    clock.advance(days=1)
    second = pickup(
        shop,
        ("SKU-B", 1),
        identifiers=[{"kind": "email", "value": "camille@example.com"}],
    )
    assert second.customer == customer
    assert Customer.objects.count() == 1
    touchpoints = list(
        Touchpoint.objects.filter(customer=customer)
        .order_by("occurred_at", "pk")
        .values_list("kind", "channel", "location", "source", "event_id", "occurred_at")
    )
    assert touchpoints == [
        ("purchase", shop.web.pk, None, "orders", f"{first.number}:placed", T0),
        (
            "purchase",
            shop.web.pk,
            shop.paris.pk,
            "orders",
            f"{second.number}:placed",
            T0 + timedelta(days=1),
        ),
    ]
    assert Touchpoint.objects.get(event_id=f"{first.number}:placed").properties == {
        "order": first.number,
        "amount": "20.00",
        "currency": "EUR",
        "fulfilment_method": "ship",
        "items": 2,
    }
    customer.refresh_from_db()
    assert (customer.lifetime_orders, customer.lifetime_revenue, customer.last_purchase_at) == (
        2,
        Decimal("45.50"),
        T0 + timedelta(days=1),
    )


def test_identifiers_of_two_customers_merge_them_and_the_order_goes_to_the_survivor(
    shop, stock, clock
):
    stock.put(shop.warehouse, shop.a, 10)
    older = ship(shop, ("SKU-A", 1), identifiers=[_email()]).customer
    clock.advance(hours=1)
    phone = Identifier("phone", "+33612345678")
    newer = ship(shop, ("SKU-A", 1), identifiers=[phone]).customer
    assert older != newer
    clock.advance(hours=1)
    order = ship(shop, ("SKU-A", 1), identifiers=[phone, _email()])
    assert order.customer == older
    assert list(Customer.objects.values_list("pk", flat=True)) == [older.pk]
    merge = CustomerMerge.objects.get()
    assert (merge.survivor, merge.merged_customer_id) == (older, newer.pk)
    assert Order.objects.filter(customer=older).count() == 3
    older.refresh_from_db()
    assert (older.lifetime_orders, older.lifetime_revenue) == (3, Decimal("30.00"))


def test_a_given_customer_and_new_identifiers(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    customer, _ = customer_resolve(identifiers=[_email()], source="test")
    order = ship(
        shop, ("SKU-A", 1), customer=customer, identifiers=[Identifier("loyalty_card", "C-1")]
    )
    assert order.customer == customer
    assert set(customer.identities.values_list("kind", "value")) == {
        ("email", "camille@example.com"),
        ("loyalty_card", "C1"),
    }


def test_an_erased_customer_takes_no_order(shop, stock):
    from customers.services import customer_erase

    stock.put(shop.warehouse, shop.a, 10)
    customer, _ = customer_resolve(identifiers=[_email()], source="test")
    customer_erase(customer=customer, source="test")
    customer.refresh_from_db()
    error = _refused(lambda: ship(shop, ("SKU-A", 1), customer=customer), Conflict)
    assert error.code == "customer_erased"


def test_an_anonymous_order_has_no_timeline(shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    before = counts()
    order = ship(shop, ("SKU-A", 1))
    assert order.customer is None
    after = counts()
    assert after["customers.Touchpoint"] == before["customers.Touchpoint"] == 0
    assert after["customers.Customer"] == 0
    assert OutboxEvent.objects.filter(type="order.placed").count() == 1
    payload = OutboxEvent.objects.get(type="order.placed").payload
    assert payload == {
        "number": order.number,
        "channel": "web",
        "customer": None,
        "status": "placed",
        "fulfilment_method": "ship",
        "store": None,
        "total": "10.00",
        "currency": "EUR",
    }


# --- Numbers and racing duplicates -------------------------------------------------------------


def test_a_number_drawn_twice_is_drawn_again(shop, stock, monkeypatch):
    from orders.services import common

    stock.put(shop.warehouse, shop.a, 10)
    first = ship(shop, ("SKU-A", 1))
    drawn = iter([first.number, "O-NEW2-NEW2"])
    monkeypatch.setattr(common, "new_number", lambda prefix: next(drawn))
    second = ship(shop, ("SKU-A", 1))
    assert second.number == "O-NEW2-NEW2"
    assert Order.objects.count() == 2


def test_a_duplicate_placed_meanwhile_is_caught_by_the_database(shop, stock, monkeypatch):
    """Two requests with one reference both pass the first check; the database refuses the
    second, which then names the first, even when the reference reads like a number."""
    from orders.services import placement

    stock.put(shop.warehouse, shop.a, 10)
    first = ship(shop, ("SKU-A", 1), external_reference="number-7")
    real = placement._refuse_duplicate

    def late(channel, reference, racing=False):
        if racing:
            return real(channel, reference, racing=True)

    monkeypatch.setattr(placement, "_refuse_duplicate", late)
    error = _refused(lambda: ship(shop, ("SKU-A", 1), external_reference="number-7"), Conflict)
    assert error.code == "duplicate_order"
    assert error.extra["order"] == first.number
