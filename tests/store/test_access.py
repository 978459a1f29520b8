"""Sign-in, the current store, the store switcher and who may open which store page."""

import pytest
from django.urls import reverse

from customers.models import Consent, ConversationMessage
from inventory.models import StockCount, Transfer, TransferStatus
from inventory.services import stock_count_request
from orders.models import StaffAssignment
from tests.store.conftest import PASSWORD, sign_in_url, url

pytestmark = pytest.mark.django_db


def test_sign_in_page_renders(anon):
    response = anon.get(reverse("store:login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


def test_sign_in_goes_to_the_dashboard_of_the_only_store(anon, staff_a, stores):
    response = anon.post(reverse("store:login"), {"username": "anna", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("store:home")
    response = anon.get(reverse("store:home"))
    assert response.status_code == 302
    assert response["Location"] == url("dashboard", stores["a"])


def test_sign_in_with_a_wrong_password_says_so(anon, staff_a):
    response = anon.post(reverse("store:login"), {"username": "anna", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in anon.session


def test_sign_in_honours_next(anon, staff_a, stores):
    target = url("stock", stores["a"])
    response = anon.post(
        reverse("store:login"), {"username": "anna", "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == target


def test_sign_out(client_a):
    response = client_a.post(reverse("store:logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("store:login")
    assert "_auth_user_id" not in client_a.session


def test_home_sends_anonymous_to_sign_in(anon):
    response = anon.get(reverse("store:home"))
    assert response.status_code == 302
    assert response["Location"] == sign_in_url(reverse("store:home"))


def test_home_refuses_a_user_without_store(client_merch):
    response = client_merch.get(reverse("store:home"))
    assert response.status_code == 403
    assert b"Your account is not assigned to any store." in response.content


def test_home_with_several_stores_asks_then_remembers(client_a, staff_a, stores):
    StaffAssignment.objects.create(user=staff_a, location=stores["versailles"])
    response = client_a.get(reverse("store:home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("store:switch")
    page = client_a.get(reverse("store:switch"))
    assert page.status_code == 200
    assert b"Paris Rivoli" in page.content and b"Versailles" in page.content
    response = client_a.post(reverse("store:switch"), {"location": "versailles-01"})
    assert response.status_code == 302
    assert response["Location"] == url("dashboard", stores["versailles"])
    assert client_a.session["store.current"] == "versailles-01"
    response = client_a.get(reverse("store:home"))
    assert response["Location"] == url("dashboard", stores["versailles"])
    # Opening another store's page makes it the current one.
    client_a.get(url("stock", stores["a"]))
    assert client_a.get(reverse("store:home"))["Location"] == url("dashboard", stores["a"])


def test_switch_to_a_store_not_assigned_is_refused(client_a, stores):
    client_a.get(url("dashboard", stores["a"]))
    response = client_a.post(reverse("store:switch"), {"location": "lyon-01"})
    assert response.status_code == 403
    assert b"You are not assigned to this store." in response.content
    assert client_a.session["store.current"] == "paris-01"


def test_switch_refuses_anonymous_and_storeless(anon, client_merch):
    response = anon.post(reverse("store:switch"), {"location": "paris-01"})
    assert response.status_code == 302
    assert response["Location"] == sign_in_url(reverse("store:switch"))
    assert client_merch.post(reverse("store:switch"), {"location": "paris-01"}).status_code == 403


def test_the_switcher_shows_only_with_several_stores(client_a, staff_a, stores):
    page = client_a.get(url("dashboard", stores["a"]))
    assert b'id="switch-store"' not in page.content
    StaffAssignment.objects.create(user=staff_a, location=stores["lille"])
    page = client_a.get(url("dashboard", stores["a"]))
    assert b'id="switch-store"' in page.content
    assert b'<option value="lille-01">Lille</option>' in page.content
    assert b'<option value="lyon-01"' not in page.content


def test_unknown_store_code_is_refused_like_another_store(client_a):
    response = client_a.get("/store/no-such-store/")
    assert response.status_code == 403


# --- The permission matrix: every page of store A, as staff of A, of B, a merchandiser and an
# --- anonymous visitor. Refused calls change nothing.


@pytest.fixture
def store_a_pages(stores, shipped_transfer, make_customer, channels):
    count = stock_count_request(location=stores["a"], reason="Check the shirts")
    customer = make_customer(("email", "ana@example.com"), first_name="Ana")
    a = stores["a"]
    return [
        ("get", url("dashboard", a), {}),
        ("get", url("stock", a) + "?q=LINEN-M", {}),
        ("get", url("transfers", a), {}),
        ("get", url("transfer", a, shipped_transfer.number), {}),
        ("post", url("transfer", a, shipped_transfer.number), {"qty_LINEN-M": "10"}),
        ("get", url("counts", a), {}),
        ("get", url("count_new", a), {}),
        ("get", url("count", a, count.pk), {}),
        ("post", url("count", a, count.pk), {"add-code": "LINEN-M", "add-quantity": "3"}),
        ("post", url("count", a, count.pk), {"submit": "1"}),
        ("get", url("customers", a) + "?q=ana@example.com", {}),
        ("get", url("customer", a, customer.pk), {}),
        ("get", url("customer_timeline", a, customer.pk), {}),
        ("post", url("customer_consent", a, customer.pk), {"channel": "sms", "status": "opted_in"}),
        ("post", url("customer_note", a, customer.pk), {"channel": "store", "body": "Hello"}),
    ]


def _state():
    return (
        list(Transfer.objects.values_list("number", "status").order_by("pk")),
        list(StockCount.objects.values_list("pk", "status").order_by("pk")),
        Consent.objects.count(),
        ConversationMessage.objects.count(),
    )


def test_staff_of_the_store_open_every_page(client_a, store_a_pages):
    for address in [address for method, address, _ in store_a_pages if method == "get"]:
        assert client_a.get(address).status_code == 200, address


@pytest.mark.parametrize("who", ["client_b", "client_merch"])
def test_staff_of_another_store_and_merchandisers_are_refused(request, who, store_a_pages):
    client = request.getfixturevalue(who)
    before = _state()
    for method, address, data in store_a_pages:
        response = getattr(client, method)(address, data)
        assert response.status_code == 403, (method, address)
        assert b"not assigned" in response.content
    assert _state() == before
    assert Transfer.objects.get().status == TransferStatus.SHIPPED


def test_anonymous_visitors_go_to_sign_in(anon, store_a_pages):
    before = _state()
    for method, address, data in store_a_pages:
        response = getattr(anon, method)(address, data)
        assert response.status_code == 302, (method, address)
        assert response["Location"] == sign_in_url(address), address
    assert _state() == before


def test_objects_of_another_store_are_refused_from_ones_own_store(
    client_b, stores, shipped_transfer
):
    """Staff of B, on B's pages, asking for A's transfer or count: 403, nothing changes."""
    count = stock_count_request(location=stores["a"], reason="Check")
    b = stores["b"]
    before = _state()
    for method, address, data in [
        ("get", url("transfer", b, shipped_transfer.number), {}),
        ("post", url("transfer", b, shipped_transfer.number), {"qty_LINEN-M": "10"}),
        ("get", url("count", b, count.pk), {}),
        ("post", url("count", b, count.pk), {"add-code": "LINEN-M", "add-quantity": "1"}),
        ("post", url("count", b, count.pk), {"submit": "1"}),
    ]:
        response = getattr(client_b, method)(address, data)
        assert response.status_code == 403, (method, address)
    assert _state() == before
    assert not [key for key, _ in client_b.session.items() if key.startswith("store.count.")]


def test_forms_carry_csrf_tokens_and_csrf_is_enforced(staff_a, stores, shipped_transfer):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_a)
    page = client.get(url("transfer", stores["a"], shipped_transfer.number))
    assert b"csrfmiddlewaretoken" in page.content
    response = client.post(url("transfer", stores["a"], shipped_transfer.number), {})
    assert response.status_code == 403
    assert Transfer.objects.get().status == TransferStatus.SHIPPED
