"""Fixtures of the store-page tests: two stores (A: Paris, B: Lyon) and other stores around,
staff of each, a merchandiser with no store, and helpers that set up orders, transfers, counts
and customers the way the services would leave them."""

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.identifiers import normalize
from customers.models import Customer, Identity
from inventory.services import stock_receive, transfer_request, transfer_ship
from omni.models import ChannelKind
from orders.models import FulfilmentMethod, Order, StaffAssignment
from tests.factories import ChannelFactory, LocationFactory, StockRuleFactory, VariantFactory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "store-pass-123"


@pytest.fixture
def channels(db):
    """Sales and messaging channels (get_or_create: transactional tests flush the seeded ones)."""
    specs = [
        ("store", "Stores (POS)", ChannelKind.STORE_POS),
        ("web", "Web shop", ChannelKind.WEB),
        ("marketplace", "Marketplace", ChannelKind.MARKETPLACE),
        ("email", "Email", ChannelKind.EMAIL),
        ("sms", "SMS", ChannelKind.SMS),
    ]
    return {
        code: ChannelFactory(code=code, name=name, kind=kind, currency="EUR")
        for code, name, kind in specs
    }


@pytest.fixture
def stores(channels):
    """Store A (Paris) and B (Lyon), two more stores and a warehouse, all feeding the web."""
    made = {
        "a": LocationFactory(
            code="paris-01", name="Paris Rivoli", latitude=48.8606, longitude=2.3376
        ),
        "b": LocationFactory(
            code="lyon-01", name="Lyon Part-Dieu", latitude=45.7606, longitude=4.8593
        ),
        "versailles": LocationFactory(
            code="versailles-01", name="Versailles", latitude=48.8049, longitude=2.1204
        ),
        "lille": LocationFactory(code="lille-01", name="Lille", latitude=50.6292, longitude=3.0573),
        "wh": LocationFactory(
            code="wh-01", name="Central warehouse", kind="warehouse", latitude=48.9, longitude=2.4
        ),
    }
    for priority, location in enumerate(made.values(), 1):
        StockRuleFactory(channel=channels["web"], location=location, priority=priority)
    return made


def _user(django_user_model, username, *, stores=(), **fields):
    user = django_user_model.objects.create_user(
        username=username, password=PASSWORD, first_name=username.title(), **fields
    )
    for location in stores:
        StaffAssignment.objects.create(user=user, location=location)
    return user


@pytest.fixture
def staff_a(django_user_model, stores):
    return _user(django_user_model, "anna", stores=[stores["a"]])


@pytest.fixture
def staff_b(django_user_model, stores):
    return _user(django_user_model, "bruno", stores=[stores["b"]])


@pytest.fixture
def merchandiser(django_user_model, stores):
    """Admin staff with no store: the store pages refuse her."""
    return _user(django_user_model, "mona", is_staff=True, is_superuser=True)


def _client(user=None):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def client_a(staff_a):
    return _client(staff_a)


@pytest.fixture
def client_b(staff_b):
    return _client(staff_b)


@pytest.fixture
def client_merch(merchandiser):
    return _client(merchandiser)


@pytest.fixture
def anon(db):
    return _client()


def url(name, location, *args):
    return reverse(f"store:{name}", args=[location.code, *args])


def sign_in_url(next_url):
    from urllib.parse import quote

    return f"{reverse('store:login')}?next={quote(next_url)}"


@pytest.fixture
def variant(db):
    return VariantFactory(product__title="Linen Shirt", sku="LINEN-M", gtin="4006381333931")


@pytest.fixture
def make_order(channels):
    """A pickup order at ``store`` in ``status`` (rows as the order services leave them)."""
    counter = iter(range(1, 10_000))

    def _make(store, status, *, placed_at=None, ready_at=None, customer=None, **fields):
        n = next(counter)
        fields.setdefault("fulfilment_method", FulfilmentMethod.PICKUP)
        return Order.objects.create(
            number=f"O-TEST-{n:04d}",
            channel=channels["web"],
            customer=customer,
            status=status,
            store=store,
            pickup_code=f"{n:06d}",
            public_token=secrets.token_hex(16),
            currency="EUR",
            subtotal=Decimal("20.00"),
            total=Decimal("20.00"),
            placed_at=placed_at or timezone.now() - timedelta(hours=n),
            ready_at=ready_at,
            contact_name=f"Customer {n}",
            source="test",
            **fields,
        )

    return _make


@pytest.fixture
def shipped_transfer(stores, variant):
    """Transfer of 10 LINEN-M and 4 of a second item from Versailles to store A, shipped."""
    other = VariantFactory(product__title="Wool Scarf", sku="SCARF-01")
    source = stores["versailles"]
    stock_receive(location=source, variant=variant, quantity=20)
    stock_receive(location=source, variant=other, quantity=10)
    transfer = transfer_request(
        from_location=source,
        to_location=stores["a"],
        lines=[{"sku": variant.sku, "quantity": 10}, {"sku": other.sku, "quantity": 4}],
    )
    return transfer_ship(transfer=transfer)


@pytest.fixture
def make_customer(db):
    """``make_customer(("email", "a@x.io"), first_name="Ana")``: a customer with identities."""

    def _make(*identities, **fields):
        customer = Customer.objects.create(created_at=T0, **fields)
        for kind, value in identities:
            Identity.objects.create(
                customer=customer,
                kind=kind,
                value=normalize(kind, value),
                source="setup",
                first_seen_at=T0,
            )
        return customer

    return _make
