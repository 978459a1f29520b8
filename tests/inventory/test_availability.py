"""Channel availability: the formula, low stock, events, idempotent refreshes, the selectors."""

import pytest
from django.db.models import F

from inventory.models import ChannelAvailability, ChannelStockPolicy, StockLevel
from inventory.selectors import UnknownChannel, availability_batch, availability_for_channel
from inventory.services import (
    ReserveLine,
    availability_refresh,
    availability_state,
    stock_adjust,
    stock_reserve,
)
from omni.formats import api_datetime
from omni.models import OutboxEvent
from tests.factories import ChannelFactory, LocationFactory, StockRuleFactory, VariantFactory

pytestmark = pytest.mark.django_db

CHANGED = "inventory.availability_changed"


def promised(variant, channel):
    row = ChannelAvailability.objects.get(variant=variant, channel=channel)
    return row.quantity, row.is_low_stock


def changes():
    return [(e.subject_id, e.payload) for e in OutboxEvent.objects.filter(type=CHANGED)]


def set_stock(location, variant, on_hand, reserved=0, safety_stock=None):
    StockLevel.objects.update_or_create(
        location=location,
        variant=variant,
        defaults={"on_hand": on_hand, "reserved": reserved, "safety_stock": safety_stock},
    )


@pytest.fixture
def market(db):
    """A marketplace fed by two stores (one keeps units back per rule) and a closed store."""
    channel = ChannelFactory(code="market", kind="marketplace")
    big = LocationFactory(code="big", safety_stock=1)
    small = LocationFactory(code="small")
    closed = LocationFactory(code="closed", is_active=False)
    StockRuleFactory(channel=channel, location=big, priority=1, buffer=1)
    StockRuleFactory(channel=channel, location=small, priority=2)
    StockRuleFactory(channel=channel, location=closed, priority=3)
    return channel, big, small, closed


@pytest.fixture
def item(market):
    """Sellable per location: big 10 - 2 reserved - 1 safety - 1 rule buffer = 6; small 5 - 2
    (the row's own safety stock) = 3; the closed store's 100 do not count. Total 9."""
    _channel, big, small, closed = market
    variant = VariantFactory(sku="AV-1")
    set_stock(big, variant, 10, reserved=2)
    set_stock(small, variant, 5, safety_stock=2)
    set_stock(closed, variant, 100)
    return variant


# --- The formula -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "quantity"),
    [
        (None, 9),
        ({"buffer": 2}, 7),
        ({"exposed_percent": 80}, 7),  # 7.2 rounded down
        ({"buffer": 2, "exposed_percent": 80}, 5),  # 5.6 rounded down
        ({"buffer": 2, "exposed_percent": 80, "cap": 4}, 4),
        ({"cap": 20}, 9),
        ({"buffer": 12}, 0),
        ({"exposed_percent": 0}, 0),
    ],
)
def test_what_a_channel_may_promise(market, item, policy, quantity):
    channel = market[0]
    if policy:
        ChannelStockPolicy.objects.create(channel=channel, **policy)

    result = availability_refresh(variant_ids=[item.pk])

    assert result.variants == 1
    if quantity:
        assert promised(item, channel) == (quantity, False)
    else:
        assert not ChannelAvailability.objects.filter(variant=item, channel=channel).exists()


def test_a_locations_deficit_does_not_eat_another_locations_stock(market, item):
    channel, big, _small, _closed = market
    StockLevel.objects.filter(location=big, variant=item).update(on_hand=-4)

    availability_refresh(variant_ids=[item.pk])

    assert promised(item, channel) == (3, False)


def test_each_channel_counts_only_its_own_locations_and_buffers(market, item):
    channel, big, small, _closed = market
    app = ChannelFactory(code="app-av", kind="app")
    StockRuleFactory(channel=app, location=big, buffer=0)
    StockRuleFactory(channel=app, location=small, buffer=3)

    availability_refresh(variant_ids=[item.pk])

    assert promised(item, channel) == (9, False)
    assert promised(item, app) == (7 + 0, False)


def test_inactive_locations_are_left_out(market, item):
    channel, big, _small, closed = market
    closed.is_active = True
    closed.save()
    availability_refresh(variant_ids=[item.pk])
    assert promised(item, channel) == (109, False)

    big.is_active = False
    big.save()
    closed.is_active = False
    closed.save()
    availability_refresh(variant_ids=[item.pk])

    assert promised(item, channel) == (3, False)


def test_the_low_stock_flag(market, item):
    channel = market[0]
    ChannelStockPolicy.objects.create(channel=channel, low_stock_threshold=9)
    availability_refresh(variant_ids=[item.pk])
    assert promised(item, channel) == (9, True)

    ChannelStockPolicy.objects.filter(channel=channel).update(low_stock_threshold=8)
    availability_refresh(variant_ids=[item.pk])
    assert promised(item, channel) == (9, False)


def test_availability_state():
    assert availability_state(0, False) == "out_of_stock"
    assert availability_state(0, True) == "out_of_stock"
    assert availability_state(3, True) == "low_stock"
    assert availability_state(3, False) == "in_stock"


# --- Events ------------------------------------------------------------------------------------


def test_events_only_when_crossing_zero_or_the_low_stock_line(market):
    channel, big, small, _closed = market
    ChannelStockPolicy.objects.create(channel=channel, low_stock_threshold=3)
    variant = VariantFactory(sku="AV-EV")

    def on_hand(units):
        set_stock(small, variant, units)
        return availability_refresh(variant_ids=[variant.pk])

    steps = [on_hand(units) for units in (10, 8, 3, 2, 0, 0, 1)]

    assert [(r.rows_written, r.events) for r in steps] == [
        (1, 1),
        (1, 0),
        (1, 1),
        (1, 0),
        (1, 1),
        (0, 0),
        (1, 1),
    ]

    def payload(quantity, previous, state, previous_state):
        return (
            str(variant.pk),
            {
                "sku": "AV-EV",
                "channel": "market",
                "quantity": quantity,
                "previous_quantity": previous,
                "state": state,
                "previous_state": previous_state,
            },
        )

    assert changes() == [
        payload(10, 0, "in_stock", "out_of_stock"),
        payload(3, 8, "low_stock", "in_stock"),
        payload(0, 2, "out_of_stock", "low_stock"),
        payload(1, 0, "low_stock", "out_of_stock"),
    ]
    assert OutboxEvent.objects.get(payload__quantity=10).subject_type == "variant"
    assert promised(variant, channel) == (1, True)


def test_a_second_refresh_writes_nothing(market, item):
    first = availability_refresh()
    row = ChannelAvailability.objects.get(variant=item, channel=market[0])

    second = availability_refresh()

    assert (first.rows_written, first.events) == (1, 1)
    assert (second.rows_written, second.events) == (0, 0)
    assert second.variants == first.variants
    assert ChannelAvailability.objects.get(pk=row.pk).updated_at == row.updated_at
    assert OutboxEvent.objects.filter(type=CHANGED).count() == 1


def test_the_full_sweep_pages_cover_every_variant_once(market, monkeypatch):
    """The sweep reads pages of variants as key ranges: with pages of 2 and gaps in the keys
    (deleted variants), every variant is computed once, as a refresh of the listed ids does."""
    from inventory.services import availability

    _channel, big, small, _closed = market
    variants = [VariantFactory(sku=f"PG-{n}") for n in range(7)]
    for n, variant in enumerate(variants):
        set_stock(big, variant, 10 + n)
        set_stock(small, variant, n)
    for gone in (variants[2], variants[5]):
        StockLevel.objects.filter(variant=gone).delete()
        gone.delete()
    kept = [v for v in variants if v not in (variants[2], variants[5])]
    monkeypatch.setattr(availability, "SWEEP_BATCH", 2)
    batches = list(availability._variant_batches(None))

    result = availability_refresh()

    assert [(b.after, b.last) for b in batches] == [
        (0, kept[1].pk),
        (kept[1].pk, kept[3].pk),
        (kept[3].pk, kept[4].pk),
    ]
    assert (result.variants, result.rows_written) == (5, 5)
    swept = dict(ChannelAvailability.objects.values_list("variant_id", "quantity"))
    ChannelAvailability.objects.all().delete()
    availability_refresh(variant_ids=[v.pk for v in kept])
    assert dict(ChannelAvailability.objects.values_list("variant_id", "quantity")) == swept
    # big: on hand - 1 safety - 1 rule buffer; small: on hand
    assert swept == {v.pk: (10 + n - 2) + n for n, v in enumerate(variants) if v in kept}


def test_a_channel_whose_rules_are_removed_falls_to_zero(market, item):
    channel = market[0]
    availability_refresh(variant_ids=[item.pk])
    assert promised(item, channel) == (9, False)

    channel.stock_rules.all().delete()
    result = availability_refresh()

    assert promised(item, channel) == (0, False)
    assert result.rows_written == 1
    assert changes()[-1][1] == {
        "sku": "AV-1",
        "channel": "market",
        "quantity": 0,
        "previous_quantity": 9,
        "state": "out_of_stock",
        "previous_state": "in_stock",
    }
    assert availability_refresh().rows_written == 0


def test_a_refresh_of_some_variants_brings_a_channel_that_lost_its_rules_to_zero(market, item):
    channel = market[0]
    other = VariantFactory(sku="AV-2")
    set_stock(market[2], other, 4)
    availability_refresh(variant_ids=[item.pk, other.pk])
    channel.stock_rules.all().delete()  # no channel is fed by any rule now

    result = availability_refresh(variant_ids=[item.pk])

    assert promised(item, channel) == (0, False)
    assert promised(other, channel) == (4, False)  # not asked for: left to its own refresh
    assert result.rows_written == 1
    assert changes()[-1][1]["previous_quantity"] == 9
    assert availability_refresh(variant_ids=[item.pk]).rows_written == 0


def test_a_channel_that_lost_its_rules_falls_to_zero_beside_one_still_fed(market, item):
    channel, big, _small, _closed = market
    app = ChannelFactory(code="app-fed", kind="app")
    StockRuleFactory(channel=app, location=big)
    availability_refresh(variant_ids=[item.pk])
    assert promised(item, app) == (7, False)  # big: 10 - 2 reserved - 1 safety
    channel.stock_rules.all().delete()

    result = availability_refresh(variant_ids=[item.pk])

    assert promised(item, channel) == (0, False)
    assert promised(item, app) == (7, False)
    assert result.rows_written == 1


def test_a_refresh_of_one_variant_is_four_statements_in_its_transaction(
    market, item, django_assert_num_queries
):
    availability_refresh(variant_ids=[item.pk])  # the channels' query is prepared now
    set_stock(market[1], item, 11, reserved=2)
    # the channels (prepared), then lock the variant, what it can sell, its rows, the write
    # (the test's transaction turns the refresh's own into a savepoint: 2 more)
    with django_assert_num_queries(7):
        result = availability_refresh(variant_ids=[item.pk])
    assert result.rows_written == 1
    assert promised(item, market[0]) == (10, False)


def test_refresh_of_some_channels_only(market, item):
    channel = market[0]
    app = ChannelFactory(code="app-only", kind="app")
    StockRuleFactory(channel=app, location=market[2])

    result = availability_refresh(variant_ids=[item.pk], channel_ids=[app.pk])

    assert result.rows_written == 1
    assert promised(item, app) == (3, False)
    assert not ChannelAvailability.objects.filter(channel=channel).exists()


def test_a_messaging_channel_with_rules_promises_nothing(market, item):
    email = ChannelFactory(code="mail-av", kind="email")
    StockRuleFactory(channel=email, location=market[1])

    availability_refresh(variant_ids=[item.pk])

    assert not ChannelAvailability.objects.filter(channel=email).exists()


def test_stock_changes_refresh_availability_after_commit(
    stores, variant, web, receive, django_capture_on_commit_callbacks
):
    warehouse, north, _south = stores
    with django_capture_on_commit_callbacks(execute=True):
        receive(north, variant, 4)
    assert promised(variant, web) == (4, False)

    with django_capture_on_commit_callbacks(execute=True):
        stock_reserve(
            channel=web, lines=[ReserveLine(variant=variant, quantity=3)], reference="O-1"
        )
    assert promised(variant, web) == (1, False)

    with django_capture_on_commit_callbacks(execute=True):
        stock_adjust(location=north, variant=variant, quantity=-1, reason="Damaged")
    assert promised(variant, web) == (0, False)
    assert [p["state"] for _id, p in changes()] == ["in_stock", "out_of_stock"]


# --- Selectors ---------------------------------------------------------------------------------


def test_availability_for_channel(market, item):
    channel = market[0]
    ChannelStockPolicy.objects.create(channel=channel, low_stock_threshold=9)
    availability_refresh(variant_ids=[item.pk])
    row = ChannelAvailability.objects.get(variant=item, channel=channel)

    assert availability_for_channel("AV-1", "market") == {
        "sku": "AV-1",
        "channel": "market",
        "quantity": 9,
        "is_low_stock": True,
        "state": "low_stock",
        "updated_at": api_datetime(row.updated_at),
    }


def test_availability_for_channel_of_an_item_never_promised(market, item):
    assert availability_for_channel("AV-1", "market") == {
        "sku": "AV-1",
        "channel": "market",
        "quantity": 0,
        "is_low_stock": False,
        "state": "out_of_stock",
        "updated_at": None,
    }


def test_availability_for_channel_unknowns(market, item):
    assert availability_for_channel("NOPE", "market") is None
    with pytest.raises(UnknownChannel):
        availability_for_channel("AV-1", "nope")
    with pytest.raises(UnknownChannel):
        availability_for_channel("NOPE", "nope")
    with pytest.raises(UnknownChannel):
        availability_for_channel("AV-1", "email")


def test_availability_batch(market, item):
    channel, _big, small, _closed = market
    other = VariantFactory(sku="AV-2")
    set_stock(small, other, 4)
    availability_refresh()
    StockLevel.objects.filter(variant=item).update(on_hand=F("on_hand") + 100)  # not refreshed

    results, unknown = availability_batch(["AV-2", "NOPE", "AV-1", "AV-2", "ALSO-NOPE"], "market")

    assert [(r["sku"], r["quantity"], r["state"]) for r in results] == [
        ("AV-2", 4, "in_stock"),
        ("AV-1", 9, "in_stock"),
    ]
    assert unknown == ["NOPE", "ALSO-NOPE"]
    assert results[0]["channel"] == "market"
    assert availability_batch(["NOPE"], "market") == ([], ["NOPE"])
    for code in ("nope", "email"):
        with pytest.raises(UnknownChannel):
            availability_batch(["AV-1"], code)
        with pytest.raises(UnknownChannel):
            availability_batch(["NOPE"], code)
