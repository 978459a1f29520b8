"""Order services under real concurrency: threads, each with its own connection and its own
transactions, against PostgreSQL. Transactional tests flush every table, so the fixtures
create what they use (channels through the factory's get-or-create)."""

import logging
import threading

import pytest
from django.db import connection
from django.db.models import Sum

from customers.identifiers import Identifier
from customers.models import Customer, Touchpoint
from customers.services import customer_merge, customer_resolve
from inventory.models import Reservation, ReservationStatus, StockLevel, StockMovement, Transfer
from inventory.services import transfer_receive, transfer_ship
from omni.exceptions import Conflict, InsufficientStock
from orders.models import Fulfilment, Order, OrderStatusChange
from orders.services import (
    cart_create,
    cart_identify,
    cart_line_add,
    order_cancel,
    order_collect,
    order_mark_ready,
    order_place,
    order_place_from_cart,
)
from tests.orders.conftest import lines

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(count, work, *, timeout=60):
    """Run ``work(index)`` in ``count`` threads released together by a barrier; each thread
    closes its own connection at the end. Returns the exceptions that escaped, by thread."""
    barrier = threading.Barrier(count)
    errors = {}

    def run(index):
        try:
            barrier.wait(timeout=timeout)
            work(index)
        except BaseException as exc:
            errors[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,), name=f"worker-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return errors


@pytest.fixture
def no_logged_errors(caplog):
    """Fail on anything logged at ERROR (a robust on-commit callback that failed)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def assert_stock_invariants():
    """``on_hand == sum of movements``, ``reserved == sum of active reservations`` and
    ``0 <= reserved <= on_hand`` on every stock row."""
    ledger = {
        (r["location_id"], r["variant_id"]): r["total"]
        for r in StockMovement.objects.values("location_id", "variant_id").annotate(
            total=Sum("quantity")
        )
    }
    held = {
        (r["location_id"], r["variant_id"]): r["total"]
        for r in Reservation.objects.filter(status=ReservationStatus.ACTIVE)
        .values("location_id", "variant_id")
        .annotate(total=Sum("quantity"))
    }
    for row in StockLevel.objects.all():
        pair = (row.location_id, row.variant_id)
        assert row.on_hand == ledger.get(pair, 0), pair
        assert row.reserved == held.get(pair, 0), pair
        assert 0 <= row.reserved <= row.on_hand, (pair, row.on_hand, row.reserved)


def units_held_for_orders() -> dict[str, int]:
    """Units held for each order, directly or by the transfer bringing its stock."""
    held = {}
    for reference, quantity in Reservation.objects.filter(status="active").values_list(
        "reference", "quantity"
    ):
        if reference.startswith("transfer:"):
            reference = Transfer.objects.get(number=reference.split(":", 1)[1]).reference
        held[reference] = held.get(reference, 0) + quantity
    return held


def test_threads_placing_orders_for_the_last_units_never_oversell(shop, stock, no_logged_errors):
    stock.put(shop.warehouse, shop.a, 3)
    stock.put(shop.paris, shop.a, 2)
    stock.put(shop.lyon, shop.a, 1)
    threads = 16
    outcomes = {}

    def work(index):
        try:
            order = order_place(
                channel=shop.web,
                lines=lines(("SKU-A", 1)),
                fulfilment_method="ship",
                shipping_address=f"{index} rue X",
                source=f"t{index}",
                identifiers=[Identifier("email", f"c{index}@example.com")],
            )
            outcomes[index] = order.number
        except InsufficientStock as exc:
            outcomes[index] = exc.code

    assert run_threads(threads, work) == {}
    placed = [v for v in outcomes.values() if v != "insufficient_stock"]
    assert len(placed) == 6
    assert list(outcomes.values()).count("insufficient_stock") == threads - 6
    assert Order.objects.count() == 6
    assert units_held_for_orders() == dict.fromkeys(placed, 1)
    assert StockLevel.objects.filter(variant=shop.a).aggregate(Sum("reserved")) == {
        "reserved__sum": 6
    }
    # Refused placements left no customer and no touchpoint behind.
    assert Customer.objects.count() == 6
    assert Touchpoint.objects.filter(kind="purchase").count() == 6
    assert_stock_invariants()


def test_pickups_and_shipments_racing_for_the_last_units(shop, stock, no_logged_errors):
    stock.put(shop.paris, shop.a, 3)
    stock.put(shop.warehouse, shop.a, 2)
    stock.put(shop.lyon, shop.a, 1)
    threads = 14
    outcomes = {}

    def work(index):
        method = "pickup" if index % 2 else "ship"
        try:
            order = order_place(
                channel=shop.web,
                lines=lines(("SKU-A", 1)),
                fulfilment_method=method,
                store=shop.paris if method == "pickup" else None,
                shipping_address="" if method == "pickup" else "1 rue X",
                source=f"t{index}",
            )
            outcomes[index] = order.number
        except InsufficientStock as exc:
            outcomes[index] = exc.code

    assert run_threads(threads, work) == {}
    placed = [v for v in outcomes.values() if v != "insufficient_stock"]
    # Every unit anywhere can serve either kind of order: exactly six are placed.
    assert len(placed) == 6
    assert units_held_for_orders() == dict.fromkeys(placed, 1)
    assert StockLevel.objects.aggregate(Sum("reserved")) == {"reserved__sum": 6}
    assert_stock_invariants()


def test_two_staff_collecting_the_same_pickup_at_once(shop, stock, no_logged_errors):
    stock.put(shop.paris, shop.a, 10)
    orders = []
    for n in range(4):
        order = order_place(
            channel=shop.web,
            lines=lines(("SKU-A", 2)),
            fulfilment_method="pickup",
            store=shop.paris,
            source="test",
            identifiers=[Identifier("email", f"p{n}@example.com")],
        )
        order_mark_ready(order=order, source="test")
        orders.append(Order.objects.get(pk=order.pk))
    assert StockLevel.objects.get(location=shop.paris, variant=shop.a).reserved == 8
    results = {}

    def work(index):
        order = orders[index // 2]
        try:
            order_collect(
                order=order, code=order.pickup_code, source=f"user:{index}", location=shop.paris
            )
            results[index] = "collected"
        except Conflict as exc:
            results[index] = exc.code

    assert run_threads(8, work) == {}
    for n, order in enumerate(orders):
        pair = sorted([results[2 * n], results[2 * n + 1]])
        assert pair == ["collected", "invalid_transition"], pair
        assert Fulfilment.objects.filter(order=order).count() == 1
        assert StockMovement.objects.filter(reference=order.number).get().quantity == -2
        assert OrderStatusChange.objects.filter(order=order, to_status="collected").count() == 1
        assert Touchpoint.objects.filter(customer=order.customer, kind="pickup").count() == 1
    assert StockLevel.objects.get(location=shop.paris, variant=shop.a).on_hand == 2
    assert StockLevel.objects.get(location=shop.paris, variant=shop.a).reserved == 0
    assert_stock_invariants()


def test_placing_orders_while_the_customer_is_merged(shop, stock, no_logged_errors):
    stock.put(shop.warehouse, shop.a, 100)
    stock.put(shop.paris, shop.a, 100)
    rounds = 6
    for r in range(rounds):
        older_email = Identifier("email", f"old{r}@example.com")
        newer_email = Identifier("email", f"new{r}@example.com")
        older, _ = customer_resolve(identifiers=[older_email], source="test")
        newer, _ = customer_resolve(identifiers=[newer_email], source="test")
        ready = order_place(
            channel=shop.web,
            lines=lines(("SKU-A", 1)),
            fulfilment_method="pickup",
            store=shop.paris,
            source="test",
            customer=newer,
        )
        order_mark_ready(order=ready, source="test")
        cart = cart_create(channel=shop.web, source="test", customer=newer)
        placed = {}

        def work(
            index,
            older=older,
            newer=newer,
            newer_email=newer_email,
            ready=ready,
            cart=cart,
            placed=placed,
        ):
            if index == 0:
                customer_merge(customers=[older, newer], source="test")
            elif index == 1:
                placed["ship"] = order_place(
                    channel=shop.web,
                    lines=lines(("SKU-A", 1)),
                    fulfilment_method="ship",
                    shipping_address="1 rue X",
                    source="test",
                    identifiers=[newer_email],
                ).pk
            elif index == 2:
                placed["pickup"] = order_place(
                    channel=shop.web,
                    lines=lines(("SKU-A", 1)),
                    fulfilment_method="pickup",
                    store=shop.paris,
                    source="test",
                    customer=newer,
                ).pk
            elif index == 3:
                order_collect(order=ready, code=ready.pickup_code, source="test")
            else:
                cart_line_add(cart=cart, sku="SKU-B")

        assert run_threads(5, work) == {}
        assert not Customer.objects.filter(pk=newer.pk).exists()
        for pk in (placed["ship"], placed["pickup"], ready.pk):
            assert Order.objects.get(pk=pk).customer_id == older.pk
        assert Order.objects.get(pk=ready.pk).status == "collected"
        assert Order.objects.filter(customer=older).count() == 3
        cart.refresh_from_db()
        assert cart.customer_id == older.pk
        assert cart.lines.get().variant == shop.b
        older.refresh_from_db()
        assert older.lifetime_orders == 3
        assert Touchpoint.objects.filter(customer=older).count() == 5  # 3 purchases, pickup, cart
    assert_stock_invariants()


def test_a_transfer_arriving_while_its_customer_orders_again(shop, stock, no_logged_errors):
    """Receiving locks the stock, then the waiting order; a placement locks the customer, then
    the stock. Neither may wait on the other in the opposite order (a deadlock)."""
    stock.put(shop.warehouse, shop.a, 100)
    stock.put(shop.lyon, shop.a, 100)
    email = Identifier("email", "camille@example.com")
    for _round in range(6):
        waiting = order_place(
            channel=shop.web,
            lines=lines(("SKU-A", 2)),
            fulfilment_method="pickup",
            store=shop.paris,
            source="test",
            identifiers=[email],
        )
        transfer = Transfer.objects.get(reference=waiting.number)
        transfer_ship(transfer=transfer)

        # A second waiting order of hers, cancelled at the same time.
        other = order_place(
            channel=shop.web,
            lines=lines(("SKU-A", 1)),
            fulfilment_method="pickup",
            store=shop.paris,
            source="test",
            identifiers=[email],
        )

        def work(index, transfer=transfer, other=other):
            if index == 0:
                transfer_receive(transfer=transfer)
            elif index == 1:
                order_place(
                    channel=shop.web,
                    lines=lines(("SKU-A", 1)),
                    fulfilment_method="ship",
                    shipping_address="1 rue X",
                    source="test",
                    identifiers=[email],
                )
            else:
                order_cancel(order=other, source="test")

        assert run_threads(3, work) == {}
        waiting.refresh_from_db()
        assert waiting.status == "placed"
        assert Order.objects.get(pk=other.pk).status == "cancelled"
        assert (
            sum(
                Reservation.objects.filter(reference=waiting.number, status="active").values_list(
                    "quantity", flat=True
                )
            )
            == 2
        )
        # Hand the arrived pickup over so the next round starts with an empty store.
        order_mark_ready(order=waiting, source="test")
        order_collect(order=waiting, code=waiting.pickup_code, source="test")
    assert_stock_invariants()


def test_cancelling_while_the_transfer_is_received(shop, stock, no_logged_errors):
    stock.put(shop.warehouse, shop.a, 100)
    stock.put(shop.paris, shop.a, 1)
    for _round in range(6):
        at_store = StockLevel.objects.get(location=shop.paris, variant=shop.a).on_hand
        order = order_place(
            channel=shop.web,
            lines=lines(("SKU-A", at_store + 2)),
            fulfilment_method="pickup",
            store=shop.paris,
            source="test",
            identifiers=[Identifier("email", "camille@example.com")],
        )
        transfer = Transfer.objects.get(reference=order.number)
        transfer_ship(transfer=transfer)

        def work(index, order=order, transfer=transfer):
            if index == 0:
                transfer_receive(transfer=transfer)
            else:
                order_cancel(order=order, source="test")

        assert run_threads(2, work) == {}
        order.refresh_from_db()
        assert order.status == "cancelled"
        assert Reservation.objects.filter(reference=order.number, status="active").count() == 0
        assert Transfer.objects.get(pk=transfer.pk).status == "received"
        # The store keeps what arrived, free for anyone.
        row = StockLevel.objects.get(location=shop.paris, variant=shop.a)
        assert row.reserved == 0
    assert StockLevel.objects.get(location=shop.paris, variant=shop.a).on_hand == 1 + 6 * 2
    assert_stock_invariants()


def test_identifying_a_cart_while_the_same_customer_orders(shop, stock, no_logged_errors):
    """Identity resolution locks identifiers, then customers; a cart change locks its
    customer, then the cart. Identifying her own cart again while she orders must not lock
    the two in opposite orders."""
    stock.put(shop.warehouse, shop.a, 100)
    email = Identifier("email", "camille@example.com")
    for _round in range(8):
        cart = cart_create(channel=shop.web, source="test", identifiers=[email])
        checkout = cart_create(channel=shop.web, source="test", identifiers=[email])
        cart_line_add(cart=checkout, sku="SKU-A")

        def work(index, cart=cart, checkout=checkout):
            if index == 0:
                cart_identify(cart=cart, source="test", identifiers=[email])
            elif index == 1:
                order_place(
                    channel=shop.web,
                    lines=lines(("SKU-A", 1)),
                    fulfilment_method="ship",
                    shipping_address="1 rue X",
                    source="test",
                    identifiers=[email],
                )
            else:
                order_place_from_cart(
                    cart=checkout,
                    fulfilment_method="ship",
                    shipping_address="1 rue X",
                    source="test",
                    identifiers=[email],
                )

        assert run_threads(3, work) == {}
    customer = Customer.objects.get()
    assert Order.objects.filter(customer=customer).count() == 16
    assert_stock_invariants()
