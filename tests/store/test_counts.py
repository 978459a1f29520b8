"""Stock counts at the store: the requests, the entry of a count, its submission."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import CountStatus, StockCount, StockCountLine
from inventory.services import stock_count_request, stock_count_submit
from tests.factories import VariantFactory
from tests.store.conftest import url

pytestmark = pytest.mark.django_db


@pytest.fixture
def request_a(stores):
    return stock_count_request(location=stores["a"], reason="Check the shirts")


@pytest.fixture
def scarf(db):
    return VariantFactory(product__title="Wool Scarf", sku="SCARF-01", gtin="4000000000017")


def _counts():
    return list(StockCount.objects.values_list("pk", "status", "counted_at").order_by("pk")), list(
        StockCountLine.objects.values_list("count_id", "variant__sku", "counted_quantity")
    )


def _messages(response):
    return [str(m) for m in response.context["messages"]]


def test_list_shows_the_request_and_recent_counts(
    client_a, stores, request_a, variant, django_assert_max_num_queries, staff_a
):
    for _ in range(3):
        stock_count_submit(
            location=stores["b"],
            counted_at=timezone.now(),
            lines=[{"sku": variant.sku, "quantity": 1}],
        )
    done = stock_count_submit(
        location=stores["lille"],
        counted_at=timezone.now(),
        lines=[{"sku": "LINEN-M", "quantity": 2}],
    )
    with django_assert_max_num_queries(9):
        response = client_a.get(url("counts", stores["a"]))
    assert response.status_code == 200
    assert [c.pk for c in response.context["requested"]] == [request_a.pk]
    assert response.context["recent"] == []
    assert b"Check the shirts" in response.content
    assert f'href="{url("count", stores["a"], request_a.pk)}"'.encode() in response.content
    assert str(done.pk).encode() not in response.content.split(b"Recent counts")[1]


def test_enter_a_requested_count(client_a, stores, request_a, variant, scarf, staff_a):
    address = url("count", stores["a"], request_a.pk)
    page = client_a.get(address)
    assert page.status_code == 200
    assert b'name="add-code"' in page.content
    # Scan the shirt twice, the scarf by its barcode with a quantity.
    response = client_a.post(address, {"add-code": "linen-m", "add-quantity": "1"}, follow=True)
    assert response.redirect_chain == [(address, 302)]
    assert _messages(response) == ["LINEN-M (Linen Shirt): 1 counted."]
    response = client_a.post(address, {"add-code": "LINEN-M", "add-quantity": "1"}, follow=True)
    assert _messages(response) == ["LINEN-M (Linen Shirt): 2 counted."]
    response = client_a.post(
        address, {"add-code": "4000000000017", "add-quantity": "5"}, follow=True
    )
    assert _messages(response) == ["SCARF-01 (Wool Scarf): 5 counted."]
    assert response.context["submit_form"].skus == ["LINEN-M", "SCARF-01"]
    # Nothing is written until the count is submitted.
    assert StockCount.objects.get().status == CountStatus.REQUESTED
    assert StockCountLine.objects.count() == 0
    # Correct a quantity and submit.
    response = client_a.post(
        address, {"qty_LINEN-M": "3", "qty_SCARF-01": "5", "submit": "1"}, follow=True
    )
    assert response.redirect_chain == [(url("counts", stores["a"]), 302)]
    assert _messages(response) == [
        f"Count #{request_a.pk} submitted: 2 items, 8 units. It will be compared with the "
        "stock ledger at the next reconciliation."
    ]
    count = StockCount.objects.get()
    assert count.pk == request_a.pk
    assert count.status == CountStatus.SUBMITTED
    assert count.submitted_by == staff_a
    assert count.source == "store:paris-01"
    assert sorted(count.lines.values_list("variant__sku", "counted_quantity")) == [
        ("LINEN-M", 3),
        ("SCARF-01", 5),
    ]
    assert f"store.count.{stores['a'].pk}" not in client_a.session
    # The submitted count is now read-only.
    page = client_a.get(address)
    assert page.status_code == 200
    assert b'name="add-code"' not in page.content
    assert [line.counted_quantity for line in page.context["lines"]] == [3, 5]


def test_a_count_nobody_asked_for(client_a, stores, variant):
    address = url("count_new", stores["a"])
    client_a.post(address, {"add-code": "LINEN-M", "add-quantity": "0"})
    response = client_a.post(address, {"qty_LINEN-M": "0", "submit": "1"}, follow=True)
    assert response.redirect_chain == [(url("counts", stores["a"]), 302)]
    count = StockCount.objects.get()
    assert (count.location, count.status) == (stores["a"], CountStatus.SUBMITTED)
    assert list(count.lines.values_list("variant__sku", "counted_quantity")) == [("LINEN-M", 0)]
    assert [c.pk for c in response.context["recent"]] == [count.pk]


def test_remove_and_save_lines(client_a, stores, request_a, variant, scarf):
    address = url("count", stores["a"], request_a.pk)
    client_a.post(address, {"add-code": "LINEN-M", "add-quantity": "2"})
    client_a.post(address, {"add-code": "SCARF-01", "add-quantity": "1"})
    response = client_a.post(address, {"qty_LINEN-M": "7", "qty_SCARF-01": "1", "save": "1"})
    assert response.status_code == 302
    key = f"store.count.{stores['a'].pk}"
    assert client_a.session[key] == [["LINEN-M", 7], ["SCARF-01", 1]]
    response = client_a.post(
        address, {"qty_LINEN-M": "6", "qty_SCARF-01": "1", "remove": "SCARF-01"}, follow=True
    )
    assert _messages(response)[-1] == "SCARF-01 removed from the count."
    assert client_a.session[key] == [["LINEN-M", 6]]
    assert _counts()[1] == []


@pytest.mark.parametrize(
    ("data", "field", "error"),
    [
        (
            {"add-code": "NOPE-1", "add-quantity": "1"},
            "code",
            "No item with SKU or barcode NOPE-1.",
        ),
        ({"add-code": "LINEN-M", "add-quantity": "-2"}, "quantity", "0 or more."),
        ({"add-code": "LINEN-M", "add-quantity": "two"}, "quantity", "Enter a whole number."),
        ({"add-code": "", "add-quantity": "1"}, "code", "This field is required."),
    ],
)
def test_bad_lines_are_refused(client_a, stores, request_a, variant, data, field, error):
    address = url("count", stores["a"], request_a.pk)
    before = _counts()
    response = client_a.post(address, data)
    assert response.status_code == 400
    assert response.context["add_form"].errors[field] == [error]
    assert error in response.content.decode()
    assert _counts() == before
    assert f"store.count.{stores['a'].pk}" not in client_a.session


def test_submit_refused_by_the_service_changes_nothing(client_a, stores, request_a, variant):
    address = url("count", stores["a"], request_a.pk)
    before = _counts()
    # No line at all.
    response = client_a.post(address, {"submit": "1"})
    assert response.status_code == 400
    assert response.context["submit_form"].non_field_errors() == [
        "A count needs at least one line."
    ]
    # A count time in the future.
    client_a.post(address, {"add-code": "LINEN-M", "add-quantity": "1"})
    future = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = client_a.post(address, {"qty_LINEN-M": "1", "counted_at": future, "submit": "1"})
    assert response.status_code == 400
    form = response.context["submit_form"]
    assert form.errors["counted_at"] == ["Lies in the future."]
    assert "When was it counted? Lies in the future." in form.non_field_errors()
    # A quantity that is not a number.
    response = client_a.post(address, {"qty_LINEN-M": "lots", "submit": "1"})
    assert response.status_code == 400
    assert response.context["submit_form"].errors["qty_LINEN-M"] == ["Enter a whole number."]
    # A negative quantity: the service's rule, shown on its line.
    response = client_a.post(address, {"qty_LINEN-M": "-1", "submit": "1"})
    assert response.status_code == 400
    form = response.context["submit_form"]
    assert form.errors["qty_LINEN-M"] == ["A whole number, 0 or more."]
    assert form.non_field_errors() == ["1 count lines are invalid; nothing was recorded."]
    assert _counts() == before
    assert StockCount.objects.get().status == CountStatus.REQUESTED


def test_count_time_is_read_in_the_store_time_zone(client_a, stores, request_a, variant):
    address = url("count", stores["a"], request_a.pk)
    client_a.post(address, {"add-code": "LINEN-M", "add-quantity": "1"})
    client_a.post(address, {"qty_LINEN-M": "1", "counted_at": "2026-03-02T10:30", "submit": "1"})
    counted_at = StockCount.objects.get().counted_at
    assert counted_at.isoformat() == "2026-03-02T09:30:00+00:00"  # Paris is UTC+1 in March


def test_a_submitted_count_cannot_be_changed(client_a, stores, variant):
    count = stock_count_submit(
        location=stores["a"], counted_at=timezone.now(), lines=[{"sku": "LINEN-M", "quantity": 2}]
    )
    before = _counts()
    response = client_a.post(
        url("count", stores["a"], count.pk),
        {"add-code": "LINEN-M", "add-quantity": "1"},
        follow=True,
    )
    assert _messages(response) == [
        f"Count #{count.pk} is submitted (waiting for reconciliation); nothing was changed."
    ]
    assert _counts() == before


def test_unknown_count_is_not_found(client_a, stores):
    assert client_a.get(url("count", stores["a"], 999999)).status_code == 404
