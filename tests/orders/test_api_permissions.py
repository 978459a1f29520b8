"""Who may call the orders API, endpoint by endpoint: staff and API clients (read-only ones
only read), an API client bound to a channel only for that channel's orders and carts, till
sales only for clients bound to no channel or to a POS channel; anonymous callers and store
staff not at all. Every refused call changes nothing."""

import pytest

from omni.models import Channel, IdempotencyKey
from orders.models import Order
from orders.services import cart_create, order_mark_ready, order_ship
from tests.factories import ListingFactory, StockRuleFactory
from tests.orders.api_fixtures import (
    CARTS,
    ORDERS,
    POS_SALES,
    app_client_fixture,  # noqa: F401
    assert_error,
    by_reference_url,
    cart_url,
    order_url,
    place,
    snapshot,
    store_staff_fixture,  # noqa: F401
    till_client_fixture,  # noqa: F401
    web_client_fixture,  # noqa: F401
)
from tests.orders.conftest import lines

pytestmark = pytest.mark.django_db


class World:
    pass


@pytest.fixture
def world(shop, stock):
    """Web shop orders in several states and a web cart; an app order."""
    w = World()
    w.placed = place(shop, stock, external_reference="WEB-1")
    w.pickup = place(shop, stock, method="pickup")
    w.ready = place(shop, stock, method="pickup")
    order_mark_ready(order=w.ready, source="test")
    w.shipped = place(shop, stock)
    order_ship(order=w.shipped, source="test")
    w.cart = cart_create(channel=shop.web, source="test", lines=lines(("SKU-A", 1)))
    app = Channel.objects.get(code="app")
    ListingFactory(variant=shop.a, channel=app)
    StockRuleFactory(channel=app, location=shop.warehouse)
    w.app_order = place(shop, stock, channel=app, external_reference="APP-1")
    return w


SHIP = {
    "channel": "web",
    "lines": [{"sku": "SKU-A", "quantity": 1}],
    "fulfilment_method": "ship",
    "shipping_address": "1 rue de Rivoli, Paris",
}
SALE = {"store": "paris", "lines": [{"sku": "SKU-A", "quantity": 1}], "receipt": "R-1"}

# name: (method, path from the world, body)
WRITES = {
    "place": ("post", lambda w: ORDERS, SHIP),
    "cancel": ("post", lambda w: order_url(w.placed.number, "cancel"), {"reason": "x"}),
    "ready": ("post", lambda w: order_url(w.pickup.number, "ready"), None),
    "collect": ("post", lambda w: order_url(w.ready.number, "collect"), "code"),
    "ship": ("post", lambda w: order_url(w.placed.number, "ship"), {"carrier": "DHL"}),
    "return": (
        "post",
        lambda w: order_url(w.shipped.number, "returns"),
        {"location": "paris", "lines": [{"line": 1, "quantity": 1}]},
    ),
    "open cart": ("post", lambda w: CARTS, {"channel": "web"}),
    "add line": ("post", lambda w: cart_url(w.cart.token, "lines"), {"sku": "SKU-B"}),
    "set line": ("put", lambda w: cart_url(w.cart.token, "lines/SKU-A"), {"quantity": 3}),
    "remove line": ("delete", lambda w: cart_url(w.cart.token, "lines/SKU-A"), None),
    "identify": (
        "post",
        lambda w: cart_url(w.cart.token, "identify"),
        {"identifiers": [{"kind": "email", "value": "eve@example.com"}]},
    ),
    "checkout": (
        "post",
        lambda w: cart_url(w.cart.token, "checkout"),
        {"fulfilment_method": "ship", "shipping_address": "Paris"},
    ),
    "pos sale": ("post", lambda w: POS_SALES, SALE),
}
READS = {
    "list": lambda w: ORDERS,
    "order": lambda w: order_url(w.placed.number),
    "by reference": lambda w: by_reference_url("web", "WEB-1"),
    "returns": lambda w: order_url(w.shipped.number, "returns"),
    "cart": lambda w: cart_url(w.cart.token),
}


def call(api, world, name):
    method, path, body = WRITES[name]
    if body == "code":
        body = {"code": world.ready.pickup_code}
    return getattr(api, method)(path(world), body)


# --- Nobody outside: anonymous callers and store staff ---------------------------------------


@pytest.mark.parametrize("name", sorted(WRITES))
def test_anonymous_callers_change_nothing(api, world, name):
    before = snapshot()

    assert_error(call(api, world, name), 401, "not_authenticated")
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(READS))
def test_anonymous_callers_read_nothing(api, world, name):
    assert_error(api.get(READS[name](world)), 401, "not_authenticated")


@pytest.mark.parametrize("name", sorted(WRITES))
def test_store_staff_change_nothing(store_staff, world, name):
    before = snapshot()

    error = assert_error(call(store_staff, world, name), 403, "permission_denied")
    assert error["message"] == "Only staff and API clients may use the API."
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(READS))
def test_store_staff_read_nothing(store_staff, world, name):
    assert_error(store_staff.get(READS[name](world)), 403, "permission_denied")


# --- Read-only clients ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WRITES))
def test_read_only_clients_change_nothing(reader, world, name):
    before = snapshot()

    error = assert_error(call(reader, world, name), 403, "permission_denied")
    assert error["message"] == "This API client has read-only access."
    assert snapshot() == before


def test_a_refused_call_keeps_no_idempotency_key(reader, world):
    response = reader.post(ORDERS, SHIP, HTTP_IDEMPOTENCY_KEY="k-1")

    assert_error(response, 403, "permission_denied")
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.parametrize("name", sorted(READS))
def test_read_only_clients_read_everything(reader, world, name):
    assert reader.get(READS[name](world)).status_code == 200


def test_read_only_clients_list_every_channel(reader, world):
    assert reader.get(ORDERS).json()["count"] == 5


# --- Staff and write clients ------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["staff_api", "writer", "web_client"])
@pytest.mark.parametrize("name", sorted(set(WRITES) - {"pos sale"}))
def test_staff_and_write_clients_of_the_channel_may_write(request, world, caller, name):
    api = request.getfixturevalue(caller)

    response = call(api, world, name)

    assert response.status_code in (200, 201), response.content


@pytest.mark.parametrize("caller", ["staff_api", "writer", "till_client"])
def test_pos_sales_by_staff_unbound_and_pos_clients(request, world, caller):
    response = request.getfixturevalue(caller).post(POS_SALES, SALE)

    assert response.status_code == 201, response.content


# --- Clients bound to a channel ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READS))
def test_a_bound_client_reads_its_channel(web_client, world, name):
    assert web_client.get(READS[name](world)).status_code == 200


def test_a_bound_client_lists_its_channel_only(web_client, app_client, world):
    web = web_client.get(ORDERS).json()
    app = app_client.get(ORDERS).json()

    assert web["count"] == 4
    assert all(o["channel"] == "web" for o in web["results"])
    assert [o["number"] for o in app["results"]] == [world.app_order.number]
    assert web_client.get(ORDERS, {"channel": "app"}).json()["count"] == 0


@pytest.mark.parametrize("name", sorted(set(READS) - {"list"}))
def test_another_channels_orders_and_carts_are_not_found(app_client, world, name):
    assert_error(app_client.get(READS[name](world)), 404, "not_found")


def test_a_bound_client_finds_its_own_reference_only(web_client, app_client, world):
    assert web_client.get(by_reference_url("web", "WEB-1")).status_code == 200
    assert_error(web_client.get(by_reference_url("app", "APP-1")), 404, "not_found")
    assert app_client.get(by_reference_url("app", "APP-1")).status_code == 200


@pytest.mark.parametrize(
    "name",
    ["cancel", "ready", "collect", "ship", "return", "add line", "set line", "remove line"]
    + ["identify", "checkout"],
)
def test_another_channels_orders_and_carts_cannot_be_changed(app_client, world, name):
    before = snapshot()

    assert_error(call(app_client, world, name), 404, "not_found")
    assert snapshot() == before


@pytest.mark.parametrize("name", ["place", "open cart"])
def test_placing_on_another_channel_is_forbidden(app_client, world, name):
    before = snapshot()

    error = assert_error(call(app_client, world, name), 403, "permission_denied")
    assert error["message"] == "This API client speaks for channel app; it may not use channel web."
    assert snapshot() == before


@pytest.mark.parametrize("channel", ["nope", "store"])
def test_a_bound_client_names_no_other_channel_even_unknown(app_client, world, channel):
    before = snapshot()

    response = app_client.post(ORDERS, {**SHIP, "channel": channel})

    error = assert_error(response, 403, "permission_denied")
    assert error["message"] == (
        f"This API client speaks for channel app; it may not use channel {channel}."
    )
    assert snapshot() == before


@pytest.mark.parametrize("caller", ["web_client", "app_client"])
def test_pos_sales_need_an_unbound_or_pos_client(request, world, caller):
    api = request.getfixturevalue(caller)
    code = api.api_client.channel.code
    before = snapshot()

    error = assert_error(api.post(POS_SALES, SALE), 403, "permission_denied")
    assert error["message"] == (
        f"This API client speaks for channel {code}, which is not a store (POS) channel; "
        "only POS clients record till sales."
    )
    assert snapshot() == before


def test_a_pos_client_sells_on_its_own_channel_only(till_client, world):
    before = snapshot()

    response = till_client.post(POS_SALES, {**SALE, "channel": "web"})

    error = assert_error(response, 403, "permission_denied")
    assert (
        error["message"] == "This API client speaks for channel store; it may not use channel web."
    )
    assert snapshot() == before
    assert Order.objects.filter(channel__code="store").count() == 0
