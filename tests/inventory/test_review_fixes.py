"""Review mends: POS batches treat negative adjustments like sales, transfer holds move only with
their transfer, the API uses the shared helpers, SKUs are looked up once per call, drift is
repaired with one statement per batch, and the demo refreshes availability once."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.demo import generate_catalog
from catalog.models import Variant
from inventory import demo
from inventory.api import serializers as inventory_serializers
from inventory.api import views as inventory_views
from inventory.models import (
    ChannelStockPolicy,
    Reservation,
    StockCount,
    StockLevel,
    StockMovement,
)
from inventory.services import (
    ReserveLine,
    movement_batch_apply,
    stock_consume,
    stock_count_submit,
    stock_reconcile,
    stock_release,
    stock_reserve,
    transfer_cancel,
    transfer_request,
    transfer_ship,
)
from inventory.services import common as common_services
from inventory.services import counts as count_services
from inventory.services.reservations import _release
from omni.api import errors as api_errors
from omni.api import permissions as api_permissions
from omni.exceptions import Conflict, NotFound, ValidationFailed
from tests.factories import VariantFactory

pytestmark = pytest.mark.django_db

BATCHES = "/api/v1/inventory/movements/batches/"
COUNTS = "/api/v1/inventory/counts/"


def level(location, variant) -> tuple[int, int]:
    row = StockLevel.objects.get(location=location, variant=variant)
    return row.on_hand, row.reserved


def active(reference) -> list[tuple[str, int, bool]]:
    return sorted(
        (r.location.code, r.quantity, r.needs_attention)
        for r in Reservation.objects.filter(reference=reference, status="active")
    )


def state() -> dict:
    return {
        "levels": list(StockLevel.objects.order_by("pk").values_list("pk", "on_hand", "reserved")),
        "reservations": list(
            Reservation.objects.order_by("pk").values_list("pk", "status", "quantity")
        ),
        "movements": StockMovement.objects.count(),
    }


def reserve(channel, variant, quantity, reference):
    return stock_reserve(
        channel=channel,
        lines=[ReserveLine(variant=variant, quantity=quantity)],
        reference=reference,
    )


def selects_from(queries, model) -> int:
    table = f'FROM "{model._meta.db_table}"'
    return sum(1 for q in queries if q["sql"].startswith("SELECT") and table in q["sql"])


# --- 1. A POS batch's negative adjustment is followed like a sale -----------------------------


def adjust_in_batch(location, variant, quantity, capture):
    with capture(execute=True):
        return movement_batch_apply(
            source="pos:north",
            batch_id="day-1",
            location=location,
            movements=[
                {
                    "id": "a1",
                    "sku": variant.sku,
                    "kind": "adjustment",
                    "quantity": quantity,
                    "reason": "Broken",
                }
            ],
        )


def test_a_batch_adjustment_below_zero_asks_for_a_count_and_moves_the_reservations(
    stores, variant, web, receive, django_capture_on_commit_callbacks
):
    warehouse, north, south = stores
    receive(north, variant, 2)
    receive(south, variant, 3)
    reserve(web, variant, 2, "O-1")  # the warehouse has none: held in the north store
    assert active("O-1") == [("north", 2, False)]

    result = adjust_in_batch(north, variant, -3, django_capture_on_commit_callbacks)

    assert (result.replayed, result.batch.applied_count) == (False, 1)
    assert level(north, variant) == (-1, 0)
    assert level(south, variant) == (3, 2)
    assert active("O-1") == [("south", 2, False)]
    assert list(StockCount.objects.values_list("location__code", "status", "reason")) == [
        ("north", "requested", "A sale took more than the ledger held.")
    ]


def test_a_batch_adjustment_below_reserved_moves_the_shortfall_without_a_count(
    stores, variant, web, receive, django_capture_on_commit_callbacks
):
    _warehouse, north, south = stores
    receive(north, variant, 3)
    receive(south, variant, 3)
    reserve(web, variant, 2, "O-1")

    adjust_in_batch(north, variant, -2, django_capture_on_commit_callbacks)

    assert level(north, variant) == (1, 1)
    assert level(south, variant) == (3, 1)
    assert active("O-1") == [("north", 1, False), ("south", 1, False)]
    assert StockCount.objects.count() == 0


def test_a_positive_batch_adjustment_triggers_no_check(
    stores, variant, web, receive, django_capture_on_commit_callbacks
):
    _warehouse, north, _south = stores
    receive(north, variant, 2)
    reserve(web, variant, 2, "O-1")

    adjust_in_batch(north, variant, 1, django_capture_on_commit_callbacks)

    assert level(north, variant) == (3, 2)
    assert active("O-1") == [("north", 2, False)]
    assert StockCount.objects.count() == 0


# --- 2. Transfer holds move only with the transfer; no unbounded consume ------------------------


@pytest.fixture
def requested(stores, variant, receive):
    warehouse, north, _south = stores
    receive(warehouse, variant, 5)
    return transfer_request(
        from_location=warehouse, to_location=north, lines=[{"sku": variant.sku, "quantity": 3}]
    )


def transfer_holds(transfer):
    return Reservation.objects.filter(reference=f"transfer:{transfer.number}")


@pytest.mark.parametrize("service", [stock_release, stock_consume])
def test_a_transfer_hold_is_refused_when_picked_by_its_reservations(requested, service):
    before = state()
    message = (
        f"Stock held for transfer:{requested.number} moves only with the transfer; ship or "
        "cancel the transfer instead."
    )

    with pytest.raises(ValidationFailed) as exc:
        service(reservations=list(transfer_holds(requested)))

    assert (exc.value.code, exc.value.message) == ("transfer_reservation", message)
    assert exc.value.extra == {"reservations": [message]}
    assert state() == before


def test_a_mixed_selection_with_a_transfer_hold_releases_nothing(requested, stores, variant, web):
    warehouse, _north, _south = stores
    order = reserve(web, variant, 1, "O-1")
    before = state()

    with pytest.raises(ValidationFailed) as exc:
        stock_release(reservations=[*order, *transfer_holds(requested)])

    assert exc.value.code == "transfer_reservation"
    assert state() == before
    assert level(warehouse, variant) == (5, 4)


def test_the_transfer_itself_still_releases_its_hold(requested, stores, variant):
    warehouse, _north, _south = stores

    transfer_ship(transfer=requested, quantities={variant.sku: 2})

    assert level(warehouse, variant) == (3, 0)
    assert list(transfer_holds(requested).values_list("status", flat=True)) == ["released"]


def test_cancelling_the_transfer_still_releases_its_hold(requested, stores, variant):
    warehouse, _north, _south = stores

    transfer_cancel(transfer=requested)

    assert level(warehouse, variant) == (5, 0)
    assert list(transfer_holds(requested).values_list("status", flat=True)) == ["released"]


def test_a_hold_released_behind_the_transfers_back_is_still_a_conflict(requested, variant):
    # Only the transfers module may release a transfer's hold: the private path it uses.
    assert _release(reservations=transfer_holds(requested)) == 3
    before = state()

    with pytest.raises(Conflict) as exc:
        transfer_ship(transfer=requested)

    assert exc.value.code == "reservation_changed"
    assert state() == before


def test_consume_without_a_reference_or_reservations_is_refused(stores, variant, web, receive):
    warehouse, _north, _south = stores
    receive(warehouse, variant, 4)
    reserve(web, variant, 2, "O-1")
    reserve(web, variant, 1, "O-2")
    before = state()

    with pytest.raises(ValidationFailed) as exc:
        stock_consume()

    assert (exc.value.code, exc.value.message) == (
        "validation_error",
        "Say which reservations to fulfil.",
    )
    assert exc.value.extra == {"reference": ["Required."]}
    assert state() == before
    assert level(warehouse, variant) == (4, 3)


def test_release_without_a_reference_or_reservations_is_still_refused(db):
    with pytest.raises(ValidationFailed) as exc:
        stock_release()

    assert (exc.value.message, exc.value.extra) == (
        "Say which reservations to release.",
        {"reference": ["Required."]},
    )


# --- 3. The API uses the shared helpers -----------------------------------------------------------


def test_the_apis_use_the_shared_error_responses_and_caller_helpers():
    from catalog.api import views as catalog_views

    for module in (inventory_views, catalog_views):
        for name in ("READ_ERRORS", "LIST_ERRORS", "WRITE_ERRORS", "NOT_FOUND"):
            assert getattr(module, name) is getattr(api_errors, name), (module, name)
        assert module.IDEMPOTENCY_ERRORS is api_errors.IDEMPOTENCY_ERRORS
    assert inventory_views.request_source is api_permissions.request_source
    assert inventory_views.request_actor is api_permissions.request_actor
    assert inventory_views.resolve_location is common_services.resolve_location
    for gone in ("caller_source", "caller_actor", "location_from_body"):
        assert not hasattr(inventory_views, gone), gone


def test_resolve_location_reports_an_unknown_code_under_the_field(stores):
    warehouse, _north, _south = stores

    assert common_services.resolve_location("wh") == warehouse
    assert common_services.resolve_location(warehouse) is warehouse
    with pytest.raises(ValidationFailed) as exc:
        common_services.resolve_location("nowhere", "to_location")

    assert (exc.value.code, exc.value.message, exc.value.extra) == (
        "validation_error",
        "No location with code nowhere.",
        {"to_location": ["Unknown location nowhere."]},
    )


def test_the_serializers_take_the_services_maximum_quantity():
    assert common_services.MAX_QUANTITY == 1_000_000
    assert inventory_serializers.MAX_QUANTITY == common_services.MAX_QUANTITY


def test_the_schema_advertises_the_services_maximum_quantity(api):
    schemas = api.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]

    for component in ("CountLineInput", "TransferLineInput", "ReservationLineInput"):
        quantity = schemas[f"{component}Request"]["properties"]["quantity"]
        assert quantity["maximum"] == 1_000_000, component
    quantities = schemas["TransferQuantitiesInputRequest"]["properties"]["quantities"]
    assert quantities["additionalProperties"]["maximum"] == 1_000_000


def test_a_count_line_above_the_maximum_is_refused_by_the_api(writer, stores, variant):
    body = {
        "location": "north",
        "counted_at": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "lines": [{"sku": variant.sku, "quantity": 1_000_001}],
    }

    response = writer.post(COUNTS, body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {
        "lines": {"0": {"quantity": ["Ensure this value is less than or equal to 1000000."]}}
    }
    assert StockCount.objects.count() == 0


def test_a_batch_through_the_api_records_the_client_as_source(writer, stores, variant):
    response = writer.post(
        BATCHES,
        {
            "batch_id": "b-1",
            "location": "north",
            "movements": [{"id": "r1", "sku": variant.sku, "kind": "receipt", "quantity": 2}],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    movement = StockMovement.objects.get()
    assert (movement.source, movement.actor_id, movement.location.code) == (
        f"client:{writer.api_client.pk}",
        None,
        "north",
    )


def test_a_batch_through_the_api_with_an_unknown_location_is_400(writer, stores, variant):
    response = writer.post(
        BATCHES,
        {
            "batch_id": "b-1",
            "location": "nowhere",
            "movements": [{"id": "r1", "sku": variant.sku, "kind": "receipt", "quantity": 2}],
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "code": "validation_error",
        "message": "No location with code nowhere.",
        "details": {"location": ["Unknown location nowhere."]},
    }
    assert StockMovement.objects.count() == 0


# --- 4. SKUs looked up once per call --------------------------------------------------------------


@pytest.fixture
def three(db):
    return [VariantFactory(), VariantFactory(), VariantFactory()]


def test_variants_by_sku_finds_every_sku_in_one_query(three):
    given = three[0]
    with CaptureQueriesContext(connection) as queries:
        found = common_services.variants_by_sku(
            [given, f"  {three[1].sku.lower()} ", three[2].sku, "NOPE", ""]
        )

    assert found == {v.sku: v for v in three}
    assert found[given.sku] is given
    assert selects_from(queries.captured_queries, Variant) == 1
    with CaptureQueriesContext(connection) as queries:
        assert common_services.variants_by_sku(["", given]) == {given.sku: given}
    assert len(queries.captured_queries) == 0


def test_variant_of_raises_the_lookup_error_of_before(three):
    with pytest.raises(NotFound) as exc:
        common_services.variant_of({}, "nope")

    assert (exc.value.message, exc.value.extra) == (
        "No variant with SKU nope.",
        {"sku": ["Unknown SKU nope."]},
    )


def test_a_reservation_reads_its_skus_and_the_channel_policy_once(stores, three, web, receive):
    warehouse, _north, _south = stores
    for variant in three:
        receive(warehouse, variant, 5)
    ChannelStockPolicy.objects.update_or_create(channel=web, defaults={"checkout_hold_minutes": 12})

    with CaptureQueriesContext(connection) as queries:
        created = stock_reserve(
            channel=web,
            kind="checkout_hold",
            reference="CART-1",
            lines=[ReserveLine(variant=v.sku.lower(), quantity=1) for v in three],
        )

    assert sorted(r.variant.sku for r in created) == sorted(v.sku for v in three)
    assert selects_from(queries.captured_queries, Variant) == 1
    assert selects_from(queries.captured_queries, ChannelStockPolicy) == 1
    hold = created[0].expires_at - timezone.now()
    assert timedelta(minutes=11) < hold <= timedelta(minutes=12)


def test_a_reservation_keeps_its_unknown_sku_errors(stores, three, web):
    with pytest.raises(ValidationFailed) as exc:
        stock_reserve(
            channel=web,
            reference="O-1",
            lines=[
                ReserveLine(variant=three[0].sku, quantity=1),
                ReserveLine(variant="nope", quantity=1),
                ReserveLine(variant=three[1].sku, quantity=0),
            ],
        )

    assert exc.value.message == "Some lines cannot be reserved."
    assert exc.value.extra == {
        "lines": {
            "1": {"sku": ["Unknown SKU nope."]},
            "2": {"quantity": ["Must be at least 1."]},
        }
    }


def test_a_transfer_reads_its_skus_once(stores, three, receive):
    warehouse, north, _south = stores
    for variant in three:
        receive(warehouse, variant, 5)

    with CaptureQueriesContext(connection) as queries:
        transfer = transfer_request(
            from_location=warehouse,
            to_location=north,
            lines=[{"sku": v.sku, "quantity": 2} for v in three],
        )

    assert transfer.lines.count() == 3
    assert selects_from(queries.captured_queries, Variant) == 1


def test_a_transfer_keeps_its_line_errors(stores, three):
    warehouse, north, _south = stores

    with pytest.raises(ValidationFailed) as exc:
        transfer_request(
            from_location=warehouse,
            to_location=north,
            lines=[
                {"sku": three[0].sku, "quantity": 1},
                {"sku": "nope", "quantity": 1},
                {"sku": three[0].sku.lower(), "quantity": 1},
            ],
        )

    assert exc.value.extra == {
        "lines": {
            "1": {"sku": ["Unknown SKU nope."]},
            "2": {"sku": [f"{three[0].sku} is already on line 0."]},
        }
    }


def test_a_count_reads_its_skus_once_and_keeps_its_errors(stores, three):
    _warehouse, north, _south = stores
    counted_at = timezone.now() - timedelta(minutes=5)

    with CaptureQueriesContext(connection) as queries:
        count = stock_count_submit(
            location=north,
            counted_at=counted_at,
            lines=[{"sku": v.sku, "quantity": 1} for v in three],
        )

    assert count.lines.count() == 3
    assert selects_from(queries.captured_queries, Variant) == 1
    with pytest.raises(ValidationFailed) as exc:
        stock_count_submit(
            location=north, counted_at=counted_at, lines=[{"sku": "nope", "quantity": 1}]
        )
    assert exc.value.extra == {"lines": {"0": {"sku": ["Unknown SKU nope."]}}}


def test_a_batch_reads_its_skus_once(stores, three):
    _warehouse, north, _south = stores

    with CaptureQueriesContext(connection) as queries:
        movement_batch_apply(
            source="pos:north",
            batch_id="day-1",
            location=north,
            movements=[
                {"id": str(i), "sku": v.sku.lower(), "kind": "receipt", "quantity": 2}
                for i, v in enumerate(three)
            ],
        )

    assert [level(north, v) for v in three] == [(2, 0), (2, 0), (2, 0)]
    assert selects_from(queries.captured_queries, Variant) == 1


# --- 5. Drift repaired with one UPDATE ... FROM (VALUES ...) per batch ------------------------


def test_drift_is_repaired_with_one_values_update(stores, three, receive):
    warehouse, _north, _south = stores
    for variant in three:
        receive(warehouse, variant, 4)
    StockLevel.objects.filter(variant__in=three[:2]).update(on_hand=9)

    with CaptureQueriesContext(connection) as queries:
        run = stock_reconcile(trigger="test")

    assert run.on_hand_drift_repaired == 2
    assert [level(warehouse, v) for v in three] == [(4, 0), (4, 0), (4, 0)]
    updates = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith(f'UPDATE "{StockLevel._meta.db_table}" AS t SET "on_hand"')
    ]
    assert len(updates) == 1
    assert "FROM (VALUES" in updates[0]
    assert not any(
        "CASE WHEN" in q["sql"] and StockLevel._meta.db_table in q["sql"]
        for q in queries.captured_queries
    )


# --- 6. The demo refreshes availability once --------------------------------------------------


def test_the_demo_refreshes_availability_once(monkeypatch):
    generate_catalog(products=8)
    calls = []
    original = count_services.availability_refresh

    def counted(*args, **kwargs):
        calls.append(kwargs.get("variant_ids"))
        return original(*args, **kwargs)

    monkeypatch.setattr(count_services, "availability_refresh", counted)
    monkeypatch.setattr(demo, "availability_refresh", counted, raising=False)

    demo.generate_inventory()

    assert calls == [None]
