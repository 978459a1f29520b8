"""Profile statistics kept current by touchpoints: first and last seen, channels used, lifetime
orders and revenue, and the preferred messaging channel inferred from use.

The inferred channel is the messaging channel with the most use, counting a sales channel's
touchpoints for the messaging channel that reaches people there: web shop and marketplace for
email, the app for push, stores for SMS, social commerce for social messages. Ties go to the
channel used last. A channel the customer opted out of is never inferred, and one she chose
herself is never overwritten.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from customers.models import (
    ConsentState,
    ConsentStatus,
    Customer,
    CustomerChannelStat,
    PreferenceSource,
    Touchpoint,
    TouchpointKind,
)
from omni.db import bulk_update_values
from omni.models import MESSAGING_KINDS, Channel, ChannelKind

REACHED_BY = {
    ChannelKind.WEB: ChannelKind.EMAIL,
    ChannelKind.MARKETPLACE: ChannelKind.EMAIL,
    ChannelKind.APP: ChannelKind.PUSH,
    ChannelKind.STORE_POS: ChannelKind.SMS,
    ChannelKind.SOCIAL: ChannelKind.SOCIAL_DM,
}


@dataclass(slots=True)
class Usage:
    """What a set of new touchpoints adds to one customer."""

    first: datetime | None  # None: no activity of hers (a cancellation alone)
    last: datetime | None
    purchases: int = 0
    revenue: Decimal = Decimal(0)
    last_purchase: datetime | None = None
    cancelled: bool = False  # a purchase was taken back: the last purchase is looked up again


def order_key(properties) -> str | None:
    """An event's ``properties.order`` as text, so that 1001 and "1001" name the same order;
    None when there is none."""
    value = properties.get("order") if isinstance(properties, dict) else None
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def purchase_events(customer_id: int) -> list[tuple[str, datetime, object]]:
    """Her purchase and cancellation events, newest first: ``(kind, occurred_at,
    properties)``. Each cancellation takes back the newest purchase of its order
    (``order_key``) not taken back before."""
    return list(
        Touchpoint.objects.filter(
            customer_id=customer_id,
            kind__in=(TouchpointKind.PURCHASE, TouchpointKind.ORDER_CANCELLED),
        )
        .order_by("-occurred_at", "-id")
        .values_list("kind", "occurred_at", "properties")
    )


def last_purchase_of(customer_id: int) -> datetime | None:
    """When she last bought: her latest purchase event not taken back by an
    ``order_cancelled`` event naming the same order (see ``purchase_events``)."""
    events = purchase_events(customer_id)
    cancelled = Counter(
        key
        for kind, _at, properties in events
        if kind == TouchpointKind.ORDER_CANCELLED and (key := order_key(properties)) is not None
    )
    for kind, at, properties in events:
        if kind != TouchpointKind.PURCHASE:
            continue
        key = order_key(properties)
        if key is not None and cancelled[key] > 0:
            cancelled[key] -= 1
            continue
        return at
    return None


def _messaging_by_kind() -> dict[str, int]:
    """The first active messaging channel of each kind (by code)."""
    found = {}
    for pk, kind in Channel.objects.messaging().active().order_by("code").values_list("pk", "kind"):
        found.setdefault(kind, pk)
    return found


def preferred_channel_infer(*, customer_ids) -> int:
    """Recompute the inferred preferred channel of these customers (those who chose one keep
    it). Returns how many changed."""
    customer_ids = list(customer_ids)
    if not customer_ids:
        return 0
    kinds = dict(Channel.objects.values_list("pk", "kind"))
    messaging = _messaging_by_kind()
    opted_out = set(
        ConsentState.objects.filter(
            customer_id__in=customer_ids, status=ConsentStatus.OPTED_OUT
        ).values_list("customer_id", "channel_id")
    )
    scores: dict[int, dict[int, list]] = defaultdict(dict)
    for customer_id, channel_id, count, last in CustomerChannelStat.objects.filter(
        customer_id__in=customer_ids
    ).values_list("customer_id", "channel_id", "touchpoints", "last_seen_at"):
        kind = kinds.get(channel_id)
        target = channel_id if kind in MESSAGING_KINDS else messaging.get(REACHED_BY.get(kind))
        if target is None or (customer_id, target) in opted_out:
            continue
        entry = scores[customer_id].setdefault(target, [0, last])
        entry[0] += count
        entry[1] = max(entry[1], last)
    changed = []
    for customer in Customer.objects.filter(
        pk__in=customer_ids, preferred_channel_source=PreferenceSource.INFERRED
    ).only("pk", "preferred_channel_id"):
        options = scores.get(customer.pk)
        best = max(options.items(), key=lambda kv: (kv[1][0], kv[1][1]))[0] if options else None
        if best != customer.preferred_channel_id:
            customer.preferred_channel_id = best
            changed.append(customer)
    bulk_update_values(Customer, changed, ["preferred_channel"])
    return len(changed)


def channel_stats_merge(*, survivor: Customer, merged: Customer) -> int:
    """Fold the merged customer's channel rollups into the survivor's."""
    mine = {s.channel_id: s for s in CustomerChannelStat.objects.filter(customer=survivor)}
    moved = 0
    for stat in CustomerChannelStat.objects.filter(customer=merged):
        moved += 1
        own = mine.get(stat.channel_id)
        if own is None:
            stat.customer = survivor
            stat.save(update_fields=["customer"])
            continue
        own.touchpoints += stat.touchpoints
        own.first_seen_at = min(own.first_seen_at, stat.first_seen_at)
        own.last_seen_at = max(own.last_seen_at, stat.last_seen_at)
        own.save(update_fields=["touchpoints", "first_seen_at", "last_seen_at"])
        stat.delete()
    return moved


def stats_apply(*, usage: dict[int, Usage], channel_usage: dict[tuple[int, int], list]) -> None:
    """Add new touchpoints to the rollups. ``usage`` is per customer; ``channel_usage`` maps
    ``(customer, channel)`` to ``[count, first, last]``. The customers must be locked."""
    if not usage:
        return
    existing = {
        (s.customer_id, s.channel_id): s
        for s in CustomerChannelStat.objects.filter(customer_id__in=list(usage))
    }
    new_rows, changed_rows = [], []
    for (customer_id, channel_id), (count, first, last) in channel_usage.items():
        row = existing.get((customer_id, channel_id))
        if row is None:
            new_rows.append(
                CustomerChannelStat(
                    customer_id=customer_id,
                    channel_id=channel_id,
                    touchpoints=count,
                    first_seen_at=first,
                    last_seen_at=last,
                )
            )
        else:
            row.touchpoints += count
            row.first_seen_at = min(row.first_seen_at, first)
            row.last_seen_at = max(row.last_seen_at, last)
            changed_rows.append(row)
    CustomerChannelStat.objects.bulk_create(new_rows, batch_size=2000)
    bulk_update_values(
        CustomerChannelStat, changed_rows, ["touchpoints", "first_seen_at", "last_seen_at"]
    )
    customers = list(
        Customer.objects.filter(pk__in=list(usage)).only(
            "pk",
            "first_seen_at",
            "last_seen_at",
            "last_purchase_at",
            "lifetime_orders",
            "lifetime_revenue",
        )
    )
    for customer in customers:
        add = usage[customer.pk]
        customer.first_seen_at = min(
            filter(None, (customer.first_seen_at, add.first)), default=None
        )
        customer.last_seen_at = max(filter(None, (customer.last_seen_at, add.last)), default=None)
        if add.cancelled:
            customer.last_purchase_at = last_purchase_of(customer.pk)
        elif add.last_purchase is not None:
            customer.last_purchase_at = max(
                filter(None, (customer.last_purchase_at, add.last_purchase))
            )
        # A cancellation takes back what its purchase added (never below nothing, should the
        # purchase have been recorded before the counters existed).
        customer.lifetime_orders = max(0, customer.lifetime_orders + add.purchases)
        customer.lifetime_revenue = max(
            Decimal(0), Decimal(customer.lifetime_revenue) + add.revenue
        )
    bulk_update_values(
        Customer,
        customers,
        [
            "first_seen_at",
            "last_seen_at",
            "last_purchase_at",
            "lifetime_orders",
            "lifetime_revenue",
        ],
    )
    if new_rows or changed_rows:
        preferred_channel_infer(customer_ids=list(usage))
