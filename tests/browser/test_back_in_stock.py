"""Back in stock at the counter, in a real browser: the item is out at this store, staff
follow "Notify the customer when it is back" from the stock lookup, enter her email, see the
confirmation, record her opt-in when she agrees; later the campaign tells her once."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import BackInStockSubscription, CampaignStep, Message, Template, Trigger
from campaigns.models import Campaign as CampaignModel
from campaigns.services.detection import triggers_detect
from campaigns.services.sending import messages_send
from customers.models import ConsentState
from inventory.models import ChannelAvailability
from inventory.services import stock_receive
from tests.factories import ChannelFactory, ListingFactory
from tests.store.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_subscribe_a_customer_who_is_told_once_when_it_is_back(
    page, sign_in, staff_a, stores, variant, channels, settings, tmp_path
):
    ListingFactory(variant=variant, channel=channels["web"])
    stock_receive(location=stores["versailles"], variant=variant, quantity=2)  # not here
    sign_in("anna", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Stock").click()
    page.get_by_role("searchbox").fill("LINEN-M")
    page.get_by_role("searchbox").press("Enter")
    page.get_by_role("link", name="Notify the customer when it is back").click()
    expect(page.get_by_role("heading", name="Notify the customer when it is back")).to_be_visible()
    page.get_by_label("Customer's email or phone").fill("Ines@Example.com")
    page.get_by_role("button", name="Notify her when it is back").click()

    confirmation = page.get_by_test_id("confirmation")
    expect(confirmation).to_contain_text("ines@example.com")
    expect(confirmation).to_contain_text("Web shop")
    expect(page.get_by_test_id("no-consent")).to_be_visible()
    subscription = BackInStockSubscription.objects.get()
    assert (subscription.variant_id, subscription.channel.code) == (variant.pk, "web")
    assert subscription.notified_at is None

    page.locator('button[data-channel="email"]').click()
    state = ConsentState.objects.get(customer=subscription.customer)
    assert (state.channel.code, state.status) == ("email", "opted_in")

    # The item is back on the web shop: the back-in-stock campaign tells her, once.
    settings.OMNI_LOCAL_OUTBOX_DIR = tmp_path
    settings.OMNI_MESSAGING_BACKENDS = dict.fromkeys(
        ("email", "sms", "push", "social_dm"), "campaigns.backends.local.LocalOutboxBackend"
    )
    ChannelFactory(code="email", name="Email", kind="email", currency="")
    template = Template.objects.create(
        name="Back", email_subject="{{ variant.title }} is back", email_text="{{ variant.url }}"
    )
    campaign = CampaignModel.objects.create(
        name="Back in stock", trigger=Trigger.BACK_IN_STOCK, status="active"
    )
    CampaignStep.objects.create(campaign=campaign, position=1, channels="email", template=template)
    ChannelAvailability.objects.update_or_create(
        variant=variant,
        channel=channels["web"],
        defaults={"quantity": 2, "updated_at": timezone.now()},
    )
    assert triggers_detect().total == 1
    messages_send(now=timezone.now() + timedelta(seconds=1))
    assert triggers_detect().total == 0
    message = Message.objects.get()
    assert (message.status, message.to, message.preview) == (
        "delivered",
        "ines@example.com",
        "Linen Shirt is back",
    )
