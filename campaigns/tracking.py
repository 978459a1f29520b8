"""The public pages of campaigns, opened from messages and in-store signs (no sign-in: the
signed token in the address is the credential).

- ``/t/<token>``: a tracked link; counts the click and redirects to the link's address.
- ``/u/<token>``: unsubscribe from one channel. GET only asks (a mail scanner that follows the
  link unsubscribes nobody); POST unsubscribes, from the page's button or from the mail
  provider's one-click ``List-Unsubscribe=One-Click`` (RFC 8058).
- ``/q/<store>/<sku>``: the QR code on a product's sign in a store; counts the scan and
  redirects to the product in the web shop, naming the store. A store or SKU that names
  nothing (unknown, or holding a NUL character) is the page saying so (404).

CSRF: the unsubscribe view is exempt, for the button as well as for one-click. CSRF protects
what a browser's cookies authorise; here nothing does: the signed token in the address is the
whole authority, and whoever holds the address can POST it from anywhere, with or without a
token. Checking CSRF would only break one-click (the provider has no cookie) and the button in
browsers that refuse cookies, and add no protection.
"""

import logging

from django.core.exceptions import DisallowedRedirect
from django.db import DatabaseError
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.rendering import link_token_load, unsubscribe_token_load
from campaigns.services.tracking import (
    message_click_record,
    signage_scan_record,
    signage_target_url,
    unsubscribe_record,
    unsubscribe_target,
)
from catalog.models import Variant
from customers.models import ConsentState, ConsentStatus, Identity, IdentityKind
from inventory.models import Location, LocationKind
from omni.exceptions import NotFound

logger = logging.getLogger(__name__)

# The identifier a messaging channel kind sends to.
ADDRESS_KINDS = {
    "email": IdentityKind.EMAIL,
    "sms": IdentityKind.PHONE,
    "push": IdentityKind.APP_DEVICE,
    "social_dm": IdentityKind.SOCIAL_HANDLE,
}

LINK_NOT_VALID = (
    "This link is not valid: it may have been cut short or changed when it was copied. "
    "Open it again from the message."
)


def _not_valid(request, message: str = LINK_NOT_VALID):
    response = render(request, "campaigns/link_invalid.html", {"message": message}, status=404)
    response["X-Robots-Tag"] = "noindex"
    return response


def _page(request, template: str, context: dict):
    response = render(request, template, context)
    response["X-Robots-Tag"] = "noindex"
    return response


@never_cache
@require_http_methods(["GET", "HEAD"])
def link_click(request, token: str):
    loaded = link_token_load(token)
    if loaded is None:
        return _not_valid(request)
    message_id, url = loaded
    try:
        response = HttpResponseRedirect(url)
    except DisallowedRedirect:
        return _not_valid(request)
    if request.method == "GET":  # a HEAD is a robot checking the link
        try:
            message_click_record(message_id=message_id, url=url)
        except DatabaseError:
            # A click is worth less than the customer's way to the shop: redirect anyway.
            logger.warning("Click on message %s not recorded", message_id, exc_info=True)
    return response


def masked_address(customer, channel_kind: str) -> str:
    """The customer's main address on a channel kind, partly hidden (the page may be opened
    by whoever the message was forwarded to): ``ca•••@example.com``, ``•••5678``."""
    kind = ADDRESS_KINDS.get(channel_kind)
    if kind is None:
        return ""
    value = (
        Identity.objects.filter(customer=customer, kind=kind)
        .order_by("-verified", "first_seen_at", "pk")
        .values_list("value", flat=True)
        .first()
    )
    if not value:
        return ""
    if kind == IdentityKind.EMAIL and "@" in value:
        local, domain = value.rsplit("@", 1)
        return f"{local[:2]}•••@{domain}"
    return f"•••{value[-4:]}"


@csrf_exempt  # see the module: the token is the credential
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    loaded = unsubscribe_token_load(token)
    if loaded is None:
        return _not_valid(request)
    customer_id, channel_id = loaded
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        try:
            result = unsubscribe_record(
                customer_id=customer_id, channel_id=channel_id, one_click=one_click
            )
        except NotFound:
            return _not_valid(request)
        return _page(
            request,
            "campaigns/unsubscribed.html",
            {
                "channel": result.channel,
                "address": masked_address(result.customer, result.channel.kind),
            },
        )
    try:
        customer, channel = unsubscribe_target(customer_id=customer_id, channel_id=channel_id)
    except NotFound:
        return _not_valid(request)
    opted_out = ConsentState.objects.filter(
        customer=customer, channel=channel, status=ConsentStatus.OPTED_OUT
    ).exists()
    return _page(
        request,
        "campaigns/unsubscribe.html",
        {
            "channel": channel,
            "address": masked_address(customer, channel.kind),
            "already": opted_out,
        },
    )


@never_cache
@require_http_methods(["GET", "HEAD"])
def signage_scan(request, store_code: str, sku: str):
    store = variant = None
    # A code with a NUL character names nothing (PostgreSQL text cannot hold one): not looked up.
    if "\x00" not in store_code and "\x00" not in sku:
        store = Location.objects.filter(code=store_code, kind=LocationKind.STORE).first()
        variant = Variant.objects.select_related("product").filter(sku=sku.upper()).first()
    if store is None or variant is None:
        return _not_valid(
            request,
            "This QR code does not lead to a product we know. Ask in the store; we are glad "
            "to help.",
        )
    if request.method == "GET":
        try:
            signage_scan_record(store=store, variant=variant)
        except DatabaseError:
            logger.warning("Scan of %s at %s not recorded", variant.sku, store.code, exc_info=True)
    return HttpResponseRedirect(signage_target_url(store, variant))
