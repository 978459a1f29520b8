"""The customer's confirmation page: found by its token only, the pickup code in figures and as
a QR code while the order waits, nothing of it once collected or cancelled."""

import pytest

from orders.services import order_cancel, order_collect, order_mark_ready, order_place
from tests.orders.conftest import lines

pytestmark = pytest.mark.django_db


@pytest.fixture
def pickup(shop, stock, email):
    stock.put(shop.paris, shop.a, 3)
    return order_place(
        channel=shop.web,
        lines=lines(("SKU-A", 2)),
        fulfilment_method="pickup",
        store=shop.paris,
        identifiers=email(),
        source="test",
    )


def test_waiting_pickup_shows_its_code_and_qr(client, pickup):
    response = client.get(f"/pickup/{pickup.public_token}/", secure=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert pickup.number in body
    assert f'<div class="code" aria-label="Pickup code">{pickup.pickup_code}</div>' in body
    assert body.count("<svg") == 1
    assert "We are preparing your order" in body
    assert "20.00 EUR" in body
    assert response["Cache-Control"].startswith("max-age=0")


def test_ready_pickup_says_so(client, pickup):
    order_mark_ready(order=pickup, source="test")
    body = client.get(f"/pickup/{pickup.public_token}/", secure=True).content.decode()
    assert "Your order is ready." in body
    assert body.count("<svg") == 1


@pytest.mark.parametrize("close", ["collect", "cancel"])
def test_closed_order_shows_no_code(client, pickup, close):
    if close == "collect":
        order_mark_ready(order=pickup, source="test")
        order_collect(order=pickup, code=pickup.pickup_code, source="test")
    else:
        order_cancel(order=pickup, source="test")
    body = client.get(f"/pickup/{pickup.public_token}/", secure=True).content.decode()
    assert pickup.pickup_code not in body.replace(pickup.number, "")
    assert "<svg" not in body


def test_unknown_token_is_404(client, pickup):
    assert client.get("/pickup/0123456789abcdef0123456789abcdef/", secure=True).status_code == 404
    assert client.get(f"/pickup/{pickup.number}/", secure=True).status_code == 404


def test_qr_code_holds_number_and_code(pickup):
    assert pickup.qr_payload == f"OMNI:{pickup.number}:{pickup.pickup_code}"
