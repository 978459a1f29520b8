"""The inventory API as a contract: availability, stock per location, POS movement batches,
counts, transfers, reservations and locations."""

import json
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import (
    ChannelAvailability,
    ChannelStockPolicy,
    Location,
    MovementBatch,
    Reservation,
    StockCount,
    StockCountLine,
    StockLevel,
    StockMovement,
    Transfer,
    TransferLine,
)
from inventory.services import (
    ReserveLine,
    availability_refresh,
    stock_count_request,
    stock_reconcile,
    stock_reserve,
    transfer_request,
    transfer_ship,
)
from omni.models import ApiClientAccess, Channel, IdempotencyKey, OutboxEvent
from omni.services import api_client_create
from tests.factories import LocationFactory, ProductFactory, VariantFactory
from tests.omni.test_schema import assert_matches_schema

pytestmark = pytest.mark.django_db

BASE = "/api/v1/inventory"
LOCATIONS = f"{BASE}/locations/"
BATCHES = f"{BASE}/movements/batches/"
COUNTS = f"{BASE}/counts/"
TRANSFERS = f"{BASE}/transfers/"
RESERVATIONS = f"{BASE}/reservations/"
RELEASE = f"{BASE}/reservations/release/"
CONSUME = f"{BASE}/reservations/consume/"


def availability_url(channel: str, sku: str) -> str:
    return f"{BASE}/availability/{channel}/{sku}/"


def batch_url(channel: str) -> str:
    return f"{BASE}/availability/{channel}/batch/"


def stock_url(sku: str) -> str:
    return f"{BASE}/stock/{sku}/"


def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


def snapshot() -> dict:
    """Every inventory row (and the outbox), to prove that a refused call changed nothing."""
    models = (
        Location,
        StockLevel,
        StockMovement,
        MovementBatch,
        Reservation,
        StockCount,
        StockCountLine,
        Transfer,
        TransferLine,
        ChannelAvailability,
    )
    rows = {model.__name__: list(model.objects.order_by("pk").values()) for model in models}
    return {**rows, "events": OutboxEvent.objects.count()}


def level(location, variant) -> tuple[int, int]:
    row = StockLevel.objects.get(location=location, variant=variant)
    return row.on_hand, row.reserved


def ago(**kwargs) -> str:
    return (timezone.now() - timedelta(**kwargs)).isoformat()


@pytest.fixture
def tee(db):
    return VariantFactory(sku="TEE-M")


@pytest.fixture
def stocked(stores, tee, receive, django_capture_on_commit_callbacks):
    """TEE-M: 3 at the warehouse, 2 in the north store; 5 promised to the web channel."""
    warehouse, north, _south = stores
    with django_capture_on_commit_callbacks(execute=True):
        receive(warehouse, tee, 3)
        receive(north, tee, 2)
    return tee


@pytest.fixture
def pos(db):
    """A till: a read-and-write API client that speaks for the store channel."""
    client, token = api_client_create(
        name="till", access=ApiClientAccess.WRITE, channel=Channel.objects.get(code="store")
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    api.api_client = client
    return api


@pytest.fixture
def schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


# --- Who may call -----------------------------------------------------------------------------


READ_PATHS = [
    availability_url("web", "TEE-M"),
    stock_url("TEE-M"),
    LOCATIONS,
    f"{LOCATIONS}wh/",
    BATCHES + "b1/",
    COUNTS,
    f"{COUNTS}1/",
    TRANSFERS,
    f"{TRANSFERS}TR-000001/",
    RESERVATIONS,
]
WRITE_PATHS = [
    BATCHES,
    COUNTS,
    TRANSFERS,
    f"{TRANSFERS}TR-000001/ship/",
    f"{TRANSFERS}TR-000001/receive/",
    f"{TRANSFERS}TR-000001/cancel/",
    RESERVATIONS,
    RELEASE,
    CONSUME,
]


@pytest.mark.parametrize("path", READ_PATHS)
def test_reads_need_credentials(api, path):
    body = assert_error(api.get(path), 401, "not_authenticated")
    assert body["message"] == "Authentication credentials were not provided."


@pytest.mark.parametrize("path", [*WRITE_PATHS, batch_url("web")])
def test_writes_need_credentials(api, stocked, path):
    before = snapshot()

    assert_error(api.post(path, {}), 401, "not_authenticated")

    assert snapshot() == before


def _valid_writes(stores, tee) -> list[tuple[str, dict]]:
    warehouse, north, south = stores
    transfer = transfer_request(
        from_location=warehouse, to_location=south, lines=[{"sku": tee.sku, "quantity": 1}]
    )
    stock_reserve(
        channel=Channel.objects.get(code="web"),
        lines=[ReserveLine(variant=tee, quantity=1)],
        reference="O-1",
    )
    return [
        (
            BATCHES,
            {
                "batch_id": "b1",
                "location": "north",
                "movements": [{"id": "m1", "sku": "TEE-M", "kind": "sale", "quantity": 1}],
            },
        ),
        (
            COUNTS,
            {
                "location": "north",
                "counted_at": ago(hours=1),
                "lines": [{"sku": "TEE-M", "quantity": 2}],
            },
        ),
        (
            TRANSFERS,
            {
                "from_location": "wh",
                "to_location": "north",
                "lines": [{"sku": "TEE-M", "quantity": 1}],
            },
        ),
        (f"{TRANSFERS}{transfer.number}/ship/", {}),
        (f"{TRANSFERS}{transfer.number}/cancel/", {}),
        (
            RESERVATIONS,
            {"channel": "web", "reference": "O-2", "lines": [{"sku": "TEE-M", "quantity": 1}]},
        ),
        (RELEASE, {"reference": "O-1"}),
        (CONSUME, {"reference": "O-1"}),
    ]


def test_read_only_client_is_refused_every_write_and_nothing_changes(reader, stores, stocked):
    writes = _valid_writes(stores, stocked)
    before = snapshot()

    for path, payload in writes:
        response = reader.post(path, payload, HTTP_IDEMPOTENCY_KEY=f"key-{path}")
        body = assert_error(response, 403, "permission_denied")
        assert body["message"] == "This API client has read-only access.", path

    assert snapshot() == before
    assert IdempotencyKey.objects.count() == 0


def test_read_only_client_may_post_the_availability_batch(reader, stocked):
    response = reader.post(batch_url("web"), {"skus": ["TEE-M"]})

    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["quantity"] == 5


def test_staff_may_read_and_write(staff_api, staff_user, stocked):
    assert staff_api.get(availability_url("web", "TEE-M")).json()["quantity"] == 5
    response = staff_api.post(
        BATCHES,
        {
            "batch_id": "b1",
            "location": "north",
            "movements": [{"id": "m1", "sku": "TEE-M", "kind": "receipt", "quantity": 4}],
        },
    )

    assert response.status_code == 201, response.content
    movement = StockMovement.objects.get(idempotency_key="m1")
    assert (movement.source, movement.actor, movement.channel) == (
        f"user:{staff_user.pk}",
        staff_user,
        None,
    )
    assert staff_api.get(f"{BATCHES}b1/").status_code == 200


# --- Availability -----------------------------------------------------------------------------


def test_availability_of_a_sku_on_a_channel(reader, stocked, web):
    row = ChannelAvailability.objects.get(variant=stocked, channel=web)

    response = reader.get(availability_url("web", "TEE-M"))

    assert response.status_code == 200
    assert response.json() == {
        "sku": "TEE-M",
        "channel": "web",
        "quantity": 5,
        "is_low_stock": False,
        "state": "in_stock",
        "updated_at": iso(row.updated_at),
    }


@pytest.mark.parametrize("sku", ["tee-m", "TEE-M", "tee m"])
def test_availability_sku_is_case_insensitive(reader, stocked, sku):
    response = reader.get(availability_url("web", sku))

    assert response.status_code == 200
    assert response.json()["sku"] == "TEE-M"


def test_availability_low_stock(reader, stocked, web):
    ChannelStockPolicy.objects.create(channel=web, low_stock_threshold=5)
    availability_refresh(variant_ids=[stocked.pk])

    body = reader.get(availability_url("web", "TEE-M")).json()

    assert (body["quantity"], body["is_low_stock"], body["state"]) == (5, True, "low_stock")


def test_availability_never_computed_is_out_of_stock(reader, tee):
    response = reader.get(availability_url("web", "TEE-M"))

    assert response.status_code == 200
    assert response.json() == {
        "sku": "TEE-M",
        "channel": "web",
        "quantity": 0,
        "is_low_stock": False,
        "state": "out_of_stock",
        "updated_at": None,
    }


def test_availability_unknown_sku_is_404(reader, stocked):
    body = assert_error(reader.get(availability_url("web", "NOPE-1")), 404, "not_found")

    assert body["message"] == "No variant with SKU NOPE-1."
    assert body["details"] == {"sku": ["Unknown SKU NOPE-1."]}


@pytest.mark.parametrize("channel", ["nowhere", "email"])
def test_availability_unknown_or_messaging_channel_is_404(reader, stocked, channel):
    body = assert_error(reader.get(availability_url(channel, "TEE-M")), 404, "not_found")

    assert body["message"] == f"No sales channel with code {channel}."
    assert body["details"] == {"channel": [f"{channel} is not a sales channel."]}


def test_availability_unknown_channel_and_sku_is_404_naming_the_channel(reader, stocked):
    body = assert_error(reader.get(availability_url("nowhere", "NOPE")), 404, "not_found")

    assert body["message"] == "No sales channel with code nowhere."


def test_availability_lookup_is_at_most_two_queries(reader, stocked, django_assert_max_num_queries):
    # The first call records the token's last use and prepares the statements on the connection.
    reader.get(availability_url("web", "TEE-M"))

    # token, availability
    with django_assert_max_num_queries(2):
        response = reader.get(availability_url("web", "TEE-M"))

    assert response.json()["quantity"] == 5


@pytest.mark.django_db(transaction=True)
def test_availability_lookup_with_a_cached_token_is_one_query(
    reader, stocked, django_assert_num_queries
):
    # Outside a transaction (as in production) read views take the API client from the
    # connection's token cache once it has been checked.
    reader.get(availability_url("web", "TEE-M"))

    with django_assert_num_queries(1):
        response = reader.get(availability_url("web", "TEE-M"))

    assert response.json()["quantity"] == 5


def test_availability_path_without_trailing_slash(reader, stocked):
    assert reader.get(availability_url("web", "TEE-M").rstrip("/")).status_code == 200


# --- Availability in batch --------------------------------------------------------------------


def test_availability_batch_in_the_order_asked(reader, stocked, web):
    other = VariantFactory(sku="CAP-1")
    row = ChannelAvailability.objects.get(variant=stocked, channel=web)

    response = reader.post(batch_url("web"), {"skus": ["cap-1", "NOPE", "TEE-M", "tee-m"]})

    assert response.status_code == 200, response.content
    assert response.json() == {
        "channel": "web",
        "results": [
            {
                "sku": other.sku,
                "channel": "web",
                "quantity": 0,
                "is_low_stock": False,
                "state": "out_of_stock",
                "updated_at": None,
            },
            {
                "sku": "TEE-M",
                "channel": "web",
                "quantity": 5,
                "is_low_stock": False,
                "state": "in_stock",
                "updated_at": iso(row.updated_at),
            },
        ],
        "unknown_skus": ["NOPE"],
    }


def test_availability_batch_of_500(reader, stocked):
    skus = ["TEE-M"] + [f"NOPE-{i}" for i in range(499)]

    response = reader.post(batch_url("web"), {"skus": skus})

    assert response.status_code == 200
    assert len(response.json()["unknown_skus"]) == 499


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"skus": [f"S-{i}" for i in range(501)]}, "At most 500 SKUs per request; split the list."),
        ({"skus": []}, "Give at least one SKU."),
        ({"skus": "TEE-M"}, 'Expected a list of items but got type "str".'),
        ({}, "This field is required."),
    ],
)
def test_availability_batch_bad_input_is_400(reader, stocked, payload, message):
    body = assert_error(reader.post(batch_url("web"), payload), 400, "validation_error")

    assert body["details"] == {"skus": [message]}


def test_availability_batch_with_an_idempotency_key_answers_the_first_response(reader, stocked):
    first = reader.post(batch_url("web").rstrip("/"), {"skus": ["TEE-M"]}, HTTP_IDEMPOTENCY_KEY="a")
    again = reader.post(batch_url("web"), {"skus": ["TEE-M"]}, HTTP_IDEMPOTENCY_KEY="a")

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"


def test_availability_batch_unknown_channel_is_404(reader, stocked):
    body = assert_error(reader.post(batch_url("nowhere"), {"skus": ["TEE-M"]}), 404, "not_found")

    assert body["message"] == "No sales channel with code nowhere."


# --- Stock per location -----------------------------------------------------------------------


def test_stock_per_location(reader, stores, stocked):
    warehouse, north, _south = stores
    Location.objects.filter(pk=north.pk).update(safety_stock=1)
    stock_reserve(
        channel=Channel.objects.get(code="web"),
        lines=[ReserveLine(variant=stocked, quantity=1)],
        reference="O-1",
    )
    rows = {
        row.location.code: row
        for row in StockLevel.objects.filter(variant=stocked).select_related()
    }

    response = reader.get(stock_url("tee-m"))

    assert response.status_code == 200
    assert response.json() == {
        "sku": "TEE-M",
        "locations": [
            {
                "location": "north",
                "location_name": "North",
                "kind": "store",
                "on_hand": 2,
                "reserved": 0,
                "safety_stock": 1,
                "available": 1,
                "in_transit": 0,
                "updated_at": iso(rows["north"].updated_at),
            },
            {
                "location": "wh",
                "location_name": "Wh",
                "kind": "warehouse",
                "on_hand": 3,
                "reserved": 1,
                "safety_stock": 0,
                "available": 2,
                "in_transit": 0,
                "updated_at": iso(rows["wh"].updated_at),
            },
        ],
    }


def test_stock_shows_units_in_transit_to_a_location(reader, stores, stocked):
    warehouse, north, _south = stores
    transfer_ship(
        transfer=transfer_request(
            from_location=warehouse, to_location=north, lines=[{"sku": "TEE-M", "quantity": 2}]
        )
    )

    locations = reader.get(stock_url("TEE-M")).json()["locations"]

    assert [(r["location"], r["on_hand"], r["in_transit"]) for r in locations] == [
        ("north", 2, 2),
        ("wh", 1, 0),
    ]


def test_stock_shows_units_in_transit_to_a_location_without_stock_yet(
    schema, reader, stores, stocked
):
    """Units shipped to a location that never held the SKU (it has no stock row) are listed."""
    warehouse, _north, south = stores
    transfer_ship(
        transfer=transfer_request(
            from_location=warehouse, to_location=south, lines=[{"sku": "TEE-M", "quantity": 2}]
        )
    )

    response = reader.get(stock_url("TEE-M"))

    locations = response.json()["locations"]
    assert [(r["location"], r["on_hand"], r["in_transit"]) for r in locations] == [
        ("north", 2, 0),
        ("south", 0, 2),
        ("wh", 1, 0),
    ]
    assert locations[1]["updated_at"] is None
    assert_matches_schema(schema, "get", stock_url("TEE-M"), response)


def test_stock_of_a_sku_held_nowhere_is_empty(reader, tee):
    assert reader.get(stock_url("TEE-M")).json() == {"sku": "TEE-M", "locations": []}


def test_stock_unknown_sku_is_404(reader):
    body = assert_error(reader.get(stock_url("NOPE")), 404, "not_found")

    assert body["message"] == "No variant with SKU NOPE."


# --- Locations --------------------------------------------------------------------------------


def location_json(location: Location) -> dict:
    location.refresh_from_db()
    return {
        "code": location.code,
        "name": location.name,
        "kind": location.kind,
        "address_line1": location.address_line1,
        "address_line2": location.address_line2,
        "postal_code": location.postal_code,
        "city": location.city,
        "country": location.country,
        "time_zone": location.time_zone,
        "latitude": None if location.latitude is None else f"{location.latitude:.6f}",
        "longitude": None if location.longitude is None else f"{location.longitude:.6f}",
        "ships_online_orders": location.ships_online_orders,
        "offers_pickup": location.offers_pickup,
        "safety_stock": location.safety_stock,
        "is_active": location.is_active,
        "updated_at": iso(location.updated_at),
    }


def test_location_list(reader, stores):
    warehouse, north, south = stores

    response = reader.get(LOCATIONS)

    assert response.status_code == 200
    assert response.json() == {
        "count": 3,
        "next": None,
        "previous": None,
        "results": [location_json(north), location_json(south), location_json(warehouse)],
    }
    assert response.json()["results"][2]["latitude"] == "48.850000"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "warehouse"}, ["wh"]),
        ({"kind": "store"}, ["closed", "north", "south"]),
        ({"is_active": "false"}, ["closed"]),
        ({"is_active": "true", "offers_pickup": "true"}, ["north", "south", "wh"]),
        ({"ships_online_orders": "false"}, ["closed"]),
        ({"offers_pickup": "0"}, ["closed"]),
    ],
)
def test_location_filters(reader, stores, params, expected):
    LocationFactory(code="closed", is_active=False, ships_online_orders=False, offers_pickup=False)

    response = reader.get(LOCATIONS, params)

    assert [r["code"] for r in response.json()["results"]] == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "shop"}, "kind"),
        ({"is_active": "yes"}, "is_active"),
        ({"offers_pickup": "x"}, "offers_pickup"),
    ],
)
def test_location_bad_filter_is_400(reader, stores, params, field):
    body = assert_error(reader.get(LOCATIONS, params), 400, "validation_error")

    assert list(body["details"]) == [field]


def test_location_retrieve(reader, stores):
    response = reader.get(f"{LOCATIONS}north/")

    assert response.status_code == 200
    assert response.json() == location_json(stores[1])


def test_location_unknown_is_404(reader, stores):
    body = assert_error(reader.get(f"{LOCATIONS}nowhere/"), 404, "not_found")

    assert body["message"] == "No location with code nowhere."


def test_locations_are_read_only(writer, stores):
    assert_error(writer.post(LOCATIONS, {"code": "x"}), 405, "method_not_allowed")
    assert_error(writer.patch(f"{LOCATIONS}wh/", {"name": "x"}), 405, "method_not_allowed")


@pytest.mark.parametrize("n", [2, 12])
def test_location_list_query_count_does_not_grow(reader, n, django_assert_num_queries):
    for i in range(n):
        LocationFactory(code=f"loc-{i:02d}")
    reader.get(LOCATIONS)  # the token's first use records last_used_at

    # token, count, locations
    with django_assert_num_queries(3):
        response = reader.get(LOCATIONS, {"limit": 500, "is_active": "true"})

    assert response.json()["count"] == n


# --- POS movement batches ---------------------------------------------------------------------


def batch_payload(batch_id="b1", **extra) -> dict:
    return {
        "batch_id": batch_id,
        "location": "north",
        "movements": [
            {"id": "m1", "sku": "TEE-M", "kind": "sale", "quantity": 1, "reference": "R-1"},
            {"id": "m2", "sku": "tee-m", "kind": "receipt", "quantity": 5, "location": "wh"},
            {
                "id": "m3",
                "sku": "TEE-M",
                "kind": "adjustment",
                "quantity": -1,
                "reason": "Damaged",
                "occurred_at": "2026-01-05T09:30:00+01:00",
            },
        ],
        **extra,
    }


def test_movement_batch_is_applied(pos, stores, stocked, web, django_capture_on_commit_callbacks):
    warehouse, north, _south = stores

    with django_capture_on_commit_callbacks(execute=True):
        response = pos.post(BATCHES, batch_payload())

    assert response.status_code == 201, response.content
    batch = MovementBatch.objects.get()
    assert response.json() == {
        "batch_id": "b1",
        "movements": 3,
        "applied": 3,
        "duplicates": 0,
        "replayed": False,
        "received_at": iso(batch.received_at),
    }
    assert (batch.source, batch.location) == (f"client:{pos.api_client.pk}", north)
    assert level(north, stocked) == (0, 0)
    assert level(warehouse, stocked) == (8, 0)
    movements = StockMovement.objects.filter(source=f"client:{pos.api_client.pk}").order_by("pk")
    assert [
        (m.idempotency_key, m.kind, m.quantity, m.location.code, m.channel.code, m.reference)
        for m in movements
    ] == [
        ("m1", "sale", -1, "north", "store", "R-1"),
        ("m2", "receipt", 5, "wh", "store", ""),
        ("m3", "adjustment", -1, "north", "store", ""),
    ]
    assert iso(movements[2].occurred_at) == "2026-01-05T08:30:00Z"
    assert movements[2].reason == "Damaged"
    # Availability is refreshed once the batch commits: 8 at the warehouse, 0 in the north.
    assert reader_quantity(web, stocked) == 8


def reader_quantity(channel, variant) -> int:
    return ChannelAvailability.objects.get(channel=channel, variant=variant).quantity


def test_movement_batch_replay_is_200_and_writes_nothing(pos, stocked):
    first = pos.post(BATCHES, batch_payload())
    before = snapshot()

    again = pos.post(BATCHES, batch_payload())

    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "replayed": True}
    assert snapshot() == before
    assert StockMovement.objects.filter(source=f"client:{pos.api_client.pk}").count() == 3


def test_movement_batch_id_reused_for_other_movements_is_409(pos, stocked):
    pos.post(BATCHES, batch_payload())
    before = snapshot()
    changed = batch_payload()
    changed["movements"][0]["quantity"] = 2

    body = assert_error(pos.post(BATCHES, changed), 409, "batch_id_reused")

    assert body["details"] == {"batch_id": ["Already used for a different batch."]}
    assert snapshot() == before


def test_movement_already_recorded_by_another_batch_is_a_duplicate(pos, stores, stocked):
    pos.post(BATCHES, batch_payload())

    response = pos.post(BATCHES, batch_payload("b2"))

    assert response.status_code == 201
    assert response.json()["applied"] == 0
    assert response.json()["duplicates"] == 3
    assert level(stores[1], stocked) == (0, 0)


def test_movement_batch_ids_are_per_sender(pos, writer, stores, stocked):
    pos.post(BATCHES, batch_payload())

    response = writer.post(BATCHES, batch_payload())

    assert response.status_code == 201
    assert response.json()["replayed"] is False
    assert level(stores[1], stocked) == (-2, 0)


def test_movement_batch_with_idempotency_key_replays_the_first_response(pos, stocked):
    first = pos.post(BATCHES, batch_payload(), HTTP_IDEMPOTENCY_KEY="k-1")
    before = snapshot()

    again = pos.post(BATCHES, batch_payload(), HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert snapshot() == before


def test_movement_batch_with_invalid_movements_is_refused_whole(pos, stores, stocked):
    before = snapshot()
    payload = {
        "batch_id": "b1",
        "location": "north",
        "movements": [
            {"id": "m1", "sku": "TEE-M", "kind": "sale", "quantity": 1},
            {"id": "m2", "sku": "NOPE", "kind": "sale", "quantity": 1},
            {"id": "m3", "sku": "TEE-M", "kind": "theft", "quantity": 1},
            {"id": "m1", "sku": "TEE-M", "kind": "sale", "quantity": 0},
            {"id": "m5", "sku": "TEE-M", "kind": "adjustment", "quantity": -1},
            {"id": "m6", "sku": "TEE-M", "kind": "sale", "quantity": 1, "location": "nowhere"},
            {"id": "m7", "sku": "TEE-M", "kind": "sale", "quantity": 1, "occurred_at": "soon"},
            "not an object",
        ],
    }

    response = pos.post(BATCHES, payload)

    body = assert_error(response, 400, "invalid_batch")
    assert body["message"] == "7 of 8 movements are invalid; nothing was applied."
    assert body["details"] == {
        "movements": {
            "1": {"sku": ["Unknown SKU NOPE."]},
            "2": {"kind": ["One of: sale, return, receipt, adjustment."]},
            "3": {
                "id": ["Repeats movement 0 of this batch."],
                "quantity": ["At least 1 (the kind says the direction)."],
            },
            "4": {"reason": ["Required for an adjustment."]},
            "5": {"location": ["Unknown location nowhere."]},
            "6": {"occurred_at": ["Not an ISO 8601 date and time."]},
            "7": {"movement": ["Must be an object."]},
        }
    }
    assert snapshot() == before
    assert MovementBatch.objects.count() == 0


def test_movement_batch_refused_then_corrected_under_the_same_id_is_applied(pos, stocked):
    bad = batch_payload()
    bad["movements"][0]["sku"] = "NOPE"
    assert pos.post(BATCHES, bad).status_code == 400

    response = pos.post(BATCHES, batch_payload())

    assert response.status_code == 201
    assert response.json()["applied"] == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch_id": ""}, "batch_id"),
        ({"batch_id": "x" * 101}, "batch_id"),
        ({"movements": []}, "movements"),
        ({"movements": {"id": "m1"}}, "movements"),
        ({"movements": "m1"}, "movements"),
        ({"location": "nowhere"}, "location"),
    ],
)
def test_movement_batch_bad_envelope_is_400_and_changes_nothing(pos, stocked, change, field):
    before = snapshot()

    body = assert_error(pos.post(BATCHES, {**batch_payload(), **change}), 400, "validation_error")

    assert list(body["details"]) == [field]
    assert snapshot() == before


def test_movement_batch_without_a_location_needs_one_per_movement(pos, stocked):
    payload = batch_payload()
    del payload["location"]

    body = assert_error(pos.post(BATCHES, payload), 400, "invalid_batch")

    assert body["details"]["movements"] == {
        "0": {"location": ["Required."]},
        "2": {"location": ["Required."]},
    }


def test_movement_batch_at_an_inactive_location_is_refused(pos, stores, stocked):
    Location.objects.filter(code="north").update(is_active=False)

    body = assert_error(pos.post(BATCHES, batch_payload()), 400, "invalid_batch")

    assert body["details"]["movements"]["0"] == {"location": ["north is inactive."]}


def test_movement_batch_impossible_date_is_400(pos, stocked):
    """Well formed but impossible (parse_datetime raises ValueError): a 400 by index, not a 500."""
    payload = batch_payload()
    payload["movements"][0]["occurred_at"] = "2026-02-30T10:00:00Z"

    body = assert_error(pos.post(BATCHES, payload), 400, "invalid_batch")

    assert list(body["details"]["movements"]["0"]) == ["occurred_at"]


def test_movement_batch_quantity_beyond_the_database_integer_is_400(pos, stocked):
    """A quantity the database cannot hold is refused by index, not failed there (500)."""
    payload = batch_payload()
    payload["movements"][1]["quantity"] = 2**31

    body = assert_error(pos.post(BATCHES, payload), 400, "invalid_batch")

    assert list(body["details"]["movements"]["1"]) == ["quantity"]


def test_movement_batch_of_10000_is_accepted(pos, stores, django_capture_on_commit_callbacks):
    product = ProductFactory()
    variants = [VariantFactory(product=product, sku=f"POS-{i:02d}") for i in range(50)]
    when = ago(hours=1)
    movements = [
        {
            "id": f"m-{i:05d}",
            "sku": variants[i % 50].sku,
            "kind": "sale" if (i // 50) % 4 == 3 else "receipt",
            "quantity": 1,
            "occurred_at": when,
            "reference": f"receipt-{i // 4:05d}",
        }
        for i in range(10_000)
    ]
    payload = {"batch_id": "day-1", "location": "north", "movements": movements}
    size = len(json.dumps(payload))
    assert 1_000_000 < size < settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        # With an Idempotency-Key the body is read whole, so Django's body size limit applies.
        response = pos.post(BATCHES, payload, HTTP_IDEMPOTENCY_KEY="day-1")
    elapsed = time.monotonic() - started

    assert response.status_code == 201, response.content[:500]
    assert response.json()["applied"] == 10_000
    assert StockMovement.objects.filter(location=stores[1]).count() == 10_000
    assert set(StockLevel.objects.filter(location=stores[1]).values_list("on_hand", flat=True)) == {
        100
    }
    assert elapsed < 10, elapsed

    again = pos.post(BATCHES, payload)
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert StockMovement.objects.count() == 10_000


def test_movement_batch_over_10000_is_400(pos, stocked):
    movements = [
        {"id": f"m{i}", "sku": "TEE-M", "kind": "receipt", "quantity": 1} for i in range(10_001)
    ]
    before = snapshot()

    body = assert_error(
        pos.post(BATCHES, {"batch_id": "b", "location": "north", "movements": movements}),
        400,
        "validation_error",
    )

    assert body["details"] == {"movements": ["A batch holds at most 10,000 movements; split it."]}
    assert snapshot() == before


def test_movement_batch_get(pos, stores, stocked):
    posted = pos.post(BATCHES, batch_payload()).json()

    response = pos.get(f"{BATCHES}b1/")

    assert response.status_code == 200
    assert response.json() == {
        "batch_id": "b1",
        "location": "north",
        "movements": 3,
        "applied": 3,
        "duplicates": 0,
        "received_at": posted["received_at"],
    }


def test_movement_batch_of_another_sender_is_404(pos, writer, stocked):
    pos.post(BATCHES, batch_payload())

    body = assert_error(writer.get(f"{BATCHES}b1/"), 404, "not_found")

    assert body["message"] == "You sent no batch b1."


# --- Counts -----------------------------------------------------------------------------------


def count_payload(**extra) -> dict:
    return {
        "location": "north",
        "counted_at": "2026-01-05T09:30:00+01:00",
        "reference": "C-1",
        "lines": [{"sku": "tee-m", "quantity": 1}],
        **extra,
    }


def test_count_submit(writer, stores, stocked):
    response = writer.post(COUNTS, count_payload())

    assert response.status_code == 201, response.content
    count = StockCount.objects.get()
    assert response.json() == {
        "id": count.pk,
        "location": "north",
        "kind": "physical",
        "status": "submitted",
        "reason": "",
        "reference": "C-1",
        "source": f"client:{writer.api_client.pk}",
        "counted_at": "2026-01-05T08:30:00Z",
        "requested_at": None,
        "submitted_at": iso(count.submitted_at),
        "reconciled_at": None,
        "line_count": 1,
        "lines": [{"sku": "TEE-M", "counted_quantity": 1, "expected_quantity": None}],
    }


def test_count_fills_the_open_request(writer, stores, stocked):
    requested = stock_count_request(location=stores[1], reason="Spot check")

    response = writer.post(COUNTS, count_payload(kind="pos_snapshot"))

    assert response.json()["id"] == requested.pk
    assert response.json()["reason"] == "Spot check"
    assert response.json()["kind"] == "pos_snapshot"
    assert StockCount.objects.count() == 1


def test_count_shows_expected_quantities_once_reconciled(writer, reader, stores, stocked):
    count_id = writer.post(COUNTS, count_payload(counted_at=timezone.now().isoformat())).json()[
        "id"
    ]
    stock_reconcile(trigger="test")

    body = reader.get(f"{COUNTS}{count_id}/").json()

    assert body["status"] == "reconciled"
    assert body["reconciled_at"] is not None
    assert body["lines"] == [{"sku": "TEE-M", "counted_quantity": 1, "expected_quantity": 2}]


@pytest.mark.parametrize(
    ("change", "details"),
    [
        (
            {"counted_at": "2026-01-05T09:30:00"},
            {"counted_at": ["Give a time zone (e.g. 2026-11-22T10:00:00+01:00 or ...Z)."]},
        ),
        ({"counted_at": "yesterday"}, None),
        ({"counted_at": None}, None),
        ({"lines": []}, {"lines": ["Ensure this field has at least 1 elements."]}),
        (
            {"lines": [{"sku": "TEE-M", "quantity": -1}]},
            {"lines": {"0": {"quantity": ["Ensure this value is greater than or equal to 0."]}}},
        ),
        (
            {"lines": [{"sku": "TEE-M"}, {"sku": "TEE-M", "quantity": 1}]},
            {"lines": {"0": {"quantity": ["This field is required."]}}},
        ),
        (
            {"lines": [{"sku": "NOPE", "quantity": 1}]},
            {"lines": {"0": {"sku": ["Unknown SKU NOPE."]}}},
        ),
        (
            {"lines": [{"sku": "TEE-M", "quantity": 1}, {"sku": "tee-m", "quantity": 2}]},
            {"lines": {"1": {"sku": ["TEE-M is counted on line 0."]}}},
        ),
        ({"kind": "guess"}, None),
        ({"location": "nowhere"}, {"location": ["Unknown location nowhere."]}),
        ({"reference": "x" * 121}, None),
    ],
)
def test_count_bad_input_is_400_and_changes_nothing(writer, stocked, change, details):
    before = snapshot()

    body = assert_error(writer.post(COUNTS, count_payload(**change)), 400, "validation_error")

    if details is not None:
        assert body["details"] == details
    else:
        assert list(body["details"]) == list(change)
    assert snapshot() == before


def test_count_in_the_future_is_400(writer, stocked):
    later = (timezone.now() + timedelta(hours=1)).isoformat()

    body = assert_error(
        writer.post(COUNTS, count_payload(counted_at=later)), 400, "validation_error"
    )

    assert body["details"] == {"counted_at": ["Lies in the future."]}


def test_count_at_an_inactive_location_is_400(writer, stocked):
    Location.objects.filter(code="north").update(is_active=False)

    assert_error(writer.post(COUNTS, count_payload()), 400, "location_inactive")
    assert StockCount.objects.count() == 0


def test_count_idempotent_replay(writer, stocked):
    first = writer.post(COUNTS, count_payload(), HTTP_IDEMPOTENCY_KEY="c-1")
    again = writer.post(COUNTS, count_payload(), HTTP_IDEMPOTENCY_KEY="c-1")

    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert StockCount.objects.count() == 1


def test_count_list_and_filters(reader, writer, stores, stocked):
    writer.post(COUNTS, count_payload())
    writer.post(COUNTS, count_payload(location="wh", kind="pos_snapshot"))
    stock_count_request(location=stores[2], reason="Check")

    def ids(params):
        response = reader.get(COUNTS, params)
        assert response.status_code == 200, response.content
        return [(c["location"], c["status"]) for c in response.json()["results"]]

    assert ids({}) == [("south", "requested"), ("wh", "submitted"), ("north", "submitted")]
    assert ids({"location": "wh"}) == [("wh", "submitted")]
    assert ids({"status": "requested"}) == [("south", "requested")]
    assert ids({"kind": "pos_snapshot"}) == [("wh", "submitted")]
    listed = reader.get(COUNTS, {"location": "north"}).json()["results"][0]
    assert "lines" not in listed
    assert listed["line_count"] == 1
    assert_error(reader.get(COUNTS, {"status": "lost"}), 400, "validation_error")


@pytest.mark.parametrize("n", [2, 12])
def test_count_list_query_count_does_not_grow(reader, stores, tee, n, django_assert_num_queries):
    for i in range(n):
        location = LocationFactory(code=f"shop-{i:02d}")
        StockCount.objects.create(
            location=location, status="submitted", counted_at=timezone.now()
        ).lines.create(variant=tee, counted_quantity=i)
    reader.get(COUNTS)

    # token, count, counts (location joined, lines counted)
    with django_assert_num_queries(3):
        response = reader.get(COUNTS, {"limit": 500})

    assert len(response.json()["results"]) == n


def test_count_submit_query_count_does_not_grow_with_its_lines(writer, stores):
    """A POS snapshot has thousands of lines; submitting one must be set-based (style: "never
    one query per row"). stock_count_submit resolves each line's SKU with its own query."""
    product = ProductFactory()
    skus = [VariantFactory(product=product, sku=f"SNAP-{i:03d}").sku for i in range(40)]
    writer.get(LOCATIONS)  # the token's first use records last_used_at

    def queries(n: int) -> int:
        lines = [{"sku": sku, "quantity": 1} for sku in skus[:n]]
        with CaptureQueriesContext(connection) as captured:
            response = writer.post(COUNTS, count_payload(lines=lines))
        assert response.status_code == 201, response.content
        return len(captured.captured_queries)

    assert queries(40) == queries(2)


def test_count_unknown_is_404(reader):
    body = assert_error(reader.get(f"{COUNTS}999999/"), 404, "not_found")

    assert body["message"] == "No count #999999."


# --- Transfers --------------------------------------------------------------------------------


def transfer_json(number: str) -> dict:
    transfer = Transfer.objects.get(number=number)
    lines = [
        {
            "sku": line.variant.sku,
            "quantity": line.quantity,
            "shipped_quantity": line.shipped_quantity,
            "received_quantity": line.received_quantity,
            "in_transit": line.in_transit,
        }
        for line in transfer.lines.order_by("variant__sku")
    ]
    return {
        "number": transfer.number,
        "status": transfer.status,
        "from_location": transfer.from_location.code,
        "to_location": transfer.to_location.code,
        "reference": transfer.reference,
        "note": transfer.note,
        "expected_at": iso(transfer.expected_at),
        "requested_at": iso(transfer.requested_at),
        "shipped_at": iso(transfer.shipped_at),
        "received_at": iso(transfer.received_at),
        "in_transit": sum(line["in_transit"] for line in lines),
        "lines": lines,
    }


def transfer_payload(**extra) -> dict:
    return {
        "from_location": "wh",
        "to_location": "south",
        "lines": [{"sku": "tee-m", "quantity": 2}],
        "reference": "O-9",
        "note": "For a pickup",
        "expected_at": "2026-12-01T10:00:00Z",
        **extra,
    }


def test_transfer_request_ship_receive(writer, reader, stores, stocked):
    warehouse, _north, south = stores

    created = writer.post(TRANSFERS, transfer_payload())

    assert created.status_code == 201, created.content
    number = created.json()["number"]
    assert created.json() == transfer_json(number)
    assert created.json()["status"] == "requested"
    assert created.json()["expected_at"] == "2026-12-01T10:00:00Z"
    assert level(warehouse, stocked) == (3, 2)

    shipped = writer.post(f"{TRANSFERS}{number}/ship/")

    assert shipped.status_code == 200, shipped.content
    assert shipped.json() == transfer_json(number)
    assert shipped.json()["in_transit"] == 2
    assert shipped.json()["lines"] == [
        {
            "sku": "TEE-M",
            "quantity": 2,
            "shipped_quantity": 2,
            "received_quantity": 0,
            "in_transit": 2,
        }
    ]
    assert level(warehouse, stocked) == (1, 0)

    received = writer.post(f"{TRANSFERS}{number}/receive/", {"quantities": {"tee-m": 1}})

    assert received.status_code == 200, received.content
    assert received.json() == transfer_json(number)
    assert (received.json()["status"], received.json()["in_transit"]) == ("received", 0)
    assert received.json()["lines"][0]["received_quantity"] == 1
    assert level(south, stocked) == (1, 0)
    assert reader.get(f"{TRANSFERS}{number}/").json() == received.json()


def test_transfer_ship_part(writer, stores, stocked):
    number = writer.post(TRANSFERS, transfer_payload()).json()["number"]

    response = writer.post(f"{TRANSFERS}{number}/ship/", {"quantities": {"TEE-M": 1}})

    assert response.json()["lines"][0]["shipped_quantity"] == 1
    assert level(stores[0], stocked) == (2, 0)


def test_transfer_cancel(writer, stores, stocked):
    number = writer.post(TRANSFERS, transfer_payload()).json()["number"]

    response = writer.post(f"{TRANSFERS}{number}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert level(stores[0], stocked) == (3, 0)


@pytest.mark.parametrize("step", ["cancel", "ship"])
def test_transfer_wrong_step_is_409_and_changes_nothing(writer, stores, stocked, step):
    number = writer.post(TRANSFERS, transfer_payload()).json()["number"]
    writer.post(f"{TRANSFERS}{number}/ship/")
    before = snapshot()

    body = assert_error(writer.post(f"{TRANSFERS}{number}/{step}/"), 409, "invalid_transition")

    assert body["message"] == f"Transfer {number} is shipped (in transit); this needs it requested."
    assert snapshot() == before


def test_transfer_receive_before_ship_is_409(writer, stores, stocked):
    number = writer.post(TRANSFERS, transfer_payload()).json()["number"]

    assert_error(writer.post(f"{TRANSFERS}{number}/receive/"), 409, "invalid_transition")


@pytest.mark.parametrize(
    ("quantities", "details"),
    [
        ({"CAP-1": 1}, {"shipped": {"CAP-1": ["CAP-1 is not on transfer {number}."]}}),
        ({"TEE-M": 3}, {"shipped": {"TEE-M": ["At most 2."]}}),
        (
            {"TEE-M": -1},
            {"quantities": {"TEE-M": ["Ensure this value is greater than or equal to 0."]}},
        ),
        ({"TEE-M": 0}, {}),
    ],
)
def test_transfer_ship_bad_quantities_is_400_and_changes_nothing(
    writer, stores, stocked, quantities, details
):
    number = writer.post(TRANSFERS, transfer_payload()).json()["number"]
    before = snapshot()

    response = writer.post(f"{TRANSFERS}{number}/ship/", {"quantities": quantities})

    body = assert_error(response, 400, "validation_error")
    assert body["details"] == json.loads(json.dumps(details).replace("{number}", number))
    assert snapshot() == before


def test_transfer_short_of_stock_is_409_with_the_lines(writer, stores, stocked):
    before = snapshot()

    response = writer.post(TRANSFERS, transfer_payload(lines=[{"sku": "TEE-M", "quantity": 4}]))

    body = assert_error(response, 409, "insufficient_stock")
    assert body["details"] == {
        "lines": [{"index": 0, "sku": "TEE-M", "requested": 4, "available": 3}]
    }
    assert snapshot() == before


@pytest.mark.parametrize(
    ("change", "details"),
    [
        ({"to_location": "wh"}, {"to_location": ["Must differ from the source."]}),
        ({"from_location": "nowhere"}, {"from_location": ["Unknown location nowhere."]}),
        ({"to_location": "nowhere"}, {"to_location": ["Unknown location nowhere."]}),
        ({"lines": []}, {"lines": ["Ensure this field has at least 1 elements."]}),
        (
            {"lines": [{"sku": "NOPE", "quantity": 1}]},
            {"lines": {"0": {"sku": ["Unknown SKU NOPE."]}}},
        ),
        (
            {"lines": [{"sku": "TEE-M", "quantity": 0}]},
            {"lines": {"0": {"quantity": ["Ensure this value is greater than or equal to 1."]}}},
        ),
        (
            {"lines": [{"sku": "TEE-M", "quantity": 1}, {"sku": "TEE-M", "quantity": 1}]},
            {"lines": {"1": {"sku": ["TEE-M is already on line 0."]}}},
        ),
        ({"note": "x" * 201}, None),
        ({"expected_at": "soon"}, None),
    ],
)
def test_transfer_bad_input_is_400_and_changes_nothing(writer, stores, stocked, change, details):
    before = snapshot()

    body = assert_error(writer.post(TRANSFERS, transfer_payload(**change)), 400, "validation_error")

    if details is None:
        assert list(body["details"]) == list(change)
    else:
        assert body["details"] == details
    assert snapshot() == before


def test_transfer_from_an_inactive_location_is_400(writer, stores, stocked):
    Location.objects.filter(code="wh").update(is_active=False)

    body = assert_error(writer.post(TRANSFERS, transfer_payload()), 400, "location_inactive")

    assert body["details"] == {"from_location": ["wh is inactive."]}


def test_transfer_idempotent_replay(writer, stores, stocked):
    first = writer.post(TRANSFERS, transfer_payload(), HTTP_IDEMPOTENCY_KEY="t-1")
    again = writer.post(TRANSFERS, transfer_payload(), HTTP_IDEMPOTENCY_KEY="t-1")
    other = writer.post(TRANSFERS, transfer_payload(note="Other"), HTTP_IDEMPOTENCY_KEY="t-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert_error(other, 422, "idempotency_key_reused")
    assert Transfer.objects.count() == 1
    assert level(stores[0], stocked) == (3, 2)


def test_transfer_action_on_unknown_transfer_is_404(writer, stocked):
    body = assert_error(writer.post(f"{TRANSFERS}TR-999999/ship/"), 404, "not_found")

    assert body["message"] == "No transfer TR-999999."
    assert_error(writer.get(f"{TRANSFERS}TR-999999/"), 404, "not_found")


def test_transfer_list_and_filters(reader, writer, stores, stocked):
    first = writer.post(TRANSFERS, transfer_payload()).json()["number"]
    second = writer.post(
        TRANSFERS, transfer_payload(from_location="north", to_location="wh")
    ).json()["number"]
    writer.post(f"{TRANSFERS}{second}/ship/")

    def numbers(params):
        response = reader.get(TRANSFERS, params)
        assert response.status_code == 200, response.content
        return [t["number"] for t in response.json()["results"]]

    assert numbers({}) == [second, first]
    assert numbers({"from_location": "wh"}) == [first]
    assert numbers({"to_location": "wh"}) == [second]
    assert numbers({"status": "shipped"}) == [second]
    assert numbers({"status": "received"}) == []
    assert reader.get(TRANSFERS).json()["results"][1] == transfer_json(first)
    body = assert_error(reader.get(TRANSFERS, {"status": "lost"}), 400, "validation_error")
    assert list(body["details"]) == ["status"]


@pytest.mark.parametrize("n", [2, 12])
def test_transfer_list_query_count_does_not_grow(reader, stores, n, django_assert_num_queries):
    warehouse, north, _south = stores
    product = ProductFactory()
    for i in range(n):
        transfer = Transfer.objects.create(
            number=f"T-{i}", from_location=warehouse, to_location=north, requested_at=timezone.now()
        )
        for size in ("S", "M"):
            transfer.lines.create(
                variant=VariantFactory(product=product, sku=f"T{i}-{size}"), quantity=1
            )
    reader.get(TRANSFERS)

    # token, count, transfers (locations joined), lines (variants joined)
    with django_assert_num_queries(4):
        response = reader.get(TRANSFERS, {"limit": 500})

    assert [len(t["lines"]) for t in response.json()["results"]] == [2] * n


# --- Reservations -----------------------------------------------------------------------------


def reservation_json(reservation: Reservation) -> dict:
    reservation.refresh_from_db()
    return {
        "id": reservation.pk,
        "reference": reservation.reference,
        "line_reference": reservation.line_reference,
        "kind": reservation.kind,
        "status": reservation.status,
        "sku": reservation.variant.sku,
        "location": reservation.location.code,
        "channel": reservation.channel.code if reservation.channel else None,
        "quantity": reservation.quantity,
        "pinned": reservation.pinned,
        "expires_at": iso(reservation.expires_at),
        "needs_attention": reservation.needs_attention,
        "created_at": iso(reservation.created_at),
        "closed_at": iso(reservation.closed_at),
    }


def reserve_payload(**extra) -> dict:
    return {
        "channel": "web",
        "reference": "O-1",
        "lines": [{"sku": "tee-m", "quantity": 4, "line_reference": "L1"}],
        **extra,
    }


def test_reserve(writer, stores, stocked, web, django_capture_on_commit_callbacks):
    warehouse, north, _south = stores

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(RESERVATIONS, reserve_payload())

    assert response.status_code == 201, response.content
    held = list(Reservation.objects.order_by("pk"))
    assert response.json() == {
        "reference": "O-1",
        "reservations": [reservation_json(r) for r in held],
    }
    assert [
        (r["location"], r["quantity"], r["line_reference"]) for r in response.json()["reservations"]
    ] == [
        ("wh", 3, "L1"),
        ("north", 1, "L1"),
    ]
    assert response.json()["reservations"][0]["kind"] == "order_line"
    assert level(warehouse, stocked) == (3, 3)
    assert level(north, stocked) == (2, 1)
    # The stock change refreshed the channel's availability after commit.
    assert writer.get(availability_url("web", "TEE-M")).json()["quantity"] == 1


def test_reserve_a_checkout_hold_pinned_to_a_store(writer, stores, stocked):
    response = writer.post(
        RESERVATIONS,
        reserve_payload(
            kind="checkout_hold",
            expires_at="2030-01-01T00:00:00Z",
            lines=[{"sku": "TEE-M", "quantity": 2, "location": "north"}],
        ),
    )

    assert response.status_code == 201, response.content
    (held,) = response.json()["reservations"]
    assert (held["location"], held["pinned"], held["kind"], held["expires_at"]) == (
        "north",
        True,
        "checkout_hold",
        "2030-01-01T00:00:00Z",
    )


def test_reserve_nearest_location(writer, stores, stocked, web):
    ChannelStockPolicy.objects.create(channel=web, allocation_strategy="nearest")

    response = writer.post(
        RESERVATIONS,
        reserve_payload(
            near={"latitude": 50.6, "longitude": 3.0},
            lines=[{"sku": "TEE-M", "quantity": 1}],
        ),
    )

    assert [r["location"] for r in response.json()["reservations"]] == ["north"]


def test_reserve_short_of_stock_is_409_with_the_lines(writer, stocked):
    other = VariantFactory(sku="CAP-1")
    before = snapshot()

    response = writer.post(
        RESERVATIONS,
        reserve_payload(
            lines=[
                {"sku": "TEE-M", "quantity": 6},
                {"sku": other.sku, "quantity": 1},
                {"sku": "TEE-M", "quantity": 1, "location": "north"},
            ]
        ),
        HTTP_IDEMPOTENCY_KEY="r-1",
    )

    body = assert_error(response, 409, "insufficient_stock")
    assert body["message"] == (
        "Not enough stock for TEE-M: 6 requested, 5 available. (3 lines are short.)"
    )
    assert body["details"] == {
        "lines": [
            {"index": 0, "sku": "TEE-M", "requested": 6, "available": 5},
            {"index": 1, "sku": "CAP-1", "requested": 1, "available": 0},
            {"index": 2, "sku": "TEE-M", "requested": 1, "available": 0},
        ]
    }
    assert snapshot() == before
    assert IdempotencyKey.objects.count() == 0  # a 409 keeps no key: the client may retry


@pytest.mark.parametrize(
    ("change", "code", "details"),
    [
        ({"channel": "nowhere"}, "validation_error", {"channel": ["Unknown channel nowhere."]}),
        (
            {"channel": "email"},
            "not_a_sales_channel",
            {"channel": ["email is not an active sales channel."]},
        ),
        ({"reference": ""}, "validation_error", None),
        ({"reference": "x" * 121}, "validation_error", None),
        (
            {"reference": "transfer:TR-000001"},
            "validation_error",
            {
                "reference": [
                    "References starting with 'transfer:' belong to transfers; "
                    "use the transfer endpoints."
                ]
            },
        ),
        ({"kind": "transfer"}, "validation_error", None),
        (
            {"lines": []},
            "validation_error",
            {"lines": ["Ensure this field has at least 1 elements."]},
        ),
        (
            {"lines": [{"sku": "NOPE", "quantity": 1}]},
            "validation_error",
            {"lines": {"0": {"sku": ["Unknown SKU NOPE."]}}},
        ),
        (
            {"lines": [{"sku": "TEE-M", "quantity": 1}, {"sku": "TEE-M", "quantity": 0}]},
            "validation_error",
            {"lines": {"1": {"quantity": ["Ensure this value is greater than or equal to 1."]}}},
        ),
        (
            {"lines": [{"sku": "TEE-M", "quantity": 1, "location": "nowhere"}]},
            "validation_error",
            {"lines": {"0": {"location": ["Unknown location nowhere."]}}},
        ),
        (
            {"lines": [{"sku": "TEE-M", "quantity": 1, "line_reference": "x" * 121}]},
            "validation_error",
            None,
        ),
        ({"near": {"latitude": 91, "longitude": 0}}, "validation_error", None),
        ({"expires_at": "tomorrow"}, "validation_error", None),
    ],
)
def test_reserve_bad_input_is_400_and_changes_nothing(writer, stocked, change, code, details):
    before = snapshot()

    body = assert_error(writer.post(RESERVATIONS, reserve_payload(**change)), 400, code)

    if details is None:
        assert list(body["details"]) == list(change)
    else:
        assert body["details"] == details
    assert snapshot() == before


def test_reserve_idempotent_replay_reserves_once(writer, stores, stocked):
    first = writer.post(RESERVATIONS, reserve_payload(), HTTP_IDEMPOTENCY_KEY="r-1")
    again = writer.post(RESERVATIONS, reserve_payload(), HTTP_IDEMPOTENCY_KEY="r-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Reservation.objects.count() == 2
    assert level(stores[0], stocked) == (3, 3)


def test_release(writer, stores, stocked, django_capture_on_commit_callbacks):
    writer.post(RESERVATIONS, reserve_payload())

    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(RELEASE, {"reference": "O-1"})

    assert response.status_code == 200, response.content
    assert response.json() == {"reference": "O-1", "line_reference": None, "released": 4}
    assert set(Reservation.objects.values_list("status", flat=True)) == {"released"}
    assert level(stores[0], stocked) == (3, 0)
    assert writer.get(availability_url("web", "TEE-M")).json()["quantity"] == 5

    again = writer.post(RELEASE, {"reference": "O-1"})

    assert again.json() == {"reference": "O-1", "line_reference": None, "released": 0}


def test_release_one_line(writer, stores, stocked):
    writer.post(
        RESERVATIONS,
        reserve_payload(
            lines=[
                {"sku": "TEE-M", "quantity": 1, "line_reference": "L1"},
                {"sku": "TEE-M", "quantity": 1, "line_reference": "L2", "location": "north"},
            ]
        ),
    )

    response = writer.post(RELEASE, {"reference": "O-1", "line_reference": "L2"})

    assert response.json() == {"reference": "O-1", "line_reference": "L2", "released": 1}
    assert sorted(Reservation.objects.values_list("line_reference", "status")) == [
        ("L1", "active"),
        ("L2", "released"),
    ]


def test_consume(writer, stores, stocked):
    writer.post(RESERVATIONS, reserve_payload())

    response = writer.post(CONSUME, {"reference": "O-1"})

    assert response.status_code == 200, response.content
    assert response.json() == {"reference": "O-1", "line_reference": None, "consumed": 4}
    assert level(stores[0], stocked) == (0, 0)
    assert level(stores[1], stocked) == (1, 0)
    sales = StockMovement.objects.filter(kind="sale").order_by("pk")
    assert [(m.location.code, m.quantity, m.source, m.reference) for m in sales] == [
        ("wh", -3, f"client:{writer.api_client.pk}", "O-1"),
        ("north", -1, f"client:{writer.api_client.pk}", "O-1"),
    ]


def test_consume_with_nothing_held_is_400(writer, stocked):
    before = snapshot()

    body = assert_error(writer.post(CONSUME, {"reference": "O-1"}), 400, "no_active_reservation")

    assert body["details"] == {"reference": ["Nothing held for O-1."]}
    assert snapshot() == before


@pytest.mark.parametrize("path", [RELEASE, CONSUME])
def test_release_and_consume_leave_transfer_holds_alone(writer, stores, stocked, path):
    transfer = transfer_request(
        from_location=stores[0], to_location=stores[2], lines=[{"sku": "TEE-M", "quantity": 1}]
    )
    before = snapshot()

    body = assert_error(
        writer.post(path, {"reference": f"transfer:{transfer.number}"}), 400, "validation_error"
    )

    assert list(body["details"]) == ["reference"]
    assert snapshot() == before


@pytest.mark.parametrize("path", [RELEASE, CONSUME])
def test_release_and_consume_need_a_reference(writer, stocked, path):
    body = assert_error(writer.post(path, {}), 400, "validation_error")

    assert body["details"] == {"reference": ["This field is required."]}


def test_reservation_list_and_filters(reader, writer, stores, stocked):
    writer.post(RESERVATIONS, reserve_payload())
    writer.post(
        RESERVATIONS,
        reserve_payload(reference="O-2", lines=[{"sku": "TEE-M", "quantity": 1}]),
    )
    writer.post(RELEASE, {"reference": "O-2"})

    def listed(params):
        response = reader.get(RESERVATIONS, params)
        assert response.status_code == 200, response.content
        return [(r["reference"], r["location"], r["status"]) for r in response.json()["results"]]

    assert listed({"reference": "O-1"}) == [("O-1", "wh", "active"), ("O-1", "north", "active")]
    assert listed({"status": "released"}) == [("O-2", "north", "released")]
    assert listed({"location": "north"}) == [
        ("O-1", "north", "active"),
        ("O-2", "north", "released"),
    ]
    assert listed({"sku": "tee-m", "channel": "web", "kind": "order_line"}) == [
        ("O-1", "wh", "active"),
        ("O-1", "north", "active"),
        ("O-2", "north", "released"),
    ]
    assert listed({"line_reference": "L1"}) == [
        ("O-1", "wh", "active"),
        ("O-1", "north", "active"),
    ]
    first = Reservation.objects.order_by("pk").first()
    assert reader.get(RESERVATIONS, {"reference": "O-1"}).json()["results"][0] == reservation_json(
        first
    )
    assert_error(reader.get(RESERVATIONS, {"status": "lost"}), 400, "validation_error")


@pytest.mark.parametrize("n", [2, 12])
def test_reservation_list_query_count_does_not_grow(
    reader, stores, stocked, web, n, django_assert_num_queries
):
    for i in range(n):
        Reservation.objects.create(
            location=stores[0],
            variant=stocked,
            channel=web,
            kind="order_line",
            quantity=1,
            reference=f"O-{i}",
        )
    reader.get(RESERVATIONS)

    # token, count, reservations (location, variant, channel joined)
    with django_assert_num_queries(3):
        response = reader.get(RESERVATIONS, {"limit": 500})

    assert len(response.json()["results"]) == n


# --- The responses match the OpenAPI schema ---------------------------------------------------


def test_inventory_responses_match_the_schema(schema, reader, writer, pos, api, stores, stocked):
    transfer = writer.post(TRANSFERS, transfer_payload()).json()["number"]
    count = writer.post(COUNTS, count_payload()).json()["id"]
    writer.post(
        RESERVATIONS, reserve_payload(reference="O-7", lines=[{"sku": "TEE-M", "quantity": 1}])
    )
    writer.post(BATCHES, batch_payload("b0"))
    reads = [
        availability_url("web", "TEE-M"),
        availability_url("web", "NOPE"),
        availability_url("nowhere", "TEE-M"),
        stock_url("TEE-M"),
        stock_url("NOPE"),
        LOCATIONS,
        f"{LOCATIONS}wh/",
        f"{LOCATIONS}nowhere/",
        COUNTS,
        f"{COUNTS}{count}/",
        TRANSFERS,
        f"{TRANSFERS}{transfer}/",
        RESERVATIONS,
        f"{BATCHES}b0/",
        f"{BATCHES}nope/",
    ]
    for path in reads:
        assert_matches_schema(schema, "get", path, writer.get(path))
    assert_matches_schema(schema, "get", LOCATIONS, api.get(LOCATIONS))
    assert_matches_schema(schema, "get", LOCATIONS, reader.get(LOCATIONS, {"kind": "x"}))

    writes = [
        (batch_url("web"), reader, {"skus": ["TEE-M", "NOPE"]}, 200),
        (batch_url("web"), reader, {"skus": []}, 400),
        (batch_url("nowhere"), reader, {"skus": ["TEE-M"]}, 404),
        (BATCHES, pos, batch_payload(), 201),
        (BATCHES, pos, {**batch_payload("b9"), "movements": [{"id": "x"}]}, 400),
        (BATCHES, reader, batch_payload(), 403),
        (BATCHES, api, batch_payload(), 401),
        (COUNTS, writer, count_payload(), 201),
        (COUNTS, writer, count_payload(lines=[]), 400),
        (TRANSFERS, writer, transfer_payload(lines=[{"sku": "TEE-M", "quantity": 1}]), 201),
        (TRANSFERS, writer, transfer_payload(lines=[{"sku": "TEE-M", "quantity": 99}]), 409),
        (f"{TRANSFERS}{transfer}/ship/", writer, {}, 200),
        (f"{TRANSFERS}{transfer}/receive/", writer, {"quantities": {"TEE-M": 1}}, 200),
        (f"{TRANSFERS}{transfer}/cancel/", writer, {}, 409),
        (f"{TRANSFERS}TR-999999/cancel/", writer, {}, 404),
        (RESERVATIONS, writer, reserve_payload(lines=[{"sku": "TEE-M", "quantity": 1}]), 201),
        (RESERVATIONS, writer, reserve_payload(lines=[{"sku": "TEE-M", "quantity": 99}]), 409),
        (RESERVATIONS, writer, reserve_payload(lines=[]), 400),
        (RELEASE, writer, {"reference": "O-1"}, 200),
        (CONSUME, writer, {"reference": "O-7"}, 200),
        (CONSUME, writer, {"reference": "O-7"}, 400),
    ]
    for path, client, payload, status in writes:
        response = client.post(path, payload)
        assert response.status_code == status, (path, response.content)
        # The batch path also fits the lookup's template: name it.
        template = BATCH_TEMPLATE if path.endswith("/batch/") else path
        assert_matches_schema(schema, "post", template, response)

    replay = pos.post(BATCHES, batch_payload())
    assert replay.status_code == 200
    # The schema declares one success (201); a replay has the same body.
    assert_matches_schema(schema, "post", BATCHES, _as_status(replay, 201))


BATCH_TEMPLATE = "/api/v1/inventory/availability/{channel}/batch/"


def _as_status(response, status: int):
    response.status_code = status
    return response
