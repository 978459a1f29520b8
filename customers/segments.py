"""Segment rules as querysets.

Each rule kind turns into one condition on ``Customer`` (a column test or an ``EXISTS`` on an
indexed rollup), and a segment combines its rules with AND or OR, so counting a segment is one
query the database plans as a whole.
"""

from datetime import timedelta

from django.apps import apps
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from .models import (
    ConsentState,
    ConsentStatus,
    Customer,
    CustomerChannelStat,
    Segment,
    SegmentAttribute,
    SegmentMatch,
    Touchpoint,
    TouchpointKind,
)
from .models import (
    SegmentRuleKind as Kind,
)

# Which fields each kind reads (the others must stay empty).
NEEDS = {
    Kind.CHANNEL_USED: ("channel",),
    Kind.PURCHASED_WITHIN: ("days",),
    Kind.REVENUE_AT_LEAST: ("amount",),
    Kind.ORDERS_AT_LEAST: ("amount",),
    Kind.HOME_STORE: ("location",),
    Kind.ATTRIBUTE: ("attribute", "value"),
    Kind.CONSENT: ("channel",),
    Kind.TOUCHPOINT_WITHIN: ("touchpoint_kind", "days"),
    Kind.SEEN_WITHIN: ("days",),
    Kind.HAS_OPEN_CART: (),
}
OPTIONAL = {Kind.TOUCHPOINT_WITHIN: ("channel",), Kind.HAS_OPEN_CART: ("channel",)}
PARAMETERS = ("channel", "days", "amount", "location", "attribute", "value", "touchpoint_kind")


def _is_set(rule, name) -> bool:
    if name in ("channel", "location"):
        return getattr(rule, f"{name}_id") is not None
    return getattr(rule, name) not in (None, "")


def rule_errors(rule) -> dict:
    """What is wrong with a rule, by field (empty if nothing)."""
    if rule.kind not in NEEDS:
        return {"kind": ["Choose a kind of rule."]}
    errors = {}
    needs = NEEDS[rule.kind]
    for name in needs:
        if not _is_set(rule, name):
            errors[name] = [f"Required for '{Kind(rule.kind).label}'."]
    for name in PARAMETERS:
        if name not in needs and name not in OPTIONAL.get(rule.kind, ()) and _is_set(rule, name):
            errors[name] = [f"Not used by '{Kind(rule.kind).label}'; leave it empty."]
    if (
        "channel" not in errors
        and _is_set(rule, "channel")
        and rule.kind == Kind.CONSENT
        and not rule.channel.is_messaging
    ):
        errors["channel"] = ["Consent is per messaging channel (email, SMS, ...)."]
    if (
        "channel" not in errors
        and _is_set(rule, "channel")
        and rule.kind == Kind.HAS_OPEN_CART
        and not rule.channel.is_sales
    ):
        errors["channel"] = ["Carts belong to sales channels (web, app, ...)."]
    if (
        rule.kind == Kind.ORDERS_AT_LEAST
        and rule.amount is not None
        and rule.amount != int(rule.amount)
    ):
        errors["amount"] = ["A whole number of orders."]
    if rule.amount is not None and rule.amount < 0:
        errors["amount"] = ["Not negative."]
    # Values outside the choices would filter on another column or fail in the query.
    if rule.attribute and rule.attribute not in SegmentAttribute.values:
        errors["attribute"] = [f"One of: {', '.join(SegmentAttribute.values)}."]
    if rule.touchpoint_kind and rule.touchpoint_kind not in TouchpointKind.values:
        errors["touchpoint_kind"] = [f"Unknown touchpoint kind {rule.touchpoint_kind!r}."]
    return errors


def rule_description(rule) -> str:
    label = Kind(rule.kind).label if rule.kind in Kind.values else rule.kind
    parts = {
        Kind.CHANNEL_USED: lambda: f"used {rule.channel.code}" if rule.channel_id else label,
        Kind.PURCHASED_WITHIN: lambda: f"purchased within {rule.days} days",
        Kind.REVENUE_AT_LEAST: lambda: f"lifetime revenue ≥ {rule.amount}",
        Kind.ORDERS_AT_LEAST: lambda: (
            f"lifetime orders ≥ {rule.amount:.0f}" if rule.amount is not None else label
        ),
        Kind.HOME_STORE: lambda: f"home store {rule.location.code}" if rule.location_id else label,
        Kind.ATTRIBUTE: lambda: (
            f"{dict(SegmentAttribute.choices).get(rule.attribute, rule.attribute).lower()} = "
            f"{rule.value}"
            if rule.attribute
            else label
        ),
        Kind.CONSENT: lambda: f"opted in on {rule.channel.code}" if rule.channel_id else label,
        Kind.TOUCHPOINT_WITHIN: lambda: (
            f"{rule.touchpoint_kind} within {rule.days} days"
            + (f" on {rule.channel.code}" if rule.channel_id else "")
        ),
        Kind.SEEN_WITHIN: lambda: f"seen within {rule.days} days",
        Kind.HAS_OPEN_CART: lambda: (
            f"has an open cart on {rule.channel.code}" if rule.channel_id else "has an open cart"
        ),
    }
    text = parts.get(rule.kind, lambda: label)()
    return f"not {text}" if rule.negate else text


def rule_q(rule, now) -> Q:
    """The condition a rule puts on ``Customer``."""
    kind = rule.kind
    if kind == Kind.CHANNEL_USED:
        q = Q(
            Exists(
                CustomerChannelStat.objects.filter(
                    customer_id=OuterRef("pk"), channel_id=rule.channel_id
                )
            )
        )
    elif kind == Kind.PURCHASED_WITHIN:
        q = Q(last_purchase_at__gte=now - timedelta(days=rule.days))
    elif kind == Kind.REVENUE_AT_LEAST:
        q = Q(lifetime_revenue__gte=rule.amount)
    elif kind == Kind.ORDERS_AT_LEAST:
        q = Q(lifetime_orders__gte=int(rule.amount))
    elif kind == Kind.HOME_STORE:
        q = Q(home_store_id=rule.location_id)
    elif kind == Kind.ATTRIBUTE:
        lookup = "iexact" if rule.attribute in ("city", "occupation") else "exact"
        q = Q(**{f"{rule.attribute}__{lookup}": rule.value})
    elif kind == Kind.CONSENT:
        q = Q(
            Exists(
                ConsentState.objects.filter(
                    customer_id=OuterRef("pk"),
                    channel_id=rule.channel_id,
                    status=ConsentStatus.OPTED_IN,
                )
            )
        )
    elif kind == Kind.TOUCHPOINT_WITHIN:
        events = Touchpoint.objects.filter(
            customer_id=OuterRef("pk"),
            kind=rule.touchpoint_kind,
            occurred_at__gte=now - timedelta(days=rule.days),
        )
        if rule.channel_id:
            events = events.filter(channel_id=rule.channel_id)
        q = Q(Exists(events))
    elif kind == Kind.SEEN_WITHIN:
        q = Q(last_seen_at__gte=now - timedelta(days=rule.days))
    elif kind == Kind.HAS_OPEN_CART:
        # Carts live in the orders app, which builds on this one: named, not imported. The
        # (customer, status) index of carts answers it.
        carts = apps.get_model("orders", "Cart").objects.filter(
            customer_id=OuterRef("pk"), status="open"
        )
        if rule.channel_id:
            carts = carts.filter(channel_id=rule.channel_id)
        q = Q(Exists(carts))
    else:
        raise ValueError(f"Unknown segment rule kind {kind!r}")
    return ~q if rule.negate else q


def segment_queryset(segment: Segment, *, rules=None, now=None) -> QuerySet:
    """The segment's members (erased customers never belong to a segment). A segment without
    rules holds every customer."""
    now = now or timezone.now()
    rules = list(segment.rules.select_related("channel", "location")) if rules is None else rules
    members = Customer.objects.filter(erased_at__isnull=True)
    if not rules:
        return members
    combined = None
    for rule in rules:
        q = rule_q(rule, now)
        if combined is None:
            combined = q
        elif segment.match == SegmentMatch.ANY:
            combined |= q
        else:
            combined &= q
    return members.filter(combined)
