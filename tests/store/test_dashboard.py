"""The store dashboard: pickups by state, overdue ones, transfers to receive, counts asked."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.services import stock_count_request
from orders.models import FulfilmentMethod, OrderStatus
from tests.store.conftest import url

pytestmark = pytest.mark.django_db


def _tile(content: bytes, testid: str) -> int:
    html = content.decode()
    start = html.index(f'data-testid="{testid}"')
    number = html.index('class="number">', start) + len('class="number">')
    return int(html[number : html.index("<", number)])


def test_dashboard_counts_and_lists(
    client_a, stores, make_order, shipped_transfer, django_assert_max_num_queries, settings
):
    a, b = stores["a"], stores["b"]
    now = timezone.now()
    prepare = [make_order(a, OrderStatus.PLACED) for _ in range(7)]
    make_order(a, OrderStatus.AWAITING_TRANSFER, expected_ready_at=now + timedelta(days=1))
    fresh = make_order(a, OrderStatus.READY, ready_at=now - timedelta(days=1))
    late = make_order(a, OrderStatus.READY, ready_at=now - timedelta(days=4))
    # Not this store's pickups, or not pickups, or done: not counted.
    make_order(b, OrderStatus.PLACED)
    make_order(a, OrderStatus.COLLECTED, ready_at=now - timedelta(days=9))
    make_order(a, OrderStatus.PLACED, fulfilment_method=FulfilmentMethod.IN_STORE)
    stock_count_request(location=a, reason="Shirts look short")

    with django_assert_max_num_queries(15):
        response = client_a.get(url("dashboard", a))
    assert response.status_code == 200
    content = response.content
    assert _tile(content, "tile-to-prepare") == 7
    assert _tile(content, "tile-awaiting") == 1
    # As the pickup queue sorts them: ready (the fresh one) and overdue (the late one).
    assert _tile(content, "tile-ready") == 1
    assert _tile(content, "tile-overdue") == 1
    assert _tile(content, "tile-transfers") == 1
    assert _tile(content, "tile-counts") == 1
    # Short lists: the 5 oldest to prepare first.
    oldest = sorted(prepare, key=lambda o: o.placed_at)
    context = response.context
    assert [o.number for o in context["to_prepare"]] == [o.number for o in oldest[:5]]
    assert b"The first 5 of 7." in content
    assert [o.number for o in context["ready"]] == [fresh.number]
    assert [o.number for o in context["overdue"]] == [late.number]
    assert shipped_transfer.number.encode() in content
    assert b"Shirts look short" in content

    settings.OMNI_PICKUP_OVERDUE_DAYS = 0
    response = client_a.get(url("dashboard", a))
    assert _tile(response.content, "tile-overdue") == 2
    assert _tile(response.content, "tile-ready") == 0


def test_dashboard_of_an_empty_store(client_a, stores):
    response = client_a.get(url("dashboard", stores["a"]))
    assert response.status_code == 200
    for testid in ("tile-to-prepare", "tile-awaiting", "tile-ready", "tile-overdue"):
        assert _tile(response.content, testid) == 0
    assert b"Nothing on its way." in response.content
    assert b"No count asked for." in response.content


def test_dashboard_shows_only_this_stores_work(client_b, stores, make_order, shipped_transfer):
    make_order(stores["a"], OrderStatus.PLACED)
    stock_count_request(location=stores["a"], reason="A only")
    response = client_b.get(url("dashboard", stores["b"]))
    assert _tile(response.content, "tile-to-prepare") == 0
    assert _tile(response.content, "tile-transfers") == 0
    assert _tile(response.content, "tile-counts") == 0
    assert shipped_transfer.number.encode() not in response.content
    assert b"A only" not in response.content


def test_the_header_shows_user_store_and_navigation(client_a, stores):
    response = client_a.get(url("dashboard", stores["a"]))
    html = response.content.decode()
    assert '<span data-testid="user">Anna</span>' in html
    assert "<strong>Paris Rivoli</strong>" in html
    for name in ("dashboard", "stock", "customers", "transfers", "counts"):
        assert f'href="{url(name, stores["a"])}"' in html
    assert 'action="/store/sign-out/"' in html
