"""Channel availability: what each sales channel may promise, precomputed per variant.

For a channel: the sum over the locations that feed it (its stock rules) of what each can sell,
``on_hand - reserved - safety stock - the rule's buffer`` (never below zero), minus the channel's
buffer, times the exposed share (rounded down), capped. Refreshed for the variants a stock change
touched once it commits, and for everything by the scheduled sweep.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from catalog.models import Variant
from inventory.models import ChannelAvailability, ChannelStockPolicy, ChannelStockRule, StockLevel
from omni.models import Channel
from omni.services import outbox_emit_many

SWEEP_BATCH = 2000


@dataclass(frozen=True)
class Policy:
    buffer: int = 0
    exposed_percent: int = 100
    cap: int | None = None
    low_stock_threshold: int = 0

    def promise(self, sellable: int) -> int:
        quantity = max(0, sellable - self.buffer) * self.exposed_percent // 100
        return quantity if self.cap is None else min(quantity, self.cap)

    def is_low(self, quantity: int) -> bool:
        return 0 < quantity <= self.low_stock_threshold


def availability_state(quantity: int, is_low_stock: bool) -> str:
    if quantity <= 0:
        return "out_of_stock"
    return "low_stock" if is_low_stock else "in_stock"


def _channels(channel_ids=None, variant_ids=None) -> dict[int, tuple[str, Policy]]:
    """The sales channels to compute, with their policies: those that stock rules feed, and
    those that lost their rules but still promise something (they fall to zero)."""
    fed = Channel.objects.sales().filter(pk__in=ChannelStockRule.objects.values("channel_id"))
    promising = ChannelAvailability.objects.filter(quantity__gt=0)
    if variant_ids is not None:  # an incremental refresh: only these variants' rows matter
        promising = promising.filter(variant_id__in=variant_ids)
    stale = Channel.objects.exclude(pk__in=fed.values("pk")).filter(
        pk__in=promising.values("channel_id")
    )
    if channel_ids is not None:
        fed, stale = fed.filter(pk__in=channel_ids), stale.filter(pk__in=channel_ids)
    policies = {p.channel_id: p for p in ChannelStockPolicy.objects.filter(channel__in=fed)}
    result = {}
    for channel in fed:
        policy = policies.get(channel.pk)
        result[channel.pk] = (
            channel.code,
            Policy(
                buffer=policy.buffer,
                exposed_percent=policy.exposed_percent,
                cap=policy.cap,
                low_stock_threshold=policy.low_stock_threshold,
            )
            if policy
            else Policy(),
        )
    for channel in stale:
        result[channel.pk] = (channel.code, Policy(exposed_percent=0))
    return result


@dataclass(frozen=True)
class _Batch:
    """The variants of one refresh batch: listed, or (a page of the full sweep) every variant
    after ``after`` up to ``last``, one range condition instead of a list of 2,000 ids."""

    ids: list[int] | None = None
    after: int = 0
    last: int = 0

    def lookup(self, field: str) -> dict:
        if self.ids is not None:
            return {f"{field}__in": self.ids}
        return {f"{field}__gt": self.after, f"{field}__lte": self.last}


def sellable_by_channel(batch: _Batch, channel_ids) -> dict[tuple[int, int], int]:
    """``(variant, channel) -> units the feeding locations can sell``: one grouped query."""
    rows = (
        StockLevel.objects.filter(
            **batch.lookup("variant_id"),
            location__is_active=True,
            location__channel_rules__channel_id__in=channel_ids,
        )
        .values("variant_id", "location__channel_rules__channel_id")
        .annotate(
            sellable=Sum(
                Greatest(
                    F("on_hand")
                    - F("reserved")
                    - Coalesce(F("safety_stock"), F("location__safety_stock"))
                    - F("location__channel_rules__buffer"),
                    Value(0),
                )
            )
        )
        .order_by()
        .values_list("variant_id", "location__channel_rules__channel_id", "sellable")
    )
    return {(variant_id, channel_id): units for variant_id, channel_id, units in rows}


@dataclass
class RefreshResult:
    variants: int = 0
    rows_written: int = 0
    events: int = 0


def _refresh_batch(batch: _Batch, channels: dict, now) -> RefreshResult:
    # Serialise refreshes of the same variants: a refresh reads stock after taking the lock, so
    # the last one to write saw every change committed before it (no stale overwrite).
    # FOR NO KEY UPDATE does not block inserts that reference the variant (the ledger).
    skus = dict(
        Variant.objects.select_for_update(no_key=True)
        .filter(**batch.lookup("pk"))
        .order_by("pk")
        .values_list("pk", "sku")
    )
    locked = list(skus)
    sellable = sellable_by_channel(batch, list(channels))
    # (quantity, is_low_stock) of the rows there are: tuples, as a full sweep reads them all
    existing = {
        (variant_id, channel_id): (quantity, low)
        for variant_id, channel_id, quantity, low in ChannelAvailability.objects.filter(
            **batch.lookup("variant_id"), channel_id__in=list(channels)
        ).values_list("variant_id", "channel_id", "quantity", "is_low_stock")
    }
    writes, events = [], []
    for variant_id in locked:
        for channel_id, (code, policy) in channels.items():
            quantity = policy.promise(sellable.get((variant_id, channel_id), 0))
            low = policy.is_low(quantity)
            old = existing.get((variant_id, channel_id))
            if old is None and quantity == 0:
                continue  # nothing promised before or now: no row needed
            if old == (quantity, low):
                continue
            writes.append(
                ChannelAvailability(
                    variant_id=variant_id,
                    channel_id=channel_id,
                    quantity=quantity,
                    is_low_stock=low,
                    updated_at=now,
                )
            )
            before = availability_state(*old) if old else "out_of_stock"
            after = availability_state(quantity, low)
            if before != after:
                events.append(
                    {
                        "type": "inventory.availability_changed",
                        "subject_type": "variant",
                        "subject_id": variant_id,
                        "payload": {
                            "sku": skus[variant_id],
                            "channel": code,
                            "quantity": quantity,
                            "previous_quantity": old[0] if old else 0,
                            "state": after,
                            "previous_state": before,
                        },
                    }
                )
    if writes:
        ChannelAvailability.objects.bulk_create(
            writes,
            update_conflicts=True,
            unique_fields=["variant", "channel"],
            update_fields=["quantity", "is_low_stock", "updated_at"],
            batch_size=SWEEP_BATCH,
        )
    if events:
        outbox_emit_many(events)
    return RefreshResult(variants=len(locked), rows_written=len(writes), events=len(events))


def availability_refresh(*, variant_ids=None, channel_ids=None, progress=None) -> RefreshResult:
    """Recompute the availability of ``variant_ids`` (all variants when None) on the sales
    channels (``channel_ids``, or all that stock rules feed). Writes only rows that changed and
    an ``inventory.availability_changed`` event when a row crosses zero or the low-stock line.

    Idempotent: a second run writes nothing. Batches of 2,000 variants, each its own
    transaction (unless the caller holds one), so the sweep never holds many locks for long.
    """
    channels = _channels(channel_ids, variant_ids)
    total = RefreshResult()
    if not channels:
        return total
    now = timezone.now()
    for batch in _variant_batches(variant_ids):
        with transaction.atomic():
            result = _refresh_batch(batch, channels, now)
        total.variants += result.variants
        total.rows_written += result.rows_written
        total.events += result.events
        if progress:
            progress(total)
    return total


def _variant_batches(variant_ids):
    if variant_ids is not None:
        ids = sorted(set(variant_ids))
        for start in range(0, len(ids), SWEEP_BATCH):
            yield _Batch(ids=ids[start : start + SWEEP_BATCH])
        return
    last = 0
    while True:  # keyset pages: no cursor held open across the batches' transactions
        ids = list(
            Variant.objects.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        if not ids:
            return
        yield _Batch(after=last, last=ids[-1])
        last = ids[-1]
