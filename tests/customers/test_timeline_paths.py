"""The timeline API writes a page two ways: PostgreSQL builds each event's JSON (plain JSON in
UTC, the hot path) or Python does (indented JSON, other time zones). Both give the same data,
page after page, including times with and without microseconds and properties as stored."""

import pytest
from django.test import override_settings

from customers.services import touchpoints_ingest

pytestmark = pytest.mark.django_db

INDENTED = "application/json; indent=2"


@pytest.fixture
def busy(channels, ident):
    events = [
        {
            "event_id": f"e{i}",
            "kind": "product_view" if i % 3 else "purchase",
            "channel": "web" if i % 2 else "pos",
            "occurred_at": f"2026-10-01T10:{i // 60:02d}:{i % 60:02d}"
            + (".250000Z" if i % 5 == 0 else "Z"),
            "identifiers": [{"kind": "email", "value": "busy@example.com"}],
            "properties": {"sku": f"SKU-{i}", "nested": {"n": i, "ok": True}, "amount": "1.50"},
        }
        for i in range(120)
    ]
    result = touchpoints_ingest(source="client:9", events=events)
    return result.customers[0]


def walk(api, url, **headers):
    pages = []
    while url:
        response = api.get(url, **headers)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append(body["results"])
        url = body["next"]
    return pages


def test_both_writers_give_the_same_pages(reader, busy):
    url = f"/api/v1/customers/{busy}/timeline/"
    fast = walk(reader, url)
    slow = walk(reader, url, HTTP_ACCEPT=INDENTED)

    assert [len(page) for page in fast] == [50, 50, 20]
    assert fast == slow
    first = fast[0][0]
    assert first["event_id"] == "e119"
    assert first["occurred_at"] == "2026-10-01T10:01:59Z"
    assert fast[0][4]["occurred_at"] == "2026-10-01T10:01:55.250000Z"
    assert first["properties"] == {
        "sku": "SKU-119",
        "nested": {"n": 119, "ok": True},
        "amount": "1.50",
    }
    assert (first["channel"], first["location"], first["source"]) == ("web", None, "client:9")


def test_going_back_gives_the_same_page_both_ways(reader, busy):
    url = f"/api/v1/customers/{busy}/timeline/"
    third = reader.get(reader.get(url).json()["next"]).json()["next"]
    back_fast = reader.get(reader.get(third).json()["previous"]).json()
    back_slow = reader.get(
        reader.get(third, HTTP_ACCEPT=INDENTED).json()["previous"], HTTP_ACCEPT=INDENTED
    ).json()

    assert back_fast == back_slow
    # Back from the third page is the whole second page: e69 down to e20.
    assert [e["event_id"] for e in back_fast["results"]] == [f"e{i}" for i in range(69, 19, -1)]
    assert back_fast["results"] == walk(reader, url)[1]


# A text that JSON must escape, and PostgreSQL's writer with it.
ODD = 'quote " backslash \\ tab \t newline \n é ✓'


@override_settings(TIME_ZONE="Europe/Paris")
def test_another_time_zone_is_written_by_python(reader, busy):
    body = reader.get(f"/api/v1/customers/{busy}/timeline/").json()

    assert body["results"][0]["occurred_at"] == "2026-10-01T12:01:59+02:00"


def test_texts_that_need_escaping_survive_both_writers(reader, mixed):
    url = f"/api/v1/customers/{mixed}/timeline/"

    fast = reader.get(url).json()["results"]
    slow = reader.get(url, HTTP_ACCEPT=INDENTED).json()["results"]

    assert fast == slow
    odd = fast[-1]
    assert (odd["event_id"], odd["source"]) == (ODD[:90], 'client:"odd"')
    assert odd["properties"] == {"text": ODD, "list": [1, None, "é"], "b": {"z": 1, "a": 2}}
    assert odd["occurred_at"] == "2026-10-01T10:00:00.000001Z"
    assert (fast[0]["event_id"], fast[0]["location"]) == ("in-store", "paris-1")


def test_page_queries_read_one_page_of_the_index_whatever_the_plan(busy, channels):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from customers.api import timeline
    from customers.models import Touchpoint

    # Many customers with one event each and one with 120: a generic plan made for
    # ``customer_id = $1`` (an average customer's estimate) would scan and sort all her events;
    # the prepared pages, generic or planned for her, must read the timeline index in order,
    # without a join or a sort.
    touchpoints_ingest(
        source="client:9",
        events=[
            {
                "event_id": f"small-{i}",
                "kind": "app_open",
                "channel": "app",
                "occurred_at": "2026-10-02T08:00:00Z",
                "identifiers": [{"kind": "app_device", "value": f"device-{i}"}],
            }
            for i in range(600)
        ],
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Touchpoint._meta.db_table}")
    first = timeline._first_page.rows(busy, busy)
    at, pk = first[-1][1], first[-1][0]
    # Each statement prepared on this connection before the captured runs.
    timeline._next_page.rows(busy, busy, at, at, pk)
    timeline._previous_page.rows(busy, busy, at, at, pk)
    with CaptureQueriesContext(connection) as captured:
        timeline._first_page.rows(busy, busy)
        timeline._next_page.rows(busy, busy, at, at, pk)
        timeline._previous_page.rows(busy, busy, at, at, pk)

    assert len(captured) == 3
    for mode in ("force_generic_plan", "force_custom_plan"):
        with connection.cursor() as cursor:
            cursor.execute(f"SET plan_cache_mode = {mode}")
            for n, query in enumerate(captured):
                assert query["sql"].startswith("EXECUTE"), query["sql"]
                cursor.execute("EXPLAIN " + query["sql"])
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "Join" not in plan and "Nested Loop" not in plan, (mode, plan)
                # Planned for her, a keyset page may also take the time index when the bound
                # is selective (the planner's choice with the real figures); the first page,
                # and every generic plan, read her index in order.
                if n == 0 or mode == "force_generic_plan":
                    assert "touchpoint_timeline_idx" in plan, (mode, plan)
                    assert "Sort" not in plan, (mode, plan)
            cursor.execute("RESET plan_cache_mode")
    second = timeline._next_page.rows(busy, busy, at, at, pk)
    assert [row[0] for row in second][:3] == sorted(
        Touchpoint.objects.filter(customer_id=busy, id__lt=pk).values_list("id", flat=True),
        reverse=True,
    )[:3]


def test_the_hot_read_answers_like_drf(reader, busy, django_assert_num_queries):
    """A token, plain JSON and at most a cursor: answered before DRF wraps the request, with
    the bytes DRF's path writes (``limit=50`` forces DRF's path: same page, same body but for
    the parameter in the links)."""
    url = f"/api/v1/customers/{busy}/timeline/"
    reader.get(url)
    # The page, and the token: inside a test's transaction the connection's token cache is
    # off (it needs LISTEN), so the token is read too.
    with django_assert_num_queries(2) as queries:
        hot = reader.get(url)
    # The token's prepared lookup, then the prepared page.
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["EXECUTE", "EXECUTE"]
    drf = reader.get(url + "?limit=50")
    assert hot.status_code == drf.status_code == 200
    assert hot["Content-Type"] == drf["Content-Type"] == "application/json"
    assert hot["Allow"] == drf["Allow"] == "GET, HEAD, OPTIONS"
    assert hot.content.decode() == drf.content.decode().replace("limit=50&", "")
    second = reader.get(hot.json()["next"])
    assert [e["event_id"] for e in second.json()["results"]][:2] == ["e69", "e68"]


def test_the_hot_read_leaves_refusals_to_drf(reader, busy, api):
    from omni.models import ApiClient

    url = f"/api/v1/customers/{busy}/timeline/"
    assert api.get(url).status_code == 401  # no token
    assert api.get(url, HTTP_AUTHORIZATION="Token nope").status_code == 401
    assert reader.get(url + "?cursor=zzz").json()["code"] == "not_found"
    assert reader.get("/api/v1/customers/999999/timeline/").status_code == 404
    assert reader.get(url).status_code == 200
    ApiClient.objects.update(is_active=False)
    assert reader.get(url).status_code == 401  # revoked: found out at once


# --- The JSON stored at ingest ----------------------------------------------------------------


def _stored_and_computed():
    from django.db.models import F

    from customers.api.timeline import ROW_JSON, STORED_JSON
    from customers.models import Touchpoint

    return list(
        Touchpoint.objects.annotate(stored=STORED_JSON, computed=ROW_JSON)
        .order_by("pk")
        .values_list("pk", "stored", "computed", F("rendition"))
    )


@pytest.fixture
def mixed(channels):
    """Events with and without a location, microseconds and texts that need escaping."""
    from tests.factories import LocationFactory

    LocationFactory(code="paris-1")
    result = touchpoints_ingest(
        source='client:"odd"',
        events=[
            {
                "event_id": ODD[:90],
                "kind": "support_message",
                "channel": "social",
                "occurred_at": "2026-10-01T10:00:00.000001Z",
                "identifiers": [{"kind": "email", "value": "mixed@example.com"}],
                "properties": {"text": ODD, "list": [1, None, "é"], "b": {"z": 1, "a": 2}},
            },
            {
                "event_id": "in-store",
                "kind": "purchase",
                "channel": "pos",
                "location": "paris-1",
                "occurred_at": "2026-10-01T11:00:00Z",
                "identifiers": [{"kind": "email", "value": "mixed@example.com"}],
                "properties": {"amount": "12.50"},
            },
        ],
    )
    return result.customers[0]


def test_the_ingest_stores_each_events_json_as_postgresql_computes_it(mixed):
    rows = _stored_and_computed()

    assert len(rows) == 2
    for _pk, stored, computed, rendition in rows:
        assert rendition is not None
        assert stored == computed


def test_events_without_stored_json_are_computed_with_one_more_query(
    reader, mixed, django_assert_num_queries
):
    from customers.models import Touchpoint

    url = f"/api/v1/customers/{mixed}/timeline/"
    stored = reader.get(url)
    reader.get(url)
    with django_assert_num_queries(2):  # the token, the page
        reader.get(url)
    # As events recorded before the JSON was stored (or on a location renamed since).
    Touchpoint.objects.filter(event_id="in-store").update(rendition=None)
    with django_assert_num_queries(3):  # the token, the page, the events without
        computed = reader.get(url)

    assert computed.content == stored.content
    assert computed.json()["results"][0]["location"] == "paris-1"
    filtered = reader.get(url, {"channel": "pos"}).json()["results"]
    assert [(e["event_id"], e["location"]) for e in filtered] == [("in-store", "paris-1")]


def test_a_renamed_location_shows_its_new_code(reader, mixed, django_assert_num_queries):
    from customers.models import Touchpoint
    from inventory.models import Location

    url = f"/api/v1/customers/{mixed}/timeline/"
    assert reader.get(url).json()["results"][0]["location"] == "paris-1"
    store = Location.objects.get(code="paris-1")
    store.code = "paris-rivoli"
    store.save()

    assert Touchpoint.objects.get(event_id="in-store").rendition is None
    assert Touchpoint.objects.exclude(event_id="in-store").get().rendition is not None
    assert reader.get(url).json()["results"][0]["location"] == "paris-rivoli"
    store.name = "Rivoli"
    store.save()  # no code change: nothing else forgotten
    assert Touchpoint.objects.exclude(rendition=None).count() == 1
    with django_assert_num_queries(1):  # saving other fields asks nothing about the code
        store.save(update_fields=["name"])

    # A location deleted (never by the admin; code may): its events lose it, and their
    # stored JSON, which names it, goes.
    Touchpoint.objects.filter(event_id="in-store").update(
        rendition=Touchpoint.objects.exclude(rendition=None).values("rendition")[:1]
    )
    store.delete()
    event = Touchpoint.objects.get(event_id="in-store")
    assert (event.location_id, event.rendition) == (None, None)
    assert reader.get(url).json()["results"][0]["location"] is None


def test_the_migration_stores_the_json_of_earlier_events(mixed):
    import importlib

    from django.apps import apps
    from django.db import connection

    from customers.models import Touchpoint

    migration = importlib.import_module("customers.migrations.0007_store_touchpoint_renditions")
    Touchpoint.objects.update(rendition=None)

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection
    migration.store_renditions(apps, editor)

    rows = _stored_and_computed()
    assert [rendition is not None for *_rest, rendition in rows] == [True, True]
    assert all(stored == computed for _pk, stored, computed, _r in rows)


def test_an_event_erased_between_the_two_queries_leaves_the_page(mixed):
    from django.utils import timezone

    from customers.api.timeline import _with_computed
    from customers.models import Touchpoint

    kept = Touchpoint.objects.get(event_id="in-store")
    rows = [(kept.pk, kept.occurred_at, None), (10**12, timezone.now(), None)]

    assert [row[0] for row in _with_computed(rows)] == [kept.pk]
    assert '"event_id":"in-store"' in _with_computed(rows)[0][2]
