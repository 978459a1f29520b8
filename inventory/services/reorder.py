"""Reorder suggestions: sales velocity from the ledger, reorder points from lead times."""

import math
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from inventory.models import (
    LocationKind,
    MovementKind,
    ReorderRule,
    ReplenishmentSuggestion,
    StockLevel,
    StockMovement,
    SuggestionKind,
    SuggestionStatus,
    TransferLine,
    TransferStatus,
)
from omni.exceptions import Conflict

from .transfers import in_transit, transfer_request

VELOCITY_DAYS = 28
RULE_BATCH = 2000


@dataclass
class ReorderResult:
    rules: int = 0
    proposed: int = 0
    updated: int = 0
    withdrawn: int = 0


def reorder_point(rule: ReorderRule, daily_velocity: Decimal) -> int:
    """Reorder when the position would not last the lead time: a fast mover's point rises
    above the rule's minimum, so it reorders earlier."""
    return max(rule.min_quantity, math.ceil(daily_velocity * rule.lead_time_days))


def order_quantity(rule: ReorderRule, position: int, point: int) -> int:
    """Up to the maximum (or the reorder point, if that is higher), in whole packs."""
    target = max(rule.max_quantity, point)
    need = target - position
    if need <= 0:
        return 0
    return math.ceil(need / rule.pack_size) * rule.pack_size


def reorder_suggest(*, now=None) -> ReorderResult:
    """Propose purchases, or transfers from locations with stock to spare, for every active
    reorder rule whose position (on hand - reserved + in transit, counting transfers requested
    towards the location) is at or below its reorder point. One open proposal per rule,
    updated in place; proposals no longer needed are withdrawn. Idempotent: a second run on
    the same data changes nothing."""
    now = now or timezone.now()
    result = ReorderResult()
    last = 0
    while True:
        rules = list(
            ReorderRule.objects.filter(is_active=True, pk__gt=last)
            .select_related("location")
            .order_by("pk")[:RULE_BATCH]
        )
        if not rules:
            break
        last = rules[-1].pk
        with transaction.atomic():
            _suggest_batch(rules, now, result)
    return result


def _suggest_batch(rules, now, result: ReorderResult) -> None:
    variant_ids = {rule.variant_id for rule in rules}
    since = now - timedelta(days=VELOCITY_DAYS)
    sold = {
        (row["location_id"], row["variant_id"]): -row["units"]
        for row in StockMovement.objects.filter(
            kind=MovementKind.SALE, variant_id__in=variant_ids, occurred_at__gte=since
        )
        .values("location_id", "variant_id")
        .annotate(units=Sum("quantity"))
    }
    stock = {
        (row.location_id, row.variant_id): row
        for row in StockLevel.objects.filter(variant_id__in=variant_ids).select_related("location")
    }
    transit = in_transit(variant_ids=variant_ids)
    # Transfers requested towards a location are on their way too (held at their source): a
    # proposal turned into a transfer must not be proposed again before the transfer ships.
    for row in (
        TransferLine.objects.filter(
            transfer__status=TransferStatus.REQUESTED, variant_id__in=variant_ids
        )
        .values("transfer__to_location_id", "variant_id")
        .annotate(units=Sum("quantity"))
        .order_by()
    ):
        pair = (row["transfer__to_location_id"], row["variant_id"])
        transit[pair] = transit.get(pair, 0) + row["units"]
    all_rules = {
        (r.location_id, r.variant_id): r
        for r in ReorderRule.objects.filter(variant_id__in=variant_ids, is_active=True)
    }
    open_ = {
        s.rule_id: s
        for s in ReplenishmentSuggestion.objects.select_for_update().filter(
            rule__in=rules, status=SuggestionStatus.PROPOSED
        )
    }
    for rule in rules:
        result.rules += 1
        pair = (rule.location_id, rule.variant_id)
        velocity = (Decimal(sold.get(pair, 0)) / VELOCITY_DAYS).quantize(
            Decimal("0.001"), ROUND_HALF_UP
        )
        row = stock.get(pair)
        position = (row.on_hand - row.reserved if row else 0) + transit.get(pair, 0)
        point = reorder_point(rule, velocity)
        quantity = order_quantity(rule, position, point) if position <= point else 0
        existing = open_.get(rule.pk)
        if not quantity:
            if existing:
                existing.delete()
                result.withdrawn += 1
            continue
        source = _spare_source(rule, quantity, stock, all_rules)
        values = {
            "kind": SuggestionKind.TRANSFER if source else SuggestionKind.PURCHASE,
            "from_location_id": source,
            "quantity": quantity,
            "daily_velocity": velocity,
            "reorder_point": point,
            "position": position,
        }
        if existing is None:
            ReplenishmentSuggestion.objects.create(
                rule=rule,
                location_id=rule.location_id,
                variant_id=rule.variant_id,
                created_at=now,
                updated_at=now,
                **values,
            )
            result.proposed += 1
        elif any(getattr(existing, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(existing, key, value)
            existing.updated_at = now
            existing.save()
            result.updated += 1


def _spare_source(rule, quantity, stock, all_rules) -> int | None:
    """A location that can spare ``quantity`` without falling below its own needs: above its
    rule's maximum, or any sellable stock of a warehouse without a rule. Most to spare wins."""
    best, best_spare = None, 0
    for (location_id, variant_id), row in sorted(stock.items()):  # ties: the same one each run
        if variant_id != rule.variant_id or location_id == rule.location_id:
            continue
        if not row.location.is_active:
            continue
        free = row.on_hand - row.reserved
        other = all_rules.get((location_id, variant_id))
        if other is not None:
            spare = free - other.max_quantity
        elif row.location.kind == LocationKind.WAREHOUSE:
            spare = free - row.location.safety_stock
        else:
            spare = 0
        if spare >= quantity and spare > best_spare:
            best, best_spare = location_id, spare
    return best


def _lock_proposed(suggestion) -> ReplenishmentSuggestion:
    locked = (
        ReplenishmentSuggestion.objects.select_for_update(of=("self",))
        .select_related("location", "from_location", "variant")
        .get(pk=suggestion.pk)
    )
    if locked.status != SuggestionStatus.PROPOSED:
        raise Conflict(
            f"This suggestion is {locked.get_status_display().lower()} already.",
            code="already_decided",
        )
    return locked


@transaction.atomic
def suggestion_create_transfer(*, suggestion, actor=None):
    """Turn a transfer proposal into a requested transfer (stock held at the source)."""
    suggestion = _lock_proposed(suggestion)
    if suggestion.kind != SuggestionKind.TRANSFER:
        raise Conflict("This is a purchase proposal; mark it ordered instead.", code="not_transfer")
    transfer = transfer_request(
        from_location=suggestion.from_location,
        to_location=suggestion.location,
        lines=[{"variant": suggestion.variant, "quantity": suggestion.quantity}],
        reference=f"replenishment #{suggestion.pk}",
        actor=actor,
    )
    suggestion.status = SuggestionStatus.TRANSFER_CREATED
    suggestion.transfer = transfer
    _decided(suggestion, actor)
    return transfer


@transaction.atomic
def suggestion_mark_ordered(*, suggestion, actor=None) -> ReplenishmentSuggestion:
    suggestion = _lock_proposed(suggestion)
    suggestion.status = SuggestionStatus.ORDERED
    return _decided(suggestion, actor)


@transaction.atomic
def suggestion_dismiss(*, suggestion, actor=None) -> ReplenishmentSuggestion:
    suggestion = _lock_proposed(suggestion)
    suggestion.status = SuggestionStatus.DISMISSED
    return _decided(suggestion, actor)


def _decided(suggestion, actor):
    suggestion.decided_by = actor if getattr(actor, "pk", None) else None
    suggestion.updated_at = timezone.now()
    suggestion.save()
    return suggestion
