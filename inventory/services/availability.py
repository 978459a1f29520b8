"""Channel availability: what each sales channel may promise, precomputed per variant.

For a channel: the sum over the locations that feed it (its stock rules) of what each can sell,
``on_hand - reserved - safety stock - the rule's buffer`` (never below zero), minus the channel's
buffer, times the exposed share (rounded down), capped. Refreshed for the variants a stock change
touched once it commits, and for everything by the scheduled sweep.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from catalog.models import Variant
from inventory.models import ChannelAvailability, ChannelStockRule, StockLevel
from omni.db import PreparedQuery
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


_fed_channels = PreparedQuery(
    lambda: (
        Channel.objects.sales()
        .filter(Exists(ChannelStockRule.objects.filter(channel_id=OuterRef("pk"))))
        .order_by("pk")
        .values_list(
            "pk",
            "code",
            "stock_policy__pk",
            "stock_policy__buffer",
            "stock_policy__exposed_percent",
            "stock_policy__cap",
            "stock_policy__low_stock_threshold",
        )
    )
)

# A channel that lost its rules (or is no sales channel) promises nothing any more.
_NOTHING = Policy(exposed_percent=0)


def _channels(channel_ids=None) -> dict[int, tuple[str, Policy]]:
    """The sales channels that stock rules feed, with their policies: one query, compiled and
    prepared once per connection, as it runs after every stock change. (Channels that lost
    their rules but still promise something are found with the rows of each batch.)"""
    wanted = None if channel_ids is None else set(channel_ids)
    return {
        pk: (code, Policy(buffer, percent, cap, low) if policy_pk is not None else Policy())
        for pk, code, policy_pk, buffer, percent, cap, low in _fed_channels.rows()
        if wanted is None or pk in wanted
    }


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


def _refresh_batch(batch: _Batch, fed: dict, now, channel_ids=None) -> RefreshResult:
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
    sellable = sellable_by_channel(batch, list(fed))
    # (quantity, is_low_stock) of the rows there are, on every channel: tuples, as a full sweep
    # reads them all
    rows = ChannelAvailability.objects.filter(**batch.lookup("variant_id"))
    if channel_ids is not None:
        rows = rows.filter(channel_id__in=channel_ids)
    existing = {
        (variant_id, channel_id): (quantity, low)
        for variant_id, channel_id, quantity, low in rows.values_list(
            "variant_id", "channel_id", "quantity", "is_low_stock"
        )
    }
    channels = {**fed, **_stale(existing, fed)}
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


def _stale(existing: dict, fed: dict) -> dict[int, tuple[str, Policy]]:
    """Channels that still promise some of these variants though no rule feeds them any more
    (rules removed, or no sales channel): they fall to zero."""
    ids = {channel_id for (_, channel_id), (quantity, _) in existing.items() if quantity > 0}
    ids -= fed.keys()
    if not ids:
        return {}
    return {
        pk: (code, _NOTHING)
        for pk, code in Channel.objects.filter(pk__in=ids).order_by("pk").values_list("pk", "code")
    }


def availability_refresh(*, variant_ids=None, channel_ids=None, progress=None) -> RefreshResult:
    """Recompute the availability of ``variant_ids`` (all variants when None) on the sales
    channels (``channel_ids``, or all that stock rules feed). Writes only rows that changed and
    an ``inventory.availability_changed`` event when a row crosses zero or the low-stock line.

    Idempotent: a second run writes nothing. Batches of 2,000 variants, each its own
    transaction (unless the caller holds one), so the sweep never holds many locks for long.
    """
    fed = _channels(channel_ids)
    total = RefreshResult()
    if not fed and not _promising(variant_ids, channel_ids):
        return total
    now = timezone.now()
    for batch in _variant_batches(variant_ids):
        with transaction.atomic():
            result = _refresh_batch(batch, fed, now, channel_ids)
        total.variants += result.variants
        total.rows_written += result.rows_written
        total.events += result.events
        if progress:
            progress(total)
    return total


def _promising(variant_ids, channel_ids) -> bool:
    """Whether any of these rows still promises something (with no channel fed, only those
    are left to bring to zero)."""
    rows = ChannelAvailability.objects.filter(quantity__gt=0)
    if variant_ids is not None:
        rows = rows.filter(variant_id__in=variant_ids)
    if channel_ids is not None:
        rows = rows.filter(channel_id__in=channel_ids)
    return rows.exists()


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
