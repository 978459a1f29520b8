"""Tracking pages: tracked links count a click on the message and the customer's timeline and
redirect; unsubscribe pages ask on GET and opt out on POST (the page's button and RFC 8058
one-click); in-store QR signs count a scan per day and store and land on the web shop."""

from datetime import UTC, date, datetime

import pytest
from django.core import signing
from django.db import OperationalError
from django.test import Client
from django.urls import reverse

import campaigns.tracking as tracking_views
from campaigns.models import Message, SignageScan
from campaigns.rendering import (
    link_token_load,
    tracked_url,
    unsubscribe_token_load,
    unsubscribe_url,
)
from campaigns.services.tracking import (
    message_click_record,
    signage_scan_record,
    signage_url,
    unsubscribe_record,
)
from customers.models import Consent, ConsentState, Touchpoint
from customers.services import customer_merge
from tests.campaigns.test_rendering import (
    SHOP,
    SITE,
    build_shop,
    build_zoe,
    enrol,
    message_for,
    use_site,
)
from tests.factories import LocationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(settings):
    use_site(settings)


@pytest.fixture
def shop(channels, site):
    """The Paris store and items A to E of the rendering tests."""
    return build_shop(channels)


@pytest.fixture
def zoe(shop, make_customer):
    """Zoé, opted in everywhere, with an open cart and a pickup order."""
    return build_zoe(shop, make_customer)


@pytest.fixture
def message(make_campaign, shop, zoe):
    """An email of a cart reminder to Zoé."""
    campaign = make_campaign(name="Cart reminder")
    enrolment = enrol(campaign, zoe, key=f"cart:{zoe.cart.pk}", cart=zoe.cart)
    return message_for(enrolment, campaign.steps.get(), shop.channels.email)


def path_of(url: str) -> str:
    assert url.startswith(SITE)
    return url[len(SITE) :]


def clicks(customer):
    return list(
        Touchpoint.objects.filter(customer=customer, kind="link_clicked")
        .order_by("event_id")
        .values_list("event_id", "channel__code", "source", "properties")
    )


# --- Tracked links -------------------------------------------------------------------------


def test_a_tracked_link_signs_its_message_and_address(site):
    url = tracked_url(42, f"{SHOP}/products/SKU-A?colour=red")
    assert url.startswith(f"{SITE}/t/")
    token = url.rsplit("/", 1)[1]
    assert reverse("campaigns:click", args=[token]) == f"/t/{token}"
    assert link_token_load(token) == (42, f"{SHOP}/products/SKU-A?colour=red")
    # Any change breaks the signature; an unsubscribe token is not a link token.
    assert link_token_load(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert link_token_load(token.replace(":", ":x", 1)) is None
    unsubscribe_token = unsubscribe_url(1, 2).rsplit("/", 1)[1]
    assert link_token_load(unsubscribe_token) is None
    assert unsubscribe_token_load(unsubscribe_token) == (1, 2)
    assert unsubscribe_token_load(token) is None
    # Even signed with the right key, only web addresses are followed.
    forged = signing.Signer(salt="campaigns.link").sign_object([1, "javascript:alert(1)"])
    assert link_token_load(forged) is None


def test_a_click_is_counted_on_the_message_and_the_timeline(client, message, shop, zoe):
    target = f"{SHOP}/cart/{zoe.cart.token}"
    link = path_of(tracked_url(message.pk, target))

    response = client.get(link, secure=True)
    assert response.status_code == 302
    assert response["Location"] == target
    message.refresh_from_db()
    assert message.clicks == 1
    first_click = message.clicked_at
    assert first_click is not None
    properties = {
        "url": target,
        "message": message.pk,
        "campaign": message.campaign_id,
        "step": message.step_id,
    }
    assert clicks(zoe) == [(f"click:{message.pk}:1", "email", "omni:campaigns", properties)]

    # Every click counts and shows; the first click's time stays.
    assert client.get(link, secure=True)["Location"] == target
    message.refresh_from_db()
    assert (message.clicks, message.clicked_at) == (2, first_click)
    assert [event for event, *_ in clicks(zoe)] == [
        f"click:{message.pk}:1",
        f"click:{message.pk}:2",
    ]


def test_the_click_service_numbers_clicks_and_keeps_the_first_time(message, zoe):
    first = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    later = datetime(2025, 5, 2, 10, 0, tzinfo=UTC)
    assert message_click_record(message_id=message.pk, url=f"{SHOP}/x", at=first) is True
    assert message_click_record(message_id=message.pk, url=f"{SHOP}/y", at=later) is True
    message.refresh_from_db()
    assert (message.clicks, message.clicked_at) == (2, first)
    times = Touchpoint.objects.filter(customer=zoe, kind="link_clicked").order_by("event_id")
    assert [(t.occurred_at, t.properties["url"]) for t in times] == [
        (first, f"{SHOP}/x"),
        (later, f"{SHOP}/y"),
    ]
    assert message_click_record(message_id=999_999, url=f"{SHOP}/x") is False


def test_a_head_request_or_a_preview_link_redirects_without_counting(client, message, zoe):
    link = path_of(tracked_url(message.pk, SHOP))
    response = client.head(link, secure=True)
    assert (response.status_code, response["Location"]) == (302, SHOP)
    preview_link = path_of(tracked_url(0, f"{SHOP}/products/SKU-A"))
    response = client.get(preview_link, secure=True)
    assert (response.status_code, response["Location"]) == (302, f"{SHOP}/products/SKU-A")
    message.refresh_from_db()
    assert (message.clicks, message.clicked_at) == (0, None)
    assert clicks(zoe) == []


def test_a_tampered_link_is_a_404_page_that_says_so(client, message, zoe):
    link = path_of(tracked_url(message.pk, SHOP))
    for bad in (link[:-2], link + "x", "/t/nonsense", link.replace("/t/", "/t/A")):
        response = client.get(bad, secure=True)
        assert response.status_code == 404, bad
        assert "This link is not valid" in response.content.decode()
    message.refresh_from_db()
    assert message.clicks == 0
    assert clicks(zoe) == []


def test_a_click_that_cannot_be_recorded_still_redirects(client, message, monkeypatch):
    def stuck(**kwargs):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr(tracking_views, "message_click_record", stuck)
    response = client.get(path_of(tracked_url(message.pk, SHOP)), secure=True)
    assert (response.status_code, response["Location"]) == (302, SHOP)


# --- Unsubscribe ---------------------------------------------------------------------------


def consent_of(customer, channel):
    state = ConsentState.objects.select_related("consent").get(customer=customer, channel=channel)
    return state.status, state.consent.source, state.consent.proof


@pytest.fixture
def csrf_client():
    """A browser without cookies, as a mail provider's one-click request is."""
    return Client(enforce_csrf_checks=True)


def test_get_only_asks(client, shop, zoe):
    before = Consent.objects.count()
    response = client.get(path_of(unsubscribe_url(zoe.pk, shop.channels.email.pk)), secure=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Unsubscribe zo•••@example.com from Email?" in body
    assert '<form method="post">' in body
    assert consent_of(zoe, shop.channels.email) == ("opted_in", "test", "")
    assert Consent.objects.count() == before

    sms = client.get(path_of(unsubscribe_url(zoe.pk, shop.channels.sms.pk)), secure=True)
    assert "Unsubscribe •••5678 from SMS?" in sms.content.decode()


def test_post_unsubscribes_once(csrf_client, shop, zoe):
    link = path_of(unsubscribe_url(zoe.pk, shop.channels.email.pk))
    before = Consent.objects.count()
    response = csrf_client.post(link, secure=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert "You are unsubscribed" in body
    assert "We will not send zo•••@example.com any more messages by Email." in body
    assert consent_of(zoe, shop.channels.email) == (
        "opted_out",
        "unsubscribe link",
        "unsubscribe page",
    )
    assert Consent.objects.count() == before + 1
    # The other channels are untouched.
    assert consent_of(zoe, shop.channels.sms) == ("opted_in", "test", "")

    # Repeating is harmless: same page, nothing more recorded.
    again = csrf_client.post(link, secure=True)
    assert again.status_code == 200
    assert "You are unsubscribed" in again.content.decode()
    assert Consent.objects.count() == before + 1
    page = csrf_client.get(link, secure=True).content.decode()
    assert "You are already unsubscribed from Email" in page


def test_one_click_post_unsubscribes(csrf_client, shop, zoe):
    link = path_of(unsubscribe_url(zoe.pk, shop.channels.sms.pk))
    response = csrf_client.post(link, {"List-Unsubscribe": "One-Click"}, secure=True)
    assert response.status_code == 200
    assert consent_of(zoe, shop.channels.sms) == (
        "opted_out",
        "unsubscribe link",
        "one-click (RFC 8058)",
    )
    assert consent_of(zoe, shop.channels.email) == ("opted_in", "test", "")
    timeline = Touchpoint.objects.filter(customer=zoe, kind="consent_changed", channel__code="sms")
    assert [t.properties for t in timeline.order_by("occurred_at", "pk")] == [
        {"status": "opted_in", "source": "test"},
        {"status": "opted_out", "source": "unsubscribe link"},
    ]


def test_a_merged_customer_link_unsubscribes_the_survivor(client, shop, zoe, make_customer):
    twin = make_customer(email="zoe.twin@example.com")
    survivor, _ = customer_merge(customers=[zoe, twin], source="test")
    assert survivor.pk == zoe.pk
    response = client.post(path_of(unsubscribe_url(twin.pk, shop.channels.email.pk)), secure=True)
    assert response.status_code == 200
    assert consent_of(zoe, shop.channels.email)[0] == "opted_out"
    result = unsubscribe_record(customer_id=twin.pk, channel_id=shop.channels.email.pk)
    assert (result.customer.pk, result.changed) == (zoe.pk, False)


def test_bad_unsubscribe_links_are_404(client, shop, zoe):
    before = Consent.objects.count()
    good = path_of(unsubscribe_url(zoe.pk, shop.channels.email.pk))
    for bad in (
        good[:-1],
        "/u/whatever",
        path_of(unsubscribe_url(999_999, shop.channels.email.pk)),
        path_of(unsubscribe_url(zoe.pk, shop.channels.web.pk)),  # not a messaging channel
        path_of(unsubscribe_url(zoe.pk, 999_999)),
    ):
        for method in (client.get, client.post):
            response = method(bad, secure=True)
            assert response.status_code == 404, (bad, method)
            assert "This link is not valid" in response.content.decode()
    assert Consent.objects.count() == before


# --- In-store signage ----------------------------------------------------------------------


def test_a_scan_is_counted_and_lands_on_the_shop(client, shop):
    assert signage_url("paris", "SKU-A") == f"{SITE}/q/paris/SKU-A"
    response = client.get("/q/paris/SKU-A", secure=True)
    assert response.status_code == 302
    assert response["Location"] == (
        f"{SHOP}/products/SKU-A?store=paris&utm_source=instore-qr&utm_medium=qr"
    )
    scan = SignageScan.objects.get()
    assert (scan.store_id, scan.variant_id, scan.scans) == (shop.paris.pk, shop.a.pk, 1)
    # A SKU typed in lower case is the same item; a HEAD counts nothing.
    assert client.get("/q/paris/sku-a", secure=True).status_code == 302
    assert client.head("/q/paris/SKU-A", secure=True).status_code == 302
    assert SignageScan.objects.get().scans == 2


def test_the_scan_upsert_counts_on_the_store_local_day(shop):
    late = datetime(2025, 6, 30, 22, 30, tzinfo=UTC)  # 00:30 on 1 July in Paris
    assert signage_scan_record(store=shop.paris, variant=shop.a, at=late) == 1
    assert signage_scan_record(store=shop.paris, variant=shop.a, at=late) == 2
    assert signage_scan_record(store=shop.paris, variant=shop.b, at=late) == 1
    earlier = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    assert signage_scan_record(store=shop.paris, variant=shop.a, at=earlier) == 1
    assert sorted(SignageScan.objects.values_list("day", "variant__sku", "scans")) == [
        (date(2025, 6, 30), "SKU-A", 1),
        (date(2025, 7, 1), "SKU-A", 2),
        (date(2025, 7, 1), "SKU-B", 1),
    ]


def test_unknown_store_or_item_is_a_404_page(client, shop):
    LocationFactory(code="wh", kind="warehouse")
    for path in ("/q/nowhere/SKU-A", "/q/paris/SKU-ZZZ", "/q/wh/SKU-A"):
        response = client.get(path, secure=True)
        assert response.status_code == 404, path
        assert "This QR code does not lead to a product we know" in response.content.decode()
    assert SignageScan.objects.count() == 0


@pytest.mark.parametrize("path", ["/q/paris/%00", "/q/%00/SKU-A", "/q/paris/SKU-A%00"])
def test_a_nul_character_in_a_sign_address_is_a_404_page(client, shop, path):
    # PostgreSQL text cannot hold NUL: the address is refused before anything is looked up.
    for method in (client.get, client.head):
        response = method(path, secure=True)
        assert response.status_code == 404, (path, method)
        assert response["X-Robots-Tag"] == "noindex"
    assert (
        "This QR code does not lead to a product we know"
        in client.get(path, secure=True).content.decode()
    )
    assert SignageScan.objects.count() == 0


def test_messages_keep_their_counts_in_the_outbox(message):
    # The click columns start empty on a new message (the sender does not touch them).
    assert Message.objects.filter(pk=message.pk, clicks=0, clicked_at__isnull=True).exists()


@pytest.mark.parametrize(
    "salt, obj",
    [
        ("campaigns.link", [12, "https://shop.example.com/products/P1?store=paris"]),
        ("campaigns.link", [7, "https://shop.example.com/" + "a" * 300]),  # compresses
        ("campaigns.unsubscribe", [42, 3]),
    ],
)
def test_fast_signing_is_djangos_signing(salt, obj):
    from django.core import signing

    from campaigns.rendering import sign_object

    token = sign_object(salt, obj)
    assert token == signing.Signer(salt=salt).sign_object(obj, compress=True)
    assert signing.Signer(salt=salt).unsign_object(token) == obj
