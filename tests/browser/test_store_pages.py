"""The store pages in a real browser: sign in, stock lookup across stores, a consent given at
the counter, receiving a transfer, scanning a count."""

import re

import pytest
from playwright.sync_api import expect

from customers.models import Consent
from inventory.models import StockCount, StockLevel, Transfer, TransferStatus
from inventory.services import (
    ReserveLine,
    availability_refresh,
    stock_count_request,
    stock_receive,
    stock_reserve,
)
from tests.store.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_in_lands_on_the_store_dashboard(page, sign_in, staff_a, stores):
    page.goto("/store/")
    expect(page).to_have_url(re.compile(r"/store/sign-in/\?next=/store/$"))
    page.get_by_label("Username").fill("anna")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username")
    sign_in("anna", PASSWORD)
    expect(page).to_have_url(re.compile(r"/store/paris-01/$"))
    expect(page.get_by_test_id("current-store")).to_contain_text("Paris Rivoli")
    expect(page.get_by_test_id("user")).to_have_text("Anna")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/store/sign-in/$"))


def test_stock_lookup_across_stores(page, sign_in, staff_a, stores, variant, channels):
    for key, quantity in [("a", 8), ("versailles", 5), ("lille", 2), ("b", 4)]:
        stock_receive(location=stores[key], variant=variant, quantity=quantity)
    stock_reserve(
        channel=channels["web"],
        reference="O-1",
        lines=[ReserveLine(variant=variant, quantity=3, location=stores["a"])],
    )
    availability_refresh(variant_ids=[variant.pk])
    sign_in("anna", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Stock").click()
    page.get_by_role("searchbox").fill("linen-m")
    page.get_by_role("searchbox").press("Enter")
    item = page.get_by_test_id("item")
    expect(item).to_have_count(1)
    expect(item.get_by_role("heading", name="Linen Shirt")).to_be_visible()
    expect(item.get_by_test_id("here")).to_contain_text("5 available here")
    expect(item.get_by_test_id("here")).to_contain_text("3 reserved")
    rows = item.get_by_test_id("nearest").locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Versailles")
    expect(rows.nth(0)).to_contain_text("17 km")
    expect(rows.nth(1)).to_contain_text("Lille")
    expect(rows.nth(2)).to_contain_text("Lyon Part-Dieu")
    web = item.get_by_test_id("online").locator('tr[data-channel="web"]')
    expect(web).to_contain_text("Web shop")
    expect(web).to_contain_text("16")  # 5 + 5 + 2 + 4 sellable in the stores feeding the web
    # By barcode too.
    page.get_by_role("searchbox").fill("4006381333931")
    page.get_by_role("searchbox").press("Enter")
    expect(page.get_by_test_id("item")).to_have_attribute("data-sku", "LINEN-M")


def test_customer_lookup_and_consent_at_the_counter(
    page, sign_in, staff_a, stores, channels, make_customer
):
    ana = make_customer(
        ("email", "ana.dupont@example.com"),
        ("phone", "+33612345678"),
        first_name="Ana",
        last_name="Dupont",
    )
    sign_in("anna", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Customers").click()
    page.get_by_role("searchbox").fill("06 12 34 56 78")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Ana Dupont").click()
    expect(page.get_by_role("heading", name=re.compile("Ana Dupont"))).to_be_visible()
    sms = page.get_by_test_id("consent").locator('tr[data-channel="sms"]')
    expect(sms).to_contain_text("Not asked")
    sms.get_by_role("button", name="Opts in").click()
    expect(page.locator(".message.success")).to_have_text("Recorded Ana Dupont's opt-in to SMS.")
    sms = page.get_by_test_id("consent").locator('tr[data-channel="sms"]')
    expect(sms).to_contain_text("Opted in")
    expect(sms).to_contain_text("store:paris-01")
    consent = Consent.objects.get()
    assert (consent.customer_id, consent.channel.code, consent.status) == (
        ana.pk,
        "sms",
        "opted_in",
    )
    assert consent.recorded_by == staff_a
    # A note from the counter joins her conversation.
    page.get_by_label("Add what she asked or said at the counter").fill("Asked about sizes.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator(".message.success")).to_have_text("Note added to the conversation.")
    expect(page.locator(".messages-thread")).to_contain_text("Asked about sizes.")


def test_receive_a_transfer(page, sign_in, staff_a, stores, shipped_transfer):
    sign_in("anna", PASSWORD)
    expect(page.get_by_test_id("tile-transfers")).to_contain_text("1")
    page.get_by_role("navigation").get_by_role("link", name="Transfers").click()
    page.get_by_role("link", name="Receive").click()
    expect(page.get_by_role("heading", name=f"Transfer {shipped_transfer.number}")).to_be_visible()
    shirt = page.get_by_label("Received of LINEN-M")
    expect(shirt).to_have_value("10")
    # Bad input first: more than was shipped.
    shirt.fill("12")
    page.get_by_role("button", name=f"Receive {shipped_transfer.number}").click()
    expect(page.get_by_role("alert")).to_contain_text("Check the received quantities.")
    expect(page.locator(".field-error")).to_have_text("At most 10.")
    assert Transfer.objects.get().status == TransferStatus.SHIPPED
    page.get_by_label("Received of LINEN-M").fill("9")
    page.get_by_role("button", name=f"Receive {shipped_transfer.number}").click()
    expect(page.locator(".message.success")).to_have_text(
        f"Transfer {shipped_transfer.number} received: 13 units. 1 short of what was shipped."
    )
    expect(page).to_have_url(re.compile(r"/store/paris-01/transfers/$"))
    assert Transfer.objects.get().status == TransferStatus.RECEIVED
    assert StockLevel.objects.get(location=stores["a"], variant__sku="LINEN-M").on_hand == 9


def test_scan_a_requested_count(page, sign_in, staff_a, stores, variant):
    request = stock_count_request(location=stores["a"], reason="Shirts look short")
    sign_in("anna", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Counts").click()
    page.get_by_role("link", name="Enter this count").click()
    code = page.get_by_label("SKU or barcode")
    for _ in range(2):  # a scanner types the code and Enter
        page.get_by_label("SKU or barcode").fill("4006381333931")
        page.get_by_label("SKU or barcode").press("Enter")
        expect(page.locator(".message.success")).to_be_visible()
    expect(page.locator(".message.success")).to_have_text("LINEN-M (Linen Shirt): 2 counted.")
    expect(code).to_be_focused()
    expect(page.get_by_label("Counted of LINEN-M")).to_have_value("2")
    # Enter in a quantity saves it, without submitting.
    page.get_by_label("Counted of LINEN-M").fill("3")
    page.get_by_label("Counted of LINEN-M").press("Enter")
    expect(page.locator(".message.success")).to_have_text(
        "Quantities saved; the count is not submitted yet."
    )
    assert StockCount.objects.get().status == "requested"
    page.get_by_role("button", name="Submit the count").click()
    expect(page.locator(".message.success")).to_contain_text(
        f"Count #{request.pk} submitted: 1 item, 3 units."
    )
    count = StockCount.objects.get()
    assert count.status == "submitted"
    assert list(count.lines.values_list("variant__sku", "counted_quantity")) == [("LINEN-M", 3)]
