"""The demo orders of ``load_demo``: orders from every sales channel, the Paris pickup queue
(to prepare, ready, overdue, waiting for a transfer), till sales, a return, Camille's open web
cart and a store staff member assigned to Paris; loading again adds nothing. And
``ensure_store_staff``, which gives ``make run`` the store pages' credentials."""

import io
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from customers.models import Customer
from inventory.models import Transfer
from orders.demo import MARKETPLACE_REFERENCE, _staff_user
from orders.models import Cart, Order, OrderStatusChange, Return, StaffAssignment
from orders.selectors import pickup_counts_for_location, pickup_queue_for_location
from tests.factories import LocationFactory
from tests.inventory.test_demo import ledger_mismatches

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PARIS = "paris-rivoli"


def load(*args):
    out = io.StringIO()
    call_command("load_demo", "--products", "40", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def demo(db):
    return load()


def check_orders_come_from_every_sales_channel(demo):
    orders = Counter(Order.objects.values_list("channel__code", "fulfilment_method", "status"))

    assert orders == {
        ("web", "ship", "shipped"): 1,
        ("web", "ship", "placed"): 1,
        ("marketplace", "ship", "placed"): 1,
        ("social-shop", "ship", "shipped"): 1,
        ("web", "pickup", "placed"): 2,
        ("app", "pickup", "placed"): 1,
        ("web", "pickup", "ready"): 2,
        ("app", "pickup", "ready"): 1,
        ("web", "pickup", "awaiting_transfer"): 1,
        ("app", "pickup", "collected"): 1,
        ("app", "pickup", "cancelled"): 1,
        ("store", "in_store", "completed"): 4,
    }
    marketplace = Order.objects.get(channel__code="marketplace")
    assert (marketplace.external_reference, marketplace.customer) == (MARKETPLACE_REFERENCE, None)
    sales = Order.objects.filter(channel__code="store")
    assert sorted(sales.values_list("external_reference", "store__code")) == [
        ("LYO-D-0001", "lyon-part-dieu"),
        ("MRS-D-0001", "marseille-vieux-port"),
        ("PAR-D-0001", PARIS),
        ("PAR-D-0002", PARIS),
    ]
    assert sales.filter(customer__isnull=False).count() == 2
    assert Order.objects.exclude(channel__code="marketplace").filter(customer=None).count() == 2
    assert "Demo orders loaded" in demo
    assert "  orders: 17" in demo
    assert ledger_mismatches() == []


def check_the_paris_pickup_queue_waits_in_every_state():
    paris = Order.objects.filter(store__code=PARIS).first().store
    queue = pickup_queue_for_location(paris)
    overdue = queue.overdue[0]
    awaiting = queue.awaiting_transfer[0]

    assert pickup_counts_for_location(paris) == {
        "to_prepare": 3,
        "awaiting_transfer": 1,
        "ready": 2,
        "overdue": 1,
        "needs_attention": 0,
    }
    # The overdue pickup was made ready five days ago (its times moved back, history too).
    assert (
        timezone.now() - timedelta(days=5, minutes=5)
        < overdue.ready_at
        < timezone.now() - timedelta(days=5)
    )
    assert overdue.placed_at == overdue.ready_at - timedelta(hours=2)
    assert list(OrderStatusChange.objects.filter(order=overdue).values_list("to_status", "at")) == [
        ("placed", overdue.placed_at),
        ("ready", overdue.ready_at),
    ]
    transfer = Transfer.objects.get(reference=awaiting.number)
    assert (transfer.status, transfer.from_location.code, transfer.to_location.code) == (
        "requested",
        "wh-orleans",
        PARIS,
    )
    assert awaiting.expected_ready_at is not None
    # The store staff marked the pickups ready and handed one over.
    staff = get_user_model().objects.get(username="store")
    assert set(
        OrderStatusChange.objects.filter(to_status__in=["ready", "collected"]).values_list(
            "actor__username", "source"
        )
    ) == {("store", f"user:{staff.pk}")}


def check_a_web_order_came_back_at_the_paris_counter():
    record = Return.objects.get()
    line = record.lines.get()
    order = record.order

    assert (record.location.code, order.channel.code, order.status) == (PARIS, "web", "shipped")
    assert (line.quantity, line.disposition, line.order_line.line_number) == (1, "restock", 1)
    assert record.refund_amount == order.refunded_total == line.order_line.unit_price
    assert record.actor.username == "store"


def check_camille_left_a_web_cart_open():
    camille = Customer.objects.get(
        identities__kind="email", identities__value="camille.laurent@example.com"
    )
    cart = Cart.objects.get(customer=camille)

    assert (cart.customer, cart.channel.code, cart.status) == (camille, "web", "open")
    assert sorted(cart.lines.values_list("quantity", flat=True)) == [1, 2]
    # Only a cart: her purchases stay those of the customers demo.
    assert not Order.objects.filter(customer=camille).exists()


def check_a_store_staff_member_works_in_paris():
    staff = get_user_model().objects.get(username="store")

    assert (staff.is_staff, staff.is_superuser, staff.has_usable_password()) == (
        False,
        False,
        False,
    )
    assert list(StaffAssignment.objects.values_list("user__username", "location__code")) == [
        ("store", PARIS)
    ]


def test_demo_orders(demo):
    """One load (a few seconds), every part of the scenario checked on it."""
    check_orders_come_from_every_sales_channel(demo)
    check_the_paris_pickup_queue_waits_in_every_state()
    check_a_web_order_came_back_at_the_paris_counter()
    check_camille_left_a_web_cart_open()
    check_a_store_staff_member_works_in_paris()
    check_loading_again_adds_nothing()


def check_loading_again_adds_nothing():
    before = {
        "orders": Order.objects.count(),
        "carts": Cart.objects.count(),
        "returns": Return.objects.count(),
        "transfers": Transfer.objects.count(),
        "assignments": StaffAssignment.objects.count(),
        "users": get_user_model().objects.count(),
    }

    skipped = load()
    forced = load("--force")

    assert skipped.strip() == "Demo data already loaded; skipping."
    assert "Demo orders: skipped" in forced
    assert before == {
        "orders": 17,
        "carts": 7,  # Camille's, and six left two hours ago by the campaigns demo
        "returns": 1,
        "transfers": 2,
        "assignments": 1,
        "users": 1,
    }
    assert {
        "orders": Order.objects.count(),
        "carts": Cart.objects.count(),
        "returns": Return.objects.count(),
        "transfers": Transfer.objects.count(),
        "assignments": StaffAssignment.objects.count(),
        "users": get_user_model().objects.count(),
    } == before


# --- ensure_store_staff -----------------------------------------------------------------------


def ensure_store_staff():
    out = io.StringIO()
    call_command("ensure_store_staff", stdout=out)
    return out.getvalue().strip()


@pytest.fixture
def var_dir(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("OMNI_STORE_USERNAME", raising=False)
    monkeypatch.delenv("OMNI_STORE_PASSWORD", raising=False)
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_ensure_store_staff_prints_credentials_for_the_store_pages(var_dir, monkeypatch):
    _staff_user(LocationFactory(code=PARIS))  # what the demo creates: no password yet
    LocationFactory(code="another-store")
    first = ensure_store_staff()
    password = (var_dir / "store-credentials.txt").read_text().strip().partition(":")[2]
    second = ensure_store_staff()

    staff = get_user_model().objects.get(username="store")
    assert first == second == f"Store staff user: store  password: {password}  (works at {PARIS})"
    assert len(password) >= 16
    assert staff.check_password(password)
    assert staff.is_staff is False
    assert (var_dir / "store-credentials.txt").stat().st_mode & 0o777 == 0o600
    assert StaffAssignment.objects.filter(user=staff).count() == 1

    # Another user named by the environment, with its password: created, assigned, not saved.
    monkeypatch.setenv("OMNI_STORE_USERNAME", "clerk")
    monkeypatch.setenv("OMNI_STORE_PASSWORD", "s3cret-counter")

    output = ensure_store_staff()

    clerk = get_user_model().objects.get(username="clerk")
    assert output == f"Store staff user: clerk  password: s3cret-counter  (works at {PARIS})"
    assert clerk.check_password("s3cret-counter")
    assert (clerk.is_staff, clerk.is_superuser) == (False, False)
    assert list(clerk.store_assignments.values_list("location__code", flat=True)) == [PARIS]
    # The environment's password is not written down; the generated one stays as it was.
    assert (var_dir / "store-credentials.txt").read_text() == f"store:{password}\n"


def test_ensure_store_staff_without_stores(var_dir):
    assert ensure_store_staff().endswith("(no store to work in yet)")
    assert get_user_model().objects.get(username="store").is_staff is False


# --- The embedded profile ---------------------------------------------------------------------


def test_demo_orders_load_on_sqlite(tmp_path):
    """``make run`` loads the demo on SQLite: the orders step runs there too (the services'
    row locks are no-ops on SQLite), and quickly."""
    db = tmp_path / "omni.sqlite3"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT", "DATABASE_URL"))
    }
    env.update(DEBUG="true", DATABASE_URL=f"sqlite:///{db}", CELERY_BROKER_URL="filesystem://")

    def manage(*args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage("migrate", "--noinput")
    output = manage("load_demo", "--products", "40")

    assert "Demo orders loaded" in output
    with sqlite3.connect(db) as conn:
        statuses = dict(
            conn.execute(
                "SELECT status, COUNT(*) FROM orders_order o JOIN inventory_location l "
                "ON l.id = o.store_id WHERE l.code = ? AND o.fulfilment_method = 'pickup' "
                "GROUP BY status",
                [PARIS],
            ).fetchall()
        )
        orders = conn.execute("SELECT COUNT(*) FROM orders_order").fetchone()[0]
    assert orders == 17
    assert statuses == {"placed": 3, "awaiting_transfer": 1, "ready": 3, "collected": 1}
