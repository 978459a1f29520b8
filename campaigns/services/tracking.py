"""Tracking: clicks on the tracked links of messages, unsubscribes from a channel, and scans of
the QR codes on in-store signs.

A click counts on its message (``clicks``; ``clicked_at``, the first click, and
``last_clicked_at``, the latest, which attribution follows) and goes on the customer's timeline
as a ``link_clicked`` touchpoint; every click is its own touchpoint (event id
``click:<message>:<n>``, ``properties.message`` naming the message), so a customer who comes
back through the same link twice shows twice. Both times only move outwards (``LEAST`` and
``GREATEST`` in the one ``UPDATE``): a click recorded late with an earlier time never moves
``last_clicked_at`` back, and becomes ``clicked_at`` when it was the first. A click never holds
the redirect for long: it is one short transaction that gives up waiting for a lock after two
seconds.

An unsubscribe is recorded as the customer's consent (``opted_out`` from "unsubscribe link");
repeating it records nothing more. A merged customer's link unsubscribes her survivor.

A signage scan adds one to the (day, store, variant) counter in one ``INSERT ... ON CONFLICT
DO UPDATE``, which is safe under any number of concurrent scans.
"""

import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import segno
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Message, SignageScan
from catalog.models import Variant
from customers.models import ConsentState, ConsentStatus, Customer, TouchpointKind
from customers.selectors import survivor_of
from customers.services import consent_record, touchpoint_record
from customers.services.common import customer_lock
from inventory.models import Location
from omni.exceptions import NotFound
from omni.models import Channel

SOURCE = "omni:campaigns"
UNSUBSCRIBE_SOURCE = "unsubscribe link"
# How long a click waits for a row lock before it gives up recording (the redirect goes on).
CLICK_LOCK_TIMEOUT = "2s"


def message_click_record(*, message_id: int, url: str, at: datetime | None = None) -> bool:
    """Count a click on a link of message ``message_id`` (``clicks``, the earliest click in
    ``clicked_at``, the latest in ``last_clicked_at``) and put it on the customer's timeline;
    False when there is no such message (a preview's link, a deleted message). One
    transaction; raises ``OperationalError`` when a lock could not be had within
    ``CLICK_LOCK_TIMEOUT`` (the caller redirects anyway)."""
    at = at or timezone.now()
    outer = connection.in_atomic_block
    with transaction.atomic():
        if not outer and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{CLICK_LOCK_TIMEOUT}'")
        # Coalesced before the comparison: SQLite's MIN and MAX are NULL when any argument is.
        updated = Message.objects.filter(pk=message_id).update(
            clicks=F("clicks") + 1,
            clicked_at=Least(Coalesce(F("clicked_at"), Value(at)), Value(at)),
            last_clicked_at=Greatest(
                Coalesce(F("last_clicked_at"), F("clicked_at"), Value(at)), Value(at)
            ),
        )
        if not updated:
            return False
        # The row is ours until commit: ``clicks`` numbers this click.
        message = Message.objects.select_related("customer", "channel").get(pk=message_id)
        if message.channel is None or message.customer.erased_at is not None:
            return True
        touchpoint_record(
            customer=message.customer,
            channel=message.channel,
            kind=TouchpointKind.LINK_CLICKED,
            source=SOURCE,
            event_id=f"click:{message_id}:{message.clicks}",
            occurred_at=at,
            properties={
                "url": url[:1000],
                "message": message_id,
                "campaign": message.campaign_id,
                "step": message.step_id,
            },
        )
    return True


@dataclass
class Unsubscribed:
    customer: Customer
    channel: Channel
    changed: bool  # False: she was already unsubscribed (or erased)


def unsubscribe_target(*, customer_id: int, channel_id: int) -> tuple[Customer, Channel]:
    """The customer (her survivor if she was merged) and the messaging channel an unsubscribe
    link names; ``NotFound`` when either is gone."""
    survivor = survivor_of(customer_id)
    customer = Customer.objects.filter(pk=survivor).first() if survivor is not None else None
    channel = Channel.objects.filter(pk=channel_id).first()
    if customer is None or channel is None or not channel.is_messaging:
        raise NotFound("This unsubscribe link is not valid any more.", code="link_not_valid")
    return customer, channel


@transaction.atomic
def unsubscribe_record(
    *, customer_id: int, channel_id: int, one_click: bool = False
) -> Unsubscribed:
    """Opt the customer out of the channel (``consent_record``, source "unsubscribe link").
    Harmless to repeat: when she is already opted out nothing is recorded."""
    for _attempt in range(3):  # a merge may move her between the lookup and the lock
        customer, channel = unsubscribe_target(customer_id=customer_id, channel_id=channel_id)
        locked = customer_lock([customer.pk])
        if locked:
            customer = locked[0]
            break
    else:
        raise NotFound("This unsubscribe link is not valid any more.", code="link_not_valid")
    if customer.erased_at is not None:  # nothing is ever sent to an erased customer
        return Unsubscribed(customer, channel, changed=False)
    status = (
        ConsentState.objects.filter(customer=customer, channel=channel)
        .values_list("status", flat=True)
        .first()
    )
    if status == ConsentStatus.OPTED_OUT:
        return Unsubscribed(customer, channel, changed=False)
    consent_record(
        customer=customer,
        channel=channel,
        status=ConsentStatus.OPTED_OUT,
        source=UNSUBSCRIBE_SOURCE,
        proof="one-click (RFC 8058)" if one_click else "unsubscribe page",
    )
    return Unsubscribed(customer, channel, changed=True)


# --- In-store signage -------------------------------------------------------------------------


def signage_url(store_code: str, sku: str) -> str:
    """The absolute address a store's sign for ``sku`` encodes."""
    return settings.OMNI_SITE_URL + reverse("campaigns:signage", args=[store_code, sku])


def signage_qr_svg(store: Location, variant: Variant) -> str:
    """The sign's QR code as inline SVG (quartile error correction: signs get scratched)."""
    return segno.make(signage_url(store.code, variant.sku), error="q").svg_inline(
        scale=5, border=2, dark="#111"
    )


def signage_target_url(store: Location, variant: Variant) -> str:
    """Where a scan lands: the product page of the web shop, naming the store."""
    from campaigns.rendering import product_url

    url = product_url(variant.sku, variant.product.handle)
    query = urlencode({"store": store.code, "utm_source": "instore-qr", "utm_medium": "qr"})
    return f"{url}{'&' if '?' in url else '?'}{query}"


_SCAN_UPSERT = """
INSERT INTO {table} ({day}, {store}, {variant}, {scans}) VALUES (%s, %s, %s, 1)
ON CONFLICT ({day}, {store}, {variant}) DO UPDATE SET {scans} = {table}.{scans} + 1
RETURNING {scans}
"""


def signage_scan_record(*, store: Location, variant: Variant, at: datetime | None = None) -> int:
    """Count one scan of the sign for ``variant`` in ``store`` on the store's local day; the
    day's count after it. One statement: concurrent scans all count."""
    at = at or timezone.now()
    try:
        zone = zoneinfo.ZoneInfo(store.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = timezone.get_default_timezone()
    day = timezone.localtime(at, zone).date()
    meta, q = SignageScan._meta, connection.ops.quote_name
    sql = _SCAN_UPSERT.format(
        table=q(meta.db_table),
        day=q(meta.get_field("day").column),
        store=q(meta.get_field("store").column),
        variant=q(meta.get_field("variant").column),
        scans=q(meta.get_field("scans").column),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [day, store.pk, variant.pk])
        return cursor.fetchone()[0]
