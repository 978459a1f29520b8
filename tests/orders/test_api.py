"""The orders API as a contract: placing orders (ship, pickup, in store), reading them by
number or by the channel's reference, listing them, and their life (cancel, ready, collect,
ship, returns), with exact bodies and exact errors."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer, Identity
from customers.services import customer_merge
from inventory.models import ChannelStockPolicy, Reservation, Transfer
from omni.models import IdempotencyKey, OutboxEvent
from orders.models import Order, OrderStatus
from orders.services import (
    ReturnLineInput,
    order_cancel,
    order_mark_ready,
    order_ship,
    return_create,
)
from tests.orders.api_fixtures import (
    ORDERS,
    a_customer,
    assert_error,
    by_reference_url,
    iso,
    order_url,
    place,
    snapshot,
    source_of,
    web_client_fixture,  # noqa: F401
)

pytestmark = pytest.mark.django_db


def title(variant) -> str:
    return f"{variant.product.title} (size: M)"


def line_json(number, variant, quantity, unit_price, **extra) -> dict:
    return {
        "line": number,
        "sku": variant.sku,
        "title": title(variant),
        "quantity": quantity,
        "unit_price": unit_price,
        "line_total": f"{float(unit_price) * quantity:.2f}",
        "returned_quantity": 0,
        "transfer": None,
        "transfer_quantity": 0,
        **extra,
    }


def ship_body(**extra) -> dict:
    return {
        "channel": "web",
        "lines": [{"sku": "sku-a", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}],
        "fulfilment_method": "ship",
        "shipping_address": "1 rue de Rivoli, 75001 Paris",
        **extra,
    }


# --- Placing ----------------------------------------------------------------------------------


def test_place_a_shipped_order(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 5)

    response = writer.post(
        ORDERS,
        ship_body(
            identifiers=[{"kind": "email", "value": "Camille@Example.com"}],
            contact_name="Camille Martin",
            contact_email="camille@example.com",
            contact_phone="+33 6 12 34 56 78",
            note="Gift wrap",
            external_reference="WEB-1001",
        ),
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    customer = Customer.objects.get()
    assert Identity.objects.get().value == "camille@example.com"
    source = source_of(writer)
    assert response.json() == {
        "number": order.number,
        "channel": "web",
        "customer": customer.pk,
        "cart": None,
        "external_reference": "WEB-1001",
        "status": "placed",
        "fulfilment_method": "ship",
        "store": None,
        "currency": "EUR",
        "subtotal": "45.50",
        "total": "45.50",
        "refunded_total": "0.00",
        "contact_name": "Camille Martin",
        "contact_email": "camille@example.com",
        "contact_phone": "+33 6 12 34 56 78",
        "shipping_address": "1 rue de Rivoli, 75001 Paris",
        "note": "Gift wrap",
        "placed_at": iso(order.placed_at),
        "expected_ready_at": None,
        "ready_at": None,
        "closed_at": None,
        "needs_attention": False,
        "attention_reason": "",
        "source": source,
        "updated_at": iso(order.updated_at),
        "lines": [
            line_json(1, shop.a, 2, "10.00"),
            line_json(2, shop.b, 1, "25.50"),
        ],
        "pickup_code": None,
        "confirmation_url": None,
        "history": [
            {
                "from_status": None,
                "to_status": "placed",
                "at": iso(order.placed_at),
                "source": source,
                "actor": None,
                "note": "Placed",
            }
        ],
        "fulfilments": [],
        "returns": [],
    }
    assert order.source == source
    assert order.created_by is None
    assert stock.row(shop.warehouse, shop.a) == (10, 2)
    assert stock.row(shop.warehouse, shop.b) == (5, 1)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"identifiers": [{"kind": "email", "value": "camille@example.com"}], "note": "Gift"},
        {"external_reference": "WEB-77", "contact_name": "Zoé « Z » Martin"},
    ],
)
def test_a_placed_order_is_shown_as_it_reads_back_without_reading_it(writer, shop, stock, extra):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 5)
    with CaptureQueriesContext(connection) as captured:
        response = writer.post(ORDERS, ship_body(**extra))

    assert response.status_code == 201, response.content
    read_back = [
        q["sql"]
        for q in captured
        if q["sql"].startswith("SELECT")
        and any(
            f'FROM "{t}"' in q["sql"]
            for t in (
                "orders_orderline",
                "orders_return",
                "orders_orderstatuschange",
                "orders_fulfilment",
            )
        )
    ]
    assert read_back == []
    assert response.json() == writer.get(order_url(response.json()["number"])).json()


def test_ship_to_serves_the_nearest_location(writer, shop, stock):
    ChannelStockPolicy.objects.create(channel=shop.web, allocation_strategy="nearest")
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.lyon, shop.a, 10)

    response = writer.post(
        ORDERS,
        {
            **ship_body(lines=[{"sku": "SKU-A", "quantity": 3}]),
            "ship_to": {"latitude": 45.75, "longitude": 4.85},
        },
    )

    assert response.status_code == 201, response.content
    assert stock.row(shop.lyon, shop.a) == (10, 3)
    assert stock.row(shop.warehouse, shop.a) == (10, 0)


def test_place_a_pickup_with_stock_at_the_store(writer, shop, stock):
    stock.put(shop.paris, shop.a, 5)

    response = writer.post(
        ORDERS,
        {
            "channel": "web",
            "lines": [{"sku": "SKU-A", "quantity": 2}],
            "fulfilment_method": "pickup",
            "store": "paris",
            "contact_email": "camille@example.com",
        },
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    body = response.json()
    assert (body["status"], body["store"], body["expected_ready_at"]) == ("placed", "paris", None)
    assert body["pickup_code"] == order.pickup_code
    assert len(order.pickup_code) == 6
    assert body["confirmation_url"] == f"http://testserver/pickup/{order.public_token}/"
    assert body["customer"] is None
    assert stock.row(shop.paris, shop.a) == (5, 2)


def test_pickup_elsewhere_waits_for_a_transfer(writer, shop, stock):
    stock.put(shop.paris, shop.a, 1)
    stock.put(shop.warehouse, shop.a, 10)

    response = writer.post(
        ORDERS,
        {
            "channel": "web",
            "lines": [{"sku": "SKU-A", "quantity": 3}],
            "fulfilment_method": "pickup",
            "store": "paris",
        },
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    transfer = Transfer.objects.get()
    body = response.json()
    assert body["status"] == "awaiting_transfer"
    assert body["expected_ready_at"] == iso(order.expected_ready_at)
    assert order.expected_ready_at is not None
    assert body["lines"] == [
        line_json(1, shop.a, 3, "10.00", transfer=transfer.number, transfer_quantity=2)
    ]
    assert [(h["from_status"], h["to_status"]) for h in body["history"]] == [
        (None, "awaiting_transfer")
    ]


def test_staff_sell_in_store(staff_api, staff_user, shop, stock):
    stock.put(shop.paris, shop.a, 5)

    response = staff_api.post(
        ORDERS,
        {
            "channel": "web",
            "lines": [{"sku": "SKU-A", "quantity": 2}],
            "fulfilment_method": "in_store",
            "store": "paris",
        },
    )

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    body = response.json()
    assert body["status"] == "completed"
    assert body["closed_at"] == iso(order.placed_at)
    assert body["source"] == f"user:{staff_user.pk}"
    assert body["history"] == [
        {
            "from_status": None,
            "to_status": "completed",
            "at": iso(order.placed_at),
            "source": f"user:{staff_user.pk}",
            "actor": "merch",
            "note": "Placed",
        }
    ]
    assert body["fulfilments"] == [
        {
            "method": "in_store",
            "location": "paris",
            "units": 2,
            "carrier": "",
            "tracking_number": "",
            "created_at": iso(order.placed_at),
            "actor": "merch",
        }
    ]
    assert order.created_by == staff_user
    assert stock.row(shop.paris, shop.a) == (3, 0)


def test_a_bound_client_places_on_its_channel_by_default(web_client, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 10)

    response = web_client.post(ORDERS, ship_body(channel=None))

    assert response.status_code == 201, response.content
    assert response.json()["channel"] == "web"


def test_an_order_for_a_known_customer_id(writer, shop, stock):
    customer = a_customer()
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 10)

    response = writer.post(ORDERS, ship_body(customer=customer.pk))

    assert response.status_code == 201, response.content
    assert response.json()["customer"] == customer.pk


# --- Idempotency ------------------------------------------------------------------------------


def test_the_same_key_twice_places_one_order(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 10)

    first = writer.post(ORDERS, ship_body(), HTTP_IDEMPOTENCY_KEY="order-1")
    again = writer.post(ORDERS, ship_body(), HTTP_IDEMPOTENCY_KEY="order-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Order.objects.count() == 1
    assert stock.row(shop.warehouse, shop.a) == (10, 2)
    assert OutboxEvent.objects.filter(type="order.placed").count() == 1


def test_the_same_key_with_another_body_is_refused(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 10)
    writer.post(ORDERS, ship_body(), HTTP_IDEMPOTENCY_KEY="order-1")
    before = snapshot()

    response = writer.post(ORDERS, ship_body(note="changed"), HTTP_IDEMPOTENCY_KEY="order-1")

    assert_error(response, 422, "idempotency_key_reused")
    assert snapshot() == before


def test_short_stock_is_refused_whole_and_the_key_can_be_retried(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 2)
    stock.put(shop.lyon, shop.a, 1)
    stock.put(shop.warehouse, shop.b, 10)
    body = ship_body(lines=[{"sku": "SKU-B", "quantity": 1}, {"sku": "SKU-A", "quantity": 5}])
    before = snapshot()

    response = writer.post(ORDERS, body, HTTP_IDEMPOTENCY_KEY="order-1")

    error = assert_error(response, 409, "insufficient_stock")
    assert error["details"] == {
        "lines": [{"index": 1, "sku": "SKU-A", "requested": 5, "available": 3}]
    }
    assert snapshot() == before
    assert IdempotencyKey.objects.count() == 0

    stock.put(shop.paris, shop.a, 2)
    retry = writer.post(ORDERS, body, HTTP_IDEMPOTENCY_KEY="order-1")
    assert retry.status_code == 201, retry.content
    assert Order.objects.count() == 1


def test_a_channel_reference_twice_is_a_duplicate(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 10)
    first = writer.post(ORDERS, ship_body(external_reference="MP-77")).json()["number"]
    before = snapshot()

    response = writer.post(ORDERS, ship_body(external_reference="MP-77"))

    error = assert_error(response, 409, "duplicate_order")
    assert error["details"] == {
        "external_reference": [f"Already placed as {first}."],
        "order": first,
    }
    assert snapshot() == before


# --- Invalid orders ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code", "details"),
    [
        (
            {"lines": None, "fulfilment_method": None},
            "validation_error",
            {
                "lines": ["This field may not be null."],
                "fulfilment_method": ["This field may not be null."],
            },
        ),
        ({"lines": []}, "validation_error", {"lines": ["Give at least one line."]}),
        (
            {"lines": [{"sku": "SKU-A", "quantity": 1}, {"sku": "SKU-B", "quantity": 0}]},
            "validation_error",
            {"lines": {"1": {"quantity": ["Ensure this value is greater than or equal to 1."]}}},
        ),
        (
            {"lines": [{"sku": "SKU-A", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]},
            "validation_error",
            {"lines": {"1": {"sku": ["Unknown SKU NOPE."]}}},
        ),
        ({"channel": "nope"}, "validation_error", {"channel": ["Unknown channel nope."]}),
        (
            {"channel": "email"},
            "not_a_sales_channel",
            {"channel": ["email is not an active sales channel."]},
        ),
        ({"shipping_address": ""}, "validation_error", {"shipping_address": ["Required to ship."]}),
        (
            {"fulfilment_method": "drone"},
            "validation_error",
            {"fulfilment_method": ["One of: ship, pickup, in_store."]},
        ),
        (
            {"fulfilment_method": "pickup"},
            "validation_error",
            {"store": ["Required for pickup and in-store orders."]},
        ),
        (
            {"fulfilment_method": "pickup", "store": "nowhere"},
            "validation_error",
            {"store": ["Unknown location nowhere."]},
        ),
        (
            {"fulfilment_method": "pickup", "store": "wh"},
            "no_pickup_here",
            {"store": ["wh does not offer pickup."]},
        ),
        (
            {"identifiers": [{"kind": "email", "value": "not-an-email"}]},
            "validation_error",
            {"identifiers": {"0": ["'not-an-email' is not an email address."]}},
        ),
        (
            {"customer": "12"},
            "validation_error",
            {"customer": ["A customer id (a whole number)."]},
        ),
        (
            {"contact_name": "x" * 201},
            "validation_error",
            {"contact_name": ["At most 200 characters."]},
        ),
        (
            {"ship_to": {"latitude": 91, "longitude": 0}},
            "validation_error",
            {"ship_to": {"latitude": ["Ensure this value is less than or equal to 90."]}},
        ),
    ],
)
def test_invalid_orders_are_refused_whole(writer, shop, stock, change, code, details):
    stock.put(shop.warehouse, shop.a, 10)
    stock.put(shop.warehouse, shop.b, 10)
    before = snapshot()

    response = writer.post(ORDERS, {**ship_body(), **change})

    assert assert_error(response, 400, code)["details"] == details
    assert snapshot() == before


def test_an_unbound_client_must_name_the_channel(writer, shop):
    response = writer.post(ORDERS, ship_body(channel=None))

    error = assert_error(response, 400, "validation_error")
    assert error["details"] == {"channel": ["Required: your API client is bound to no channel."]}


def test_an_unknown_customer_id_is_not_found(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)
    before = snapshot()

    response = writer.post(ORDERS, ship_body(customer=999999))

    assert_error(response, 404, "not_found")
    assert snapshot() == before


def test_a_merged_customer_id_names_the_survivor(writer, shop, stock):
    first, second = a_customer("ana@example.com"), a_customer("ana.m@example.com")
    survivor, _ = customer_merge(customers=[first.pk, second.pk], reason="same", source="test")
    merged = second.pk if survivor.pk == first.pk else first.pk
    before = snapshot()

    response = writer.post(ORDERS, ship_body(customer=merged))

    assert assert_error(response, 404, "customer_merged")["details"] == {"survivor": survivor.pk}
    assert snapshot() == before


def test_a_sku_not_sold_on_the_channel(writer, shop, stock):
    stock.put(shop.warehouse, shop.a, 10)

    response = writer.post(
        ORDERS, ship_body(channel="app", lines=[{"sku": "SKU-A", "quantity": 1}])
    )

    error = assert_error(response, 400, "validation_error")
    assert error["details"] == {"lines": {"0": {"sku": ["SKU-A is not sold on app."]}}}


# --- Reading ----------------------------------------------------------------------------------


def test_get_an_order_by_number_in_any_case(reader, shop, stock):
    order = place(shop, stock)

    response = reader.get(order_url(order.number.lower()))

    assert response.status_code == 200, response.content
    assert response.json()["number"] == order.number
    assert response.json()["lines"] == [line_json(1, shop.a, 2, "10.00")]


def test_an_unknown_order_is_not_found(reader, shop):
    error = assert_error(reader.get(order_url("O-NOPE-NOPE")), 404, "not_found")
    assert error["message"] == "No order O-NOPE-NOPE."


def test_get_an_order_by_the_channels_reference(reader, shop, stock):
    order = place(shop, stock, external_reference="2025/0042 A")

    response = reader.get(by_reference_url("web", "2025%2F0042%20A"))

    assert response.status_code == 200, response.content
    assert response.json()["number"] == order.number
    assert response.json()["external_reference"] == "2025/0042 A"
    assert_error(reader.get(by_reference_url("app", "2025%2F0042%20A")), 404, "not_found")
    assert_error(reader.get(by_reference_url("web", "2025-0042")), 404, "not_found")


def test_getting_an_order_takes_a_fixed_number_of_queries(
    reader, staff_user, shop, stock, django_assert_num_queries
):
    order = place(shop, stock, quantity=3)
    order_ship(order=order, source="test", actor=staff_user)
    for _ in range(2):
        return_create(
            order=order,
            location=shop.paris,
            lines=[ReturnLineInput("1", 1)],
            source="test",
            actor=staff_user,
        )
    reader.get(order_url(order.number))

    # token, order (channel, store, cart), lines, history, fulfilments, returns, return lines
    with django_assert_num_queries(7):
        response = reader.get(order_url(order.number))
    body = response.json()
    assert [h["actor"] for h in body["history"]] == [None, "merch"]
    assert [f["actor"] for f in body["fulfilments"]] == ["merch"]
    assert [[line["sku"] for line in r["lines"]] for r in body["returns"]] == [["SKU-A"]] * 2


# --- Listing ----------------------------------------------------------------------------------


def test_list_orders_newest_first(reader, shop, stock):
    first = place(shop, stock)
    second = place(shop, stock, method="pickup")

    response = reader.get(ORDERS)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["next"], body["previous"]) == (2, None, None)
    assert [o["number"] for o in body["results"]] == [second.number, first.number]
    summary = body["results"][1]
    assert "history" not in summary and "pickup_code" not in summary
    assert summary["lines"] == [line_json(1, shop.a, 2, "10.00")]


def test_list_pages_with_limit_and_offset(reader, shop, stock):
    numbers = [place(shop, stock).number for _ in range(3)]

    body = reader.get(ORDERS, {"limit": 2, "offset": 1}).json()

    assert body["count"] == 3
    assert [o["number"] for o in body["results"]] == numbers[::-1][1:]
    assert body["next"] is None
    assert body["previous"] is not None


@pytest.mark.parametrize("n", [2, 8])
def test_list_query_count_does_not_grow(reader, shop, stock, n, django_assert_num_queries):
    for _ in range(n):
        place(shop, stock, method="pickup", quantity=1)
    reader.get(ORDERS)  # the token's first use records last_used_at

    # token, count, orders (channel, store and cart joined), lines (transfer joined)
    with django_assert_num_queries(4):
        response = reader.get(ORDERS, {"limit": 500})
    assert len(response.json()["results"]) == n

    with django_assert_num_queries(4):
        response = reader.get(ORDERS, {"status": "placed", "store": "paris", "channel": "web"})
    assert response.json()["count"] == n


def test_list_filters(reader, shop, stock, email):
    customer = a_customer()
    shipped = place(shop, stock, external_reference="MP-1", customer=customer)
    order_ship(order=shipped, source="test")
    pickup = place(shop, stock, method="pickup")
    in_store = place(shop, stock, method="in_store", channel=shop.pos)
    Order.objects.filter(pk=pickup.pk).update(
        needs_attention=True, attention_reason="Transfer lost"
    )
    Order.objects.filter(pk=shipped.pk).update(placed_at=timezone.now() - timedelta(days=3))
    yesterday = iso(timezone.now() - timedelta(days=1))

    def numbers(**params):
        response = reader.get(ORDERS, params)
        assert response.status_code == 200, response.content
        return sorted(o["number"] for o in response.json()["results"])

    assert numbers(channel="web") == sorted([shipped.number, pickup.number])
    assert numbers(channel="store") == [in_store.number]
    assert numbers(status="shipped") == [shipped.number]
    assert numbers(fulfilment_method="in_store") == [in_store.number]
    assert numbers(store="paris") == sorted([pickup.number, in_store.number])
    assert numbers(customer=customer.pk) == [shipped.number]
    assert numbers(placed_before=yesterday) == [shipped.number]
    assert numbers(placed_after=yesterday) == sorted([pickup.number, in_store.number])
    assert numbers(external_reference="MP-1") == [shipped.number]
    assert numbers(needs_attention="true") == [pickup.number]
    assert numbers(needs_attention="false") == sorted([shipped.number, in_store.number])
    detail = reader.get(order_url(pickup.number)).json()
    assert (detail["needs_attention"], detail["attention_reason"]) == (True, "Transfer lost")


@pytest.mark.parametrize(
    ("params", "details"),
    [
        (
            {"status": "lost"},
            {"status": ["Select a valid choice. lost is not one of the available choices."]},
        ),
        ({"needs_attention": "maybe"}, {"needs_attention": ["Enter true or false."]}),
        ({"customer": "one"}, {"customer": ["Enter a whole number."]}),
        ({"placed_after": "yesterday"}, {"placed_after": ["Enter a valid date/time."]}),
    ],
)
def test_invalid_filters_are_errors(reader, shop, params, details):
    assert assert_error(reader.get(ORDERS, params), 400, "validation_error")["details"] == details


# --- Cancel -----------------------------------------------------------------------------------


def test_cancel_an_order_releases_its_stock(writer, shop, stock):
    order = place(shop, stock)

    response = writer.post(order_url(order.number, "cancel"), {"reason": "Customer asked"})

    assert response.status_code == 200, response.content
    order.refresh_from_db()
    body = response.json()
    assert (body["status"], body["closed_at"]) == ("cancelled", iso(order.closed_at))
    assert body["history"][-1] == {
        "from_status": "placed",
        "to_status": "cancelled",
        "at": iso(order.closed_at),
        "source": source_of(writer),
        "actor": None,
        "note": "Customer asked",
    }
    assert stock.row(shop.warehouse, shop.a) == (10, 0)


def test_cancel_without_a_body(writer, shop, stock):
    order = place(shop, stock)

    response = writer.post(order_url(order.number, "cancel"))

    assert response.status_code == 200, response.content
    assert response.json()["history"][-1]["note"] == ""


def test_cancelling_a_shipped_order_is_an_invalid_transition(writer, shop, stock):
    order = place(shop, stock)
    order_ship(order=order, source="test")
    before = snapshot()

    response = writer.post(order_url(order.number, "cancel"), {"reason": "Too late"})

    error = assert_error(response, 409, "invalid_transition")
    assert error["details"] == {"status": ["shipped -> cancelled is not allowed."]}
    assert snapshot() == before


# --- Pickup: ready and collect ----------------------------------------------------------------


def test_mark_ready_then_collect_with_the_code(writer, shop, stock):
    order = place(shop, stock, method="pickup")

    ready = writer.post(order_url(order.number, "ready"))

    assert ready.status_code == 200, ready.content
    order.refresh_from_db()
    assert (ready.json()["status"], ready.json()["ready_at"]) == ("ready", iso(order.ready_at))
    assert OutboxEvent.objects.filter(type="order.pickup_ready").count() == 1

    collected = writer.post(order_url(order.number, "collect"), {"code": order.pickup_code})

    assert collected.status_code == 200, collected.content
    order.refresh_from_db()
    body = collected.json()
    assert body["status"] == "collected"
    assert [(h["from_status"], h["to_status"]) for h in body["history"]] == [
        (None, "placed"),
        ("placed", "ready"),
        ("ready", "collected"),
    ]
    assert body["fulfilments"] == [
        {
            "method": "pickup",
            "location": "paris",
            "units": 2,
            "carrier": "",
            "tracking_number": "",
            "created_at": iso(order.closed_at),
            "actor": None,
        }
    ]
    assert stock.row(shop.paris, shop.a) == (8, 0)


def test_a_wrong_pickup_code_hands_nothing_over(writer, shop, stock):
    order = place(shop, stock, method="pickup")
    order_mark_ready(order=order, source="test")
    before = snapshot()
    wrong = "123456" if order.pickup_code != "123456" else "654321"

    response = writer.post(order_url(order.number, "collect"), {"code": wrong})

    error = assert_error(response, 400, "wrong_pickup_code")
    assert error["details"] == {"code": ["Wrong pickup code."]}
    assert snapshot() == before


def test_collect_needs_a_code(writer, shop, stock):
    order = place(shop, stock, method="pickup")

    error = assert_error(
        writer.post(order_url(order.number, "collect"), {}), 400, "validation_error"
    )
    assert error["details"] == {"code": ["This field is required."]}


def test_collecting_before_ready_is_an_invalid_transition(writer, shop, stock):
    order = place(shop, stock, method="pickup")
    before = snapshot()

    response = writer.post(order_url(order.number, "collect"), {"code": order.pickup_code})

    assert_error(response, 409, "invalid_transition")
    assert snapshot() == before


def test_marking_a_shipped_order_ready_is_an_invalid_transition(writer, shop, stock):
    order = place(shop, stock)
    before = snapshot()

    assert_error(writer.post(order_url(order.number, "ready")), 409, "invalid_transition")
    assert snapshot() == before


# --- Ship -------------------------------------------------------------------------------------


def test_ship_an_order(writer, shop, stock):
    order = place(shop, stock)

    response = writer.post(
        order_url(order.number, "ship"), {"carrier": "Colissimo", "tracking_number": "6A123"}
    )

    assert response.status_code == 200, response.content
    order.refresh_from_db()
    body = response.json()
    assert body["status"] == "shipped"
    assert body["fulfilments"] == [
        {
            "method": "ship",
            "location": "wh",
            "units": 2,
            "carrier": "Colissimo",
            "tracking_number": "6A123",
            "created_at": iso(order.closed_at),
            "actor": None,
        }
    ]
    assert stock.row(shop.warehouse, shop.a) == (8, 0)
    event = OutboxEvent.objects.get(type="order.shipped")
    assert (event.payload["carrier"], event.payload["tracking_number"]) == ("Colissimo", "6A123")


def test_shipping_a_pickup_is_an_invalid_transition(writer, shop, stock):
    order = place(shop, stock, method="pickup")
    before = snapshot()

    response = writer.post(order_url(order.number, "ship"), {"carrier": "DHL"})

    error = assert_error(response, 409, "invalid_transition")
    assert error["details"] == {"status": ["placed -> shipped is not allowed."]}
    assert snapshot() == before


def test_actions_on_an_unknown_order_are_not_found(writer, shop):
    for action in ("cancel", "ready", "collect", "ship", "returns"):
        assert_error(writer.post(order_url("O-NOPE-NOPE", action), {}), 404, "not_found")


# --- Returns ----------------------------------------------------------------------------------


def test_return_part_of_an_order_in_another_store(writer, shop, stock):
    order = place(shop, stock, quantity=3)
    order_ship(order=order, source="test")

    response = writer.post(
        order_url(order.number, "returns"),
        {
            "location": "lyon",
            "lines": [{"line": 1, "quantity": 1, "disposition": "restock"}],
            "reason": "Too small",
        },
    )

    assert response.status_code == 201, response.content
    record = order.returns.get()
    assert response.json() == {
        "number": record.number,
        "order": order.number,
        "location": "lyon",
        "reason": "Too small",
        "refund_amount": "10.00",
        "created_at": iso(record.created_at),
        "source": source_of(writer),
        "actor": None,
        "lines": [{"line": 1, "sku": "SKU-A", "quantity": 1, "disposition": "restock"}],
    }
    assert stock.row(shop.lyon, shop.a) == (1, 0)
    order.refresh_from_db()
    assert (order.status, str(order.refunded_total)) == (OrderStatus.SHIPPED, "10.00")

    # The rest, by SKU, written off, with a smaller refund: everything is back.
    response = writer.post(
        order_url(order.number, "returns"),
        {
            "location": "paris",
            "lines": [{"line": "sku-a", "quantity": 2, "disposition": "write_off"}],
            "refund_amount": "15.00",
        },
    )
    assert response.status_code == 201, response.content
    assert stock.row(shop.paris, shop.a) == (0, 0)

    listed = writer.get(order_url(order.number, "returns")).json()
    assert listed["count"] == 2
    assert [r["refund_amount"] for r in listed["results"]] == ["15.00", "10.00"]
    detail = writer.get(order_url(order.number)).json()
    assert (detail["status"], detail["refunded_total"]) == ("returned", "25.00")
    assert [r["number"] for r in detail["returns"]] == [r["number"] for r in listed["results"]]
    assert detail["lines"][0]["returned_quantity"] == 3


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        (
            {"location": "lyon", "lines": [{"line": 1, "quantity": 3}]},
            "too_many_returned",
            {"lines": {"0": {"quantity": ["At most 2."]}}},
        ),
        (
            {"location": "lyon", "lines": [{"line": 7, "quantity": 1}]},
            "validation_error",
            {"lines": {"0": {"line": ["No line 7 on this order."]}}},
        ),
        (
            {"location": "lyon", "lines": [{"line": 1, "quantity": 1, "disposition": "burn"}]},
            "validation_error",
            {"lines": {"0": {"disposition": ["One of: restock, write_off."]}}},
        ),
        (
            {"location": "nowhere", "lines": [{"line": 1, "quantity": 1}]},
            "validation_error",
            {"location": ["Unknown location nowhere."]},
        ),
        (
            {"location": "lyon", "lines": [{"line": 1, "quantity": 1}], "refund_amount": "99"},
            "refund_too_high",
            {"refund_amount": ["At most 10.00."]},
        ),
        (
            {"location": "lyon", "lines": []},
            "validation_error",
            {"lines": ["Give at least one line."]},
        ),
    ],
)
def test_invalid_returns_are_refused_whole(writer, shop, stock, body, code, details):
    order = place(shop, stock)
    order_ship(order=order, source="test")
    before = snapshot()

    response = writer.post(order_url(order.number, "returns"), body)

    assert assert_error(response, 400, code)["details"] == details
    assert snapshot() == before


def test_an_open_order_takes_no_return(writer, shop, stock):
    order = place(shop, stock)
    before = snapshot()

    response = writer.post(
        order_url(order.number, "returns"),
        {"location": "lyon", "lines": [{"line": 1, "quantity": 1}]},
    )

    error = assert_error(response, 409, "not_returnable")
    assert error["details"] == {
        "order": ["Only collected, shipped or completed orders take returns."]
    }
    assert snapshot() == before


def test_an_order_without_returns_lists_none(reader, shop, stock):
    order = place(shop, stock)
    order_cancel(order=order, source="test")

    response = reader.get(order_url(order.number, "returns"))

    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert Reservation.objects.filter(status="active").count() == 0
