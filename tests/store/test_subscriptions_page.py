"""Back in stock at the counter: from the stock lookup of an item out here, staff subscribe the
customer by email or phone and see a confirmation that says whether she will be told; staff
of another store are refused and nothing changes."""

import re

import pytest
from django.urls import reverse

from campaigns.models import BackInStockSubscription
from customers.models import Consent, ConsentState, Customer, Identity
from customers.services import consent_record
from inventory.services import stock_receive
from tests.factories import ListingFactory
from tests.store.conftest import sign_in_url, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def listed(variant, channels):
    """LINEN-M sold on the web shop and the marketplace (not on the app)."""
    ListingFactory(variant=variant, channel=channels["web"])
    ListingFactory(variant=variant, channel=channels["marketplace"])
    return variant


def page(location, sku="LINEN-M") -> str:
    return url("back_in_stock", location) + f"?sku={sku}"


def _rows():
    return list(
        BackInStockSubscription.objects.order_by("pk").values_list(
            "customer_id", "variant__sku", "channel__code", "source", "notified_at"
        )
    )


def _state():
    return (
        _rows(),
        Customer.objects.count(),
        Identity.objects.count(),
        Consent.objects.count(),
    )


def _subscribe(client, location, contact, channel="web", sku="LINEN-M"):
    return client.post(
        url("back_in_stock", location), {"sku": sku, "contact": contact, "channel": channel}
    )


# --- From the stock lookup --------------------------------------------------------------------


def test_the_stock_page_offers_it_when_the_item_is_out_here(client_a, stores, listed):
    stock_receive(location=stores["versailles"], variant=listed, quantity=4)  # elsewhere only

    html = client_a.get(url("stock", stores["a"]), {"q": "LINEN-M"}).content.decode()

    assert 'data-testid="notify"' in html
    assert f'href="{page(stores["a"])}"' in html
    assert "Notify the customer when it is back" in html


def test_the_stock_page_does_not_offer_it_when_the_item_is_here(client_a, stores, listed):
    stock_receive(location=stores["a"], variant=listed, quantity=2)

    html = client_a.get(url("stock", stores["a"]), {"q": "LINEN-M"}).content.decode()

    assert 'data-testid="notify"' not in html


def test_the_form_offers_the_channels_that_sell_the_item(client_a, stores, listed):
    response = client_a.get(page(stores["a"]))

    assert response.status_code == 200
    form = response.context["form"]
    assert [c.code for c in form.fields["channel"].queryset] == ["marketplace", "web"]
    assert form.initial == {"sku": "LINEN-M", "channel": "web"}
    html = response.content.decode()
    assert "Linen Shirt" in html and "Customer&#x27;s email or phone" in html


def test_an_item_sold_online_nowhere_cannot_be_waited_for(client_a, stores, variant):
    response = client_a.get(page(stores["a"]))

    assert response.status_code == 200
    assert 'data-testid="not-listed"' in response.content.decode()


def test_an_unknown_item_is_404(client_a, stores, listed):
    response = client_a.get(page(stores["a"], "NOPE"))

    assert response.status_code == 404
    assert "No item with SKU &#x27;NOPE&#x27;." in response.content.decode()


def test_a_nul_character_in_the_sku_is_404_and_changes_nothing(client_a, stores, listed):
    # PostgreSQL text cannot hold NUL: no item is looked up, on the page or on its form.
    before = _state()

    shown = client_a.get(page(stores["a"], "%00"))
    posted = _subscribe(client_a, stores["a"], "ana@example.com", sku="\x00")
    suffixed = _subscribe(client_a, stores["a"], "ana@example.com", sku="LINEN-M\x00")

    for response, sku in ((shown, "\\x00"), (posted, "\\x00"), (suffixed, "LINEN-M\\x00")):
        assert response.status_code == 404
        assert f"No item with SKU &#x27;{sku}&#x27;." in response.content.decode()
    assert _state() == before


# --- Subscribe --------------------------------------------------------------------------------


def test_staff_subscribe_a_new_customer_and_see_a_confirmation(client_a, stores, listed):
    response = _subscribe(client_a, stores["a"], " Ana.New@Example.com ")

    subscription = BackInStockSubscription.objects.get()
    assert response.status_code == 302
    assert response["Location"] == (
        url("back_in_stock", stores["a"]) + f"?subscription={subscription.pk}"
    )
    identity = Identity.objects.get()
    assert (identity.kind, identity.value) == ("email", "ana.new@example.com")
    assert _rows() == [(identity.customer_id, "LINEN-M", "web", "store:paris-01", None)]

    confirmation = client_a.get(response["Location"])
    html = confirmation.content.decode()
    assert confirmation.status_code == 200
    assert [str(m) for m in confirmation.context["messages"]] == [
        "Done: the customer waits for LINEN-M on Web shop."
    ]
    assert 'data-testid="confirmation"' in html
    assert "ana.new@example.com" in html and "<strong>Web shop</strong>" in html
    # No consent is implied: the page says so and offers to record her opt-in.
    assert 'data-testid="no-consent"' in html
    consent_url = reverse("store:customer_consent", args=["paris-01", identity.customer_id])
    assert f'action="{consent_url}"' in html
    assert re.findall(r'data-channel="([^"]+)"', html) == ["email"]
    assert Consent.objects.count() == 0


def test_her_opt_in_is_recorded_from_the_confirmation(client_a, stores, listed):
    _subscribe(client_a, stores["a"], "ana.new@example.com")
    customer = Customer.objects.get()
    consent_url = reverse("store:customer_consent", args=["paris-01", customer.pk])

    response = client_a.post(consent_url, {"channel": "email", "status": "opted_in"})

    assert response.status_code == 302
    state = ConsentState.objects.get(customer=customer)
    assert (state.channel.code, state.status, state.consent.source) == (
        "email",
        "opted_in",
        "store:paris-01",
    )
    subscription = BackInStockSubscription.objects.get()
    html = client_a.get(
        url("back_in_stock", stores["a"]) + f"?subscription={subscription.pk}"
    ).content.decode()
    assert 'data-testid="no-consent"' not in html
    assert "She will be told by Email, as she agreed." in html


def test_an_existing_customer_found_by_phone(client_a, stores, listed, channels, make_customer):
    ana = make_customer(("phone", "+33 6 12 34 56 78"), first_name="Ana", last_name="Dupont")
    consent_record(customer=ana, channel=channels["sms"], status="opted_in", source="test")
    # Opted in by email too, but with no email address: not a way she will be told.
    consent_record(customer=ana, channel=channels["email"], status="opted_in", source="test")

    response = _subscribe(client_a, stores["a"], "06 12 34 56 78", channel="marketplace")

    assert _rows() == [(ana.pk, "LINEN-M", "marketplace", "store:paris-01", None)]
    assert Customer.objects.count() == 1
    html = client_a.get(response["Location"]).content.decode()
    assert "Ana Dupont" in html
    assert 'data-testid="told-on"' in html and "She will be told by SMS, as she agreed." in html


def test_subscribing_again_says_she_was_already_waiting(client_a, stores, listed):
    first = _subscribe(client_a, stores["a"], "ana.new@example.com")
    client_a.get(first["Location"])  # shows the first message

    again = _subscribe(client_a, stores["a"], "ANA.NEW@example.com")

    assert again["Location"] == first["Location"]
    confirmation = client_a.get(again["Location"])
    assert [str(m) for m in confirmation.context["messages"]] == [
        "The customer was already waiting for LINEN-M on Web shop."
    ]
    assert len(_rows()) == 1


@pytest.mark.parametrize(
    ("contact", "channel", "field", "error"),
    [
        ("", "web", "contact", "Enter the customer's email or phone number."),
        ("ana@", "web", "contact", "'ana@' is not an email address."),
        ("12", "web", "contact", "'12' is not a valid phone number."),
        ("ana@example.com", "app", "channel", "Choose a channel that sells this item."),
        ("ana@example.com", "store", "channel", "Choose a channel that sells this item."),
        ("ana\x00@example.com", "web", "contact", "Null characters are not allowed."),
        ("ana@example.com", "web\x00", "channel", "Null characters are not allowed."),
    ],
)
def test_bad_input_is_shown_and_changes_nothing(
    client_a, stores, listed, contact, channel, field, error
):
    before = _state()

    response = _subscribe(client_a, stores["a"], contact, channel=channel)

    assert response.status_code == 400
    assert response.context["form"].errors[field] == [error]
    assert _state() == before


def test_a_refusal_of_the_service_is_shown(client_a, stores, listed):
    listed.is_active = False
    listed.save()
    before = _state()

    response = _subscribe(client_a, stores["a"], "ana@example.com")

    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == [
        "LINEN-M is no longer sold; it will not be back."
    ]
    assert _state() == before


def test_an_unknown_subscription_is_404(client_a, stores, listed):
    for value in ("999999", "abc"):
        response = client_a.get(url("back_in_stock", stores["a"]) + f"?subscription={value}")
        assert response.status_code == 404


# --- Who may not ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["client_b", "client_merch"])
def test_staff_of_another_store_are_refused(request, who, stores, listed):
    client = request.getfixturevalue(who)
    before = _state()

    assert client.get(page(stores["a"])).status_code == 403
    response = _subscribe(client, stores["a"], "ana@example.com")

    assert response.status_code == 403
    assert b"not assigned" in response.content
    assert _state() == before


def test_anonymous_visitors_go_to_sign_in(anon, stores, listed):
    before = _state()

    response = _subscribe(anon, stores["a"], "ana@example.com")

    assert response.status_code == 302
    assert response["Location"] == sign_in_url(url("back_in_stock", stores["a"]))
    assert _state() == before
