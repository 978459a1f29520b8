"""Pieces the detection and sending services share: the holdout bucket (the same in Python
and in SQL), the channels a campaign may send on, advisory locks, and the rules of each
messaging channel read once per batch."""

from dataclasses import dataclass

from django.db.models import Case, F, Value, When
from django.db.models.functions import Mod

from campaigns.models import Campaign, CampaignStatus, MessagingRule, OverCap
from omni.db import advisory_xact_lock
from omni.models import Channel

# The holdout bucket of a customer in a campaign: a fixed hash of the two ids, 0..99, so the
# same customer is always in or always out of a campaign's holdout, whoever computes it.
_MULT, _SALT, _PRIME = 2654435761, 40503, 1000003


def holdout_bucket(campaign_id: int, customer_id: int) -> int:
    return ((customer_id * _MULT + campaign_id * _SALT) % _PRIME) % 100


def holdout_expression(campaign: Campaign, customer_field: str = "customer_id"):
    """``holdout_bucket`` as an SQL expression over ``customer_field``: True when the
    customer is held out of ``campaign``."""
    if campaign.holdout_percent <= 0:
        return Value(False)
    bucket = Mod(
        Mod(F(customer_field) * Value(_MULT) + Value(campaign.pk * _SALT), Value(_PRIME)),
        Value(100),
    )
    return Case(
        When(condition=_lt(bucket, campaign.holdout_percent), then=Value(True)),
        default=Value(False),
    )


def _lt(expression, bound: int):
    from django.db.models import lookups

    return lookups.LessThan(expression, bound)


def advisory_lock(namespace: str, *ids: int) -> None:
    """Serialise, until the transaction ends, everyone taking the same ``(namespace, id)``
    locks (PostgreSQL; SQLite serialises writers anyway). Keys are taken in one order."""
    advisory_xact_lock(f"campaigns:{namespace}:{i}" for i in ids)


@dataclass(frozen=True)
class Rule:
    """A messaging channel's rule, with defaults for a channel staff gave no rule."""

    channel_id: int
    code: str
    kind: str
    is_active: bool
    is_enabled: bool = True
    consent_required: bool = True
    frequency_cap: int = 0
    cap_period_hours: int = 168
    over_cap: str = OverCap.DEFER
    quiet_start: object = None
    quiet_end: object = None
    fallback_id: int | None = None


def rules_by_channel() -> dict[int, Rule]:
    """Every messaging channel's rule, keyed by channel id (two queries)."""
    rules = {r.channel_id: r for r in MessagingRule.objects.all()}
    result = {}
    for channel in Channel.objects.messaging():
        r = rules.get(channel.pk)
        if r is None:
            result[channel.pk] = Rule(channel.pk, channel.code, channel.kind, channel.is_active)
            continue
        result[channel.pk] = Rule(
            channel_id=channel.pk,
            code=channel.code,
            kind=channel.kind,
            is_active=channel.is_active,
            is_enabled=r.is_enabled,
            consent_required=r.consent_required,
            frequency_cap=r.frequency_cap,
            cap_period_hours=r.cap_period_hours,
            over_cap=r.over_cap,
            quiet_start=r.quiet_hours_start,
            quiet_end=r.quiet_hours_end,
            fallback_id=r.fallback_channel_id,
        )
    return result


def candidate_channels(codes, rules: dict[int, Rule], preferred_id=None) -> list[int]:
    """The channels to try for a step, in order: the customer's preferred channel when the
    step lists it, then the step's channels, then each one's fallback chain."""
    by_code = {r.code: r.channel_id for r in rules.values()}
    listed = [by_code[c] for c in codes if c in by_code]
    order = []
    if preferred_id in listed:
        order.append(preferred_id)
    order.extend(listed)
    result, seen = [], set()
    for channel_id in order:
        current = channel_id
        while current is not None and current not in seen:
            seen.add(current)
            result.append(current)
            rule = rules.get(current)
            current = rule.fallback_id if rule else None
    return result


def campaign_channel_ids(campaign: Campaign, rules: dict[int, Rule]) -> list[int]:
    """Every channel a campaign's steps may end up sending on (steps and fallbacks)."""
    ids = []
    for step in campaign.steps.all():
        for channel_id in candidate_channels(step.channel_codes, rules):
            if channel_id not in ids:
                ids.append(channel_id)
    return ids


def running_campaigns(now, trigger=None):
    """Active campaigns inside their dates that have steps."""
    qs = Campaign.objects.filter(status=CampaignStatus.ACTIVE, steps__isnull=False).distinct()
    qs = qs.exclude(starts_at__gt=now).exclude(ends_at__lte=now)
    if trigger:
        qs = qs.filter(trigger=trigger)
    return qs.order_by("pk").prefetch_related("steps")
