"""Fixtures and helpers of the orders API tests: callers of every kind (an API client bound to
a channel, store staff signed in), orders placed through the services, exact JSON of an order
or a cart, and a snapshot of every table an order call writes (to prove a refused call changed
nothing).

Import the fixtures a test module needs from here by their function names (``from
tests.orders.api_fixtures import web_client_fixture  # noqa: F401``): pytest knows them by
their fixture names (``web_client``), so a test's argument does not shadow the import. The
plain helpers are ordinary functions.
"""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from customers.identifiers import Identifier
from customers.models import Customer, CustomerMerge, Identity, Touchpoint
from customers.services import customer_create
from inventory.models import Reservation, StockLevel, StockMovement, Transfer, TransferLine
from omni.models import ApiClientAccess, Channel, IdempotencyKey, OutboxEvent
from omni.services import api_client_create
from orders.models import (
    Cart,
    CartLine,
    Fulfilment,
    Order,
    OrderLine,
    OrderStatusChange,
    Return,
    ReturnLine,
    StaffAssignment,
)
from orders.services import order_place
from tests.orders.conftest import lines

BASE = "/api/v1/orders"
ORDERS = f"{BASE}/"
CARTS = f"{BASE}/carts/"
POS_SALES = f"{BASE}/pos-sales/"


def order_url(number, action: str = "") -> str:
    return f"{BASE}/{number}/" + (f"{action}/" if action else "")


def cart_url(token, action: str = "") -> str:
    return f"{BASE}/carts/{token}/" + (f"{action}/" if action else "")


def by_reference_url(channel: str, reference: str) -> str:
    return f"{BASE}/by-reference/{channel}/{reference}/"


def iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def money(value) -> str:
    return f"{Decimal(value):.2f}"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body


def source_of(api) -> str:
    return f"client:{api.api_client.pk}"


# --- Callers ----------------------------------------------------------------------------------


def token_client(name: str, access=ApiClientAccess.WRITE, channel: Channel | None = None):
    client, token = api_client_create(name=name, access=access, channel=channel)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    api.api_client = client
    return api


@pytest.fixture(name="web_client")
def web_client_fixture(shop):
    """A read-and-write API client bound to the web shop's channel."""
    return token_client("web-shop", channel=shop.web)


@pytest.fixture(name="app_client")
def app_client_fixture(shop):
    """A read-and-write API client bound to the mobile app's channel."""
    return token_client("mobile-app", channel=Channel.objects.get(code="app"))


@pytest.fixture(name="till_client")
def till_client_fixture(shop):
    """A read-and-write API client bound to the POS channel (a till)."""
    return token_client("till", channel=shop.pos)


@pytest.fixture(name="store_staff")
def store_staff_fixture(shop, django_user_model):
    """A member of the store staff (not admin staff), signed in, working in Paris."""
    user = django_user_model.objects.create_user(username="clerk", password="pw")
    StaffAssignment.objects.create(user=user, location=shop.paris)
    api = APIClient()
    api.force_login(user)
    return api


def a_customer(email: str = "camille@example.com") -> Customer:
    return customer_create(data={}, identifiers=[Identifier("email", email)], source="test")


# --- Orders through the services --------------------------------------------------------------


def place(shop, stock, method="ship", quantity=2, channel=None, **kwargs) -> Order:
    """An order of ``quantity`` x SKU-A on the web shop (or ``channel``), its stock put first."""
    where = shop.warehouse if method == "ship" else shop.paris
    stock.put(where, shop.a, 10)
    if method == "ship":
        kwargs.setdefault("shipping_address", "1 rue de Rivoli, Paris")
    else:
        kwargs.setdefault("store", shop.paris)
    return order_place(
        channel=channel or shop.web,
        lines=lines(("SKU-A", quantity)),
        fulfilment_method=method,
        source="test",
        **kwargs,
    )


# --- Snapshots --------------------------------------------------------------------------------

SNAPSHOT_MODELS = [
    Order,
    OrderLine,
    OrderStatusChange,
    Fulfilment,
    Return,
    ReturnLine,
    Cart,
    CartLine,
    Reservation,
    StockLevel,
    StockMovement,
    Transfer,
    TransferLine,
    OutboxEvent,
    Touchpoint,
    Customer,
    Identity,
    CustomerMerge,
    IdempotencyKey,
]


def snapshot() -> dict:
    """Every row of every table an orders API call writes, as plain values."""
    return {
        model._meta.label: list(model._base_manager.order_by("pk").values())
        for model in SNAPSHOT_MODELS
    }
