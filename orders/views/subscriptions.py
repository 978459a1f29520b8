"""Back in stock, at the counter: an item is out here (or everywhere), and the customer asks to
be told when it is back.

From the stock lookup, staff open ``/store/<code>/back-in-stock/?sku=<sku>``, type the
customer's email or phone and choose the online sales channel (the web shop by default, among
the channels that list the item); a SKU that names no item (unknown, or holding a NUL
character) is a 404 page, on the page and on its form. The customer is found, or created, by
identity resolution, and subscribed through
``campaigns.services.subscriptions.subscription_create``: the same rules and errors as the
API. The confirmation (``?subscription=<id>``) says on which messaging channels she will be
told; subscribing implies no consent, so when she has opted in on none it offers to record her
opt-in, through the same consent recording as the customer page (``store:customer_consent``).
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse

from campaigns.models import SENDABLE_KINDS, BackInStockSubscription
from campaigns.services.subscriptions import subscription_create
from catalog.models import ChannelListing
from catalog.selectors import variant_by_code
from customers.identifiers import Identifier, normalize
from customers.models import ConsentStatus, IdentityKind
from customers.selectors import consent_current
from omni.exceptions import OmniError
from omni.models import Channel, ChannelKind

from .base import add_service_error, go, store_page

BIG = {"class": "input"}
# The messaging channel kinds an identifier is an address on.
ADDRESS_KINDS = {
    IdentityKind.EMAIL: ChannelKind.EMAIL,
    IdentityKind.PHONE: ChannelKind.SMS,
    IdentityKind.APP_DEVICE: ChannelKind.PUSH,
    IdentityKind.SOCIAL_HANDLE: ChannelKind.SOCIAL_DM,
}


class ChannelChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.name


class SubscribeForm(forms.Form):
    """Who waits (an email or a phone number, as typed) and on which sales channel."""

    sku = forms.CharField(max_length=64, widget=forms.HiddenInput)
    contact = forms.CharField(
        label="Customer's email or phone",
        max_length=254,
        strip=True,
        widget=forms.TextInput(attrs={**BIG, "autocomplete": "off", "autofocus": True}),
        error_messages={"required": "Enter the customer's email or phone number."},
    )
    channel = ChannelChoiceField(
        label="When it is back on",
        queryset=Channel.objects.none(),
        to_field_name="code",
        empty_label=None,
        error_messages={"invalid_choice": "Choose a channel that sells this item."},
        widget=forms.Select(attrs=BIG),
    )

    def __init__(self, *args, channels, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channel"].queryset = channels

    def clean_contact(self) -> Identifier:
        text = self.cleaned_data["contact"]
        kind = IdentityKind.EMAIL if "@" in text else IdentityKind.PHONE
        try:
            return Identifier(kind, normalize(kind, text))
        except ValueError as error:
            raise ValidationError(str(error)) from None


def _channels(variant):
    """The active online sales channels that list the item, by name."""
    listed = ChannelListing.objects.filter(variant=variant).values("channel_id")
    return (
        Channel.objects.sales()
        .active()
        .exclude(kind=ChannelKind.STORE_POS)
        .filter(pk__in=listed)
        .order_by("name")
    )


def _initial_channel(channels) -> str | None:
    codes = [channel.code for channel in channels]
    if "web" in codes:
        return "web"
    return codes[0] if codes else None


def _variant(code: str):
    """The item a SKU or barcode from the address or the form names, or None. Text with a NUL
    character names none (PostgreSQL text cannot hold one), so it is not looked up."""
    if not code or "\x00" in code:
        return None
    return variant_by_code(code)


def _not_found(request, message: str):
    return render(request, "store/not_found.html", {"message": message}, status=404)


def _field_for(path: str) -> str:
    return {"identifiers": "contact", "customer": "contact", "sku": "sku"}.get(
        path.split(".")[0], path
    )


@store_page
def back_in_stock(request, location):
    if request.method == "POST":
        return _subscribe(request, location)
    if "subscription" in request.GET:
        return _confirmation(request, location, request.GET["subscription"])
    variant = _variant(request.GET.get("sku", ""))
    if variant is None:
        return _not_found(request, f"No item with SKU {request.GET.get('sku', '')!r}.")
    channels = list(_channels(variant))
    form = SubscribeForm(
        channels=_channels(variant),
        initial={"sku": variant.sku, "channel": _initial_channel(channels)},
    )
    return render(
        request,
        "store/back_in_stock.html",
        {"form": form, "variant": variant, "channels": channels},
    )


def _subscribe(request, location):
    variant = _variant(request.POST.get("sku", ""))
    if variant is None:
        return _not_found(request, f"No item with SKU {request.POST.get('sku', '')!r}.")
    channels = list(_channels(variant))
    form = SubscribeForm(request.POST, channels=_channels(variant))
    if form.is_valid():
        try:
            subscription = subscription_create(
                identifiers=[form.cleaned_data["contact"]],
                variant=variant,
                channel=form.cleaned_data["channel"],
                source=f"store:{location.code}",
                actor=request.user,
            )
        except OmniError as exc:
            add_service_error(form, exc, _field_for)
        else:
            channel = form.cleaned_data["channel"]
            if subscription.created:
                messages.success(
                    request, f"Done: the customer waits for {variant.sku} on {channel.name}."
                )
            else:
                messages.info(
                    request,
                    f"The customer was already waiting for {variant.sku} on {channel.name}.",
                )
            return go("back_in_stock", location, query=f"subscription={subscription.pk}")
    return render(
        request,
        "store/back_in_stock.html",
        {"form": form, "variant": variant, "channels": channels},
        status=400,
    )


def _confirmation(request, location, pk: str):
    subscription = None
    if pk.isascii() and pk.isdigit() and len(pk) <= 18:
        subscription = (
            BackInStockSubscription.objects.select_related(
                "customer", "variant__product", "channel"
            )
            .filter(pk=int(pk))
            .first()
        )
    if subscription is None:
        return _not_found(request, "No such subscription (it may have been cancelled).")
    customer = subscription.customer
    states = consent_current(customer.pk)
    messaging = list(Channel.objects.active().filter(kind__in=SENDABLE_KINDS).order_by("name"))
    identities = list(customer.identities.order_by("kind", "value"))
    address_kinds = {ADDRESS_KINDS[i.kind] for i in identities if i.kind in ADDRESS_KINDS}
    # Only where she can be reached: an opt-in without an address sends nothing.
    may_opt_in = [channel for channel in messaging if channel.kind in address_kinds]
    told_on = [
        channel
        for channel in may_opt_in
        if channel.pk in states and states[channel.pk].status == ConsentStatus.OPTED_IN
    ]
    return render(
        request,
        "store/back_in_stock.html",
        {
            "subscription": subscription,
            "variant": subscription.variant,
            "customer": customer,
            "identities": identities,
            "told_on": told_on,
            "may_opt_in": may_opt_in,
            "opted_in": ConsentStatus.OPTED_IN,
            "profile_url": reverse("store:customer", args=[location.code, customer.pk]),
        },
    )
