"""Reservations under real concurrency: many threads, each with its own connection and its own
transactions, against PostgreSQL.

Transactional tests flush every table, the seeded channels included, so these create what they
use (channels through the factory) and never rely on seeded rows.
"""

import logging
import random
import threading
from collections import Counter, defaultdict

import pytest
from django.db import connection
from django.db.models import Sum

from inventory.models import (
    ChannelAvailability,
    ChannelStockPolicy,
    Reservation,
    ReservationStatus,
    StockLevel,
    StockMovement,
    Transfer,
)
from inventory.services import (
    ReserveLine,
    stock_consume,
    stock_receive,
    stock_release,
    stock_reserve,
    stock_sell,
    transfer_request,
    transfer_ship,
)
from inventory.services.availability import Policy
from omni.exceptions import InsufficientStock
from tests.factories import ChannelFactory, LocationFactory, StockRuleFactory, VariantFactory

THREADS = 32
ATTEMPTS = 4


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


def assert_invariants():
    """``on_hand == sum of movements``, ``reserved == sum of active reservations`` and
    ``0 <= reserved <= on_hand`` on every stock row."""
    ledger = {
        (row["location_id"], row["variant_id"]): row["total"]
        for row in StockMovement.objects.values("location_id", "variant_id").annotate(
            total=Sum("quantity")
        )
    }
    held = {
        (row["location_id"], row["variant_id"]): row["total"]
        for row in Reservation.objects.filter(status=ReservationStatus.ACTIVE)
        .values("location_id", "variant_id")
        .annotate(total=Sum("quantity"))
    }
    rows = list(StockLevel.objects.all())
    assert rows
    for row in rows:
        pair = (row.location_id, row.variant_id)
        assert row.on_hand == ledger.get(pair, 0), pair
        assert row.reserved == held.get(pair, 0), pair
        assert 0 <= row.reserved <= row.on_hand, (pair, row.on_hand, row.reserved)
    assert set(held) <= {(row.location_id, row.variant_id) for row in rows}


def expected_availability(channel, policy: Policy) -> dict[int, int]:
    """What the channel may promise of each variant, computed here from the stock rows."""
    sellable = defaultdict(int)
    for rule in channel.stock_rules.select_related("location"):
        for row in StockLevel.objects.filter(location=rule.location):
            safety = (
                row.safety_stock if row.safety_stock is not None else rule.location.safety_stock
            )
            sellable[row.variant_id] += max(0, row.on_hand - row.reserved - safety - rule.buffer)
    return {variant_id: policy.promise(units) for variant_id, units in sellable.items()}


@pytest.fixture
def no_logged_errors(caplog):
    """Fail on anything logged at ERROR (a robust on-commit callback that failed, such as the
    availability refresh or the mending of reservations after a sale)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.django_db(transaction=True)
def test_32_threads_reserving_random_lines_never_oversell(no_logged_errors):
    channel = ChannelFactory(code="conc-web")
    ChannelStockPolicy.objects.create(channel=channel)
    warehouse = LocationFactory(code="conc-wh", kind="warehouse", safety_stock=1)
    north = LocationFactory(code="conc-north")
    south = LocationFactory(code="conc-south")
    for priority, location in enumerate([warehouse, north, south], 1):
        StockRuleFactory(channel=channel, location=location, priority=priority)
    variants = [VariantFactory(sku=f"CONC-{n}") for n in range(4)]
    received = Counter()
    stock = {warehouse: [4, 3, 2, 5], north: [2, 0, 3, 1], south: [1, 2, 0, 2]}
    for location, quantities in stock.items():
        for variant, quantity in zip(variants, quantities, strict=True):
            if quantity:
                stock_receive(location=location, variant=variant, quantity=quantity)
                received[variant.pk] += quantity
    # The warehouse keeps one unit of each variant back; a row override makes the north store
    # keep one unit of the third.
    StockLevel.objects.filter(location=north, variant=variants[2]).update(safety_stock=1)
    sellable = {
        variants[0].pk: 3 + 2 + 1,
        variants[1].pk: 2 + 0 + 2,
        variants[2].pk: 1 + 2 + 0,
        variants[3].pk: 4 + 1 + 2,
    }

    outcomes = {}  # reference -> requested {variant: units} when reserved, None when short

    def work(index):
        rng = random.Random(index)
        for attempt in range(ATTEMPTS):
            chosen = rng.sample(variants, rng.randint(1, 3))
            lines = [ReserveLine(variant=v, quantity=rng.randint(1, 2)) for v in chosen]
            rng.shuffle(lines)
            reference = f"T{index}-{attempt}"
            try:
                stock_reserve(channel=channel, lines=lines, reference=reference)
            except InsufficientStock:
                outcomes[reference] = None
            else:
                outcomes[reference] = {line.variant.pk: line.quantity for line in lines}
            if attempt == 1 and outcomes[reference] is not None and rng.random() < 0.3:
                stock_release(reference=reference)  # churn: give some back while others race
                outcomes[reference] = {}

    errors = run_threads(THREADS, work)

    assert errors == {}
    assert len(outcomes) == THREADS * ATTEMPTS
    won = [ref for ref, asked in outcomes.items() if asked]
    lost = [ref for ref, asked in outcomes.items() if asked is None]
    assert won and lost  # the stock was contested
    assert_invariants()
    # All or nothing: each winner holds exactly what it asked for, each loser holds nothing.
    held = defaultdict(Counter)
    for reference, variant_id, quantity in Reservation.objects.filter(
        status=ReservationStatus.ACTIVE
    ).values_list("reference", "variant_id", "quantity"):
        held[reference][variant_id] += quantity
    assert {ref: dict(units) for ref, units in held.items()} == {ref: outcomes[ref] for ref in won}
    # Never more held than existed to sell (on hand less safety stock), per variant.
    reserved = Counter()
    for variant_id, units in StockLevel.objects.values_list("variant_id", "reserved"):
        reserved[variant_id] += units
    for variant in variants:
        assert reserved[variant.pk] <= sellable[variant.pk]
        on_hand = StockLevel.objects.filter(variant=variant).aggregate(s=Sum("on_hand"))["s"]
        assert on_hand == received[variant.pk]
    for row in StockLevel.objects.select_related("location"):
        safety = row.safety_stock if row.safety_stock is not None else row.location.safety_stock
        assert row.reserved <= row.on_hand - safety
    # The refreshes after each commit left the channel's figures right (no stale overwrite).
    promised = dict(
        ChannelAvailability.objects.filter(channel=channel).values_list("variant_id", "quantity")
    )
    expected = expected_availability(channel, Policy())
    assert {v: q for v, q in promised.items() if q} == {v: q for v, q in expected.items() if q}


@pytest.mark.django_db(transaction=True)
def test_reserving_releasing_consuming_and_selling_at_once_keeps_the_invariants(
    no_logged_errors,
):
    """Orders reserve, cancel and ship while the stores sell the same items over the counter
    (which re-sources the reservations a sale breaks after it commits)."""
    channel = ChannelFactory(code="mixed-web")
    ChannelStockPolicy.objects.create(channel=channel, allocation_strategy="most_stock")
    locations = [LocationFactory(code=f"mixed-{n}") for n in range(3)]
    for priority, location in enumerate(locations, 1):
        StockRuleFactory(channel=channel, location=location, priority=priority)
    variants = [VariantFactory(sku=f"MIXED-{n}") for n in range(3)]
    for location, quantity in zip(locations, [5, 3, 2], strict=True):
        for variant in variants:
            stock_receive(location=location, variant=variant, quantity=quantity)
    open_orders = {}  # reference -> {variant: units} still held at the end

    def work(index):
        rng = random.Random(1000 + index)
        for attempt in range(3):
            reference = f"M{index}-{attempt}"
            action = rng.choice(["reserve", "reserve", "sell", "sell", "ship", "cancel"])
            if action == "sell":
                stock_sell(
                    location=rng.choice(locations),
                    variant=rng.choice(variants),
                    quantity=rng.randint(1, 2),
                    channel=channel,
                )
                continue
            lines = [
                ReserveLine(variant=v, quantity=rng.randint(1, 2))
                for v in rng.sample(variants, rng.randint(1, 2))
            ]
            try:
                stock_reserve(channel=channel, lines=lines, reference=reference)
            except InsufficientStock:
                continue
            if action == "reserve":
                open_orders[reference] = {line.variant.pk: line.quantity for line in lines}
            elif action == "ship":
                stock_consume(reference=reference)
            elif action == "cancel":
                stock_release(reference=reference)

    errors = run_threads(16, work)

    assert errors == {}
    # Sales may have broken reservations the mending could not move: those stay held and are
    # flagged, never dropped; every other row holds no more than it has.
    for row in StockLevel.objects.all():
        total = StockMovement.objects.filter(
            location_id=row.location_id, variant_id=row.variant_id
        ).aggregate(s=Sum("quantity"))["s"]
        active = Reservation.objects.filter(
            location_id=row.location_id,
            variant_id=row.variant_id,
            status=ReservationStatus.ACTIVE,
        )
        assert row.on_hand == total
        assert row.reserved == (active.aggregate(s=Sum("quantity"))["s"] or 0)
        if row.reserved > max(row.on_hand, 0):
            assert active.filter(needs_attention=True).exists(), row
    # Re-sourcing moved held units between locations but never lost one.
    held = defaultdict(Counter)
    for reference, variant_id, quantity in Reservation.objects.filter(
        status=ReservationStatus.ACTIVE
    ).values_list("reference", "variant_id", "quantity"):
        held[reference][variant_id] += quantity
    assert open_orders
    assert {ref: dict(units) for ref, units in held.items()} == open_orders


ROUNDS = 5


@pytest.mark.django_db(transaction=True)
def test_shipping_transfers_while_orders_reserve_the_same_items(no_logged_errors):
    """A transfer's lines are not in stock-row order; shipping must still lock the source's
    rows in the one order, or it deadlocks with a reservation of the same items."""
    channel = ChannelFactory(code="ship-web")
    warehouse = LocationFactory(code="ship-wh", kind="warehouse")
    store = LocationFactory(code="ship-store")
    StockRuleFactory(channel=channel, location=warehouse, priority=1)
    first, second = VariantFactory(sku="SHIP-1"), VariantFactory(sku="SHIP-2")
    stock_receive(location=warehouse, variant=second, quantity=200)
    stock_receive(location=warehouse, variant=first, quantity=200)
    transfers = [
        transfer_request(
            from_location=warehouse,
            to_location=store,
            # The first item first (by line and by variant): its stock row has the higher key.
            lines=[{"sku": "SHIP-1", "quantity": 1}, {"sku": "SHIP-2", "quantity": 1}],
        )
        for _ in range(8 * ROUNDS)
    ]

    def work(index):
        for attempt in range(ROUNDS):
            if index % 2:
                transfer_ship(transfer=transfers[(index // 2) * ROUNDS + attempt])
            else:
                stock_reserve(
                    channel=channel,
                    lines=[ReserveLine(variant=first, quantity=1), ReserveLine(second, 1)],
                    reference=f"R{index}-{attempt}",
                )

    errors = run_threads(16, work)

    assert errors == {}
    assert_invariants()
    assert Transfer.objects.filter(status="shipped").count() == 8 * ROUNDS
    for variant in (first, second):
        assert (
            StockLevel.objects.get(location=warehouse, variant=variant).on_hand == 200 - 8 * ROUNDS
        )
        assert StockLevel.objects.get(location=warehouse, variant=variant).reserved == 8 * ROUNDS
